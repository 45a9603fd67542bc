package media

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
)

// control is the RTCP side of a Stream.
type control struct {
	mu         sync.Mutex
	latched    atomic.Bool // the far end's RTCP source is known
	source     netip.AddrPort
	remote     RemoteReport
	sent       uint64
	received   uint64
	ignored    uint64
	malformed  uint64
	bye        bool
	lastPacket uint64 // packets sent at the previous report
}

func (c *control) init(time.Time) {}

// RemoteReport is the far end's view of our stream, from its RTCP
// reception reports.
type RemoteReport struct {
	Valid          bool
	At             time.Time
	FractionLost   float64 // 0..1, of the far end's last interval
	CumulativeLost int64
	Jitter         time.Duration
	RTT            time.Duration // 0 if unknown
}

func (s *Stream) rtcpDelay() time.Duration {
	// RFC 3550 6.3.1: randomised between 0.5 and 1.5 times the interval.
	return time.Duration(float64(s.opt.RTCPInterval) * (0.5 + rand.Float64()))
}

func (s *Stream) onRTCPTimer(now time.Time) {
	if s.closed.Load() {
		return
	}
	s.sendRTCP(now, false)
	if !s.closed.Load() {
		s.rtcpTimer.Reset(now.Add(s.rtcpDelay()))
	}
}

// ntp converts t to the 64-bit NTP format.
func ntp(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	sec := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return sec<<32 | frac
}

// sendRTCP sends a compound SR or RR with SDES CNAME, plus BYE if bye.
func (s *Stream) sendRTCP(now time.Time, bye bool) {
	dst := s.remoteRTCP.Load()
	if dst == nil || !dst.IsValid() {
		return
	}
	var reports []rtcp.ReceptionReport
	in := &s.in
	in.mu.Lock()
	if in.haveSrc {
		expected := in.expected()
		lost := int64(expected) - int64(in.received)
		lost = min(max(lost, -0x800000), 0x7fffff)
		expInt := int64(expected - in.expectedPrior)
		recInt := int64(in.received - in.receivedPrior)
		in.expectedPrior, in.receivedPrior = expected, in.received
		frac := uint8(0)
		if lostInt := expInt - recInt; expInt > 0 && lostInt > 0 {
			frac = uint8(min((lostInt<<8)/expInt, 255))
		}
		in.fraction = frac
		var dlsr uint32
		if !in.lastSRAt.IsZero() {
			dlsr = uint32(now.Sub(in.lastSRAt) * 65536 / time.Second)
		}
		reports = append(reports, rtcp.ReceptionReport{
			SSRC:               in.ssrc,
			FractionLost:       frac,
			TotalLost:          uint32(lost) & 0xffffff,
			LastSequenceNumber: in.cycles + uint32(in.maxSeq),
			Jitter:             uint32(in.jitter),
			LastSenderReport:   in.lastSR,
			Delay:              dlsr,
		})
	}
	in.mu.Unlock()

	o := &s.out
	o.mu.Lock()
	packets, octets := o.packets, o.octets
	rtpNow := o.lastTS + uint32(now.Sub(o.lastSentAt)*time.Duration(o.codec.clockRate())/time.Second)
	o.mu.Unlock()

	var pkts []rtcp.Packet
	s.ctl.mu.Lock()
	sender := packets > s.ctl.lastPacket
	s.ctl.lastPacket = packets
	s.ctl.mu.Unlock()
	if sender || (bye && packets > 0) {
		pkts = append(pkts, &rtcp.SenderReport{SSRC: o.ssrc, NTPTime: ntp(now), RTPTime: rtpNow,
			PacketCount: uint32(packets), OctetCount: uint32(octets), Reports: reports})
	} else {
		pkts = append(pkts, &rtcp.ReceiverReport{SSRC: o.ssrc, Reports: reports})
	}
	pkts = append(pkts, rtcp.NewCNAMESourceDescription(o.ssrc, s.opt.CNAME))
	if bye {
		pkts = append(pkts, &rtcp.Goodbye{Sources: []uint32{o.ssrc}})
	}
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		return
	}
	if sc := s.srtpOut.Load(); sc != nil {
		if b, err = sc.rtcp.EncryptRTCP(nil, b, nil); err != nil {
			return
		}
	}
	if _, err := s.rtcp.WriteToUDPAddrPort(b, *dst); err == nil {
		s.ctl.mu.Lock()
		s.ctl.sent++
		s.ctl.mu.Unlock()
	}
}

// readRTCP is the RTCP reader goroutine; SRTCP is decrypted first, and a
// packet that fails is counted as malformed.
func (s *Stream) readRTCP() {
	var r reader
	for {
		n, from, err := s.rtcp.ReadFromUDPAddrPort(r.buf[:])
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.rtcpPacket(&r, r.buf[:n], from)
	}
}

// rtcpPacket handles one packet read from the stream's RTCP socket,
// decrypted first when the call is SRTP.
func (s *Stream) rtcpPacket(r *reader, b []byte, from netip.AddrPort) {
	if sc := s.srtpIn.Load(); sc != nil {
		var err error
		if b, err = sc.rtcp.DecryptRTCP(r.plain[:0], b, nil); err != nil {
			s.ctl.mu.Lock()
			s.ctl.malformed++
			s.ctl.mu.Unlock()
			return
		}
	}
	s.handleRTCP(s.clk.Now(), unmap(from), b)
}

func (s *Stream) handleRTCP(now time.Time, from netip.AddrPort, b []byte) {
	c := &s.ctl
	// Accept RTCP from the far end's host (the latched RTP source), or before
	// it latches from what the source policy accepts.
	if r := s.Remote(); !(r.IsValid() && r.Addr() == from.Addr()) && (s.opt.Sources.Any || !s.acceptable(from.Addr())) {
		c.mu.Lock()
		c.ignored++
		c.mu.Unlock()
		if sc := s.opt.Sources.Counters; sc != nil {
			sc.Refused.Add(1)
		}
		return
	}
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		c.mu.Lock()
		c.malformed++
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.received++
	if !c.latched.Load() || c.source != from {
		c.source = from
		c.latched.Store(true)
		f := from
		s.remoteRTCP.Store(&f)
	}
	c.mu.Unlock()
	ours := s.out.ssrc
	for _, p := range pkts {
		var reports []rtcp.ReceptionReport
		switch p := p.(type) {
		case *rtcp.SenderReport:
			s.in.mu.Lock()
			s.in.lastSR = uint32(p.NTPTime >> 16)
			s.in.lastSRAt = now
			s.in.mu.Unlock()
			reports = p.Reports
		case *rtcp.ReceiverReport:
			reports = p.Reports
		case *rtcp.Goodbye:
			c.mu.Lock()
			c.bye = true
			c.mu.Unlock()
		}
		for _, r := range reports {
			if r.SSRC != ours {
				continue
			}
			lost := int64(r.TotalLost & 0xffffff)
			if lost&0x800000 != 0 {
				lost -= 0x1000000
			}
			rep := RemoteReport{Valid: true, At: now, FractionLost: float64(r.FractionLost) / 256,
				CumulativeLost: lost, Jitter: time.Duration(r.Jitter) * time.Second / time.Duration(s.codec.clockRate())}
			if r.LastSenderReport != 0 {
				a := uint32(ntp(now) >> 16)
				if rtt := a - r.LastSenderReport - r.Delay; int32(rtt) > 0 {
					rep.RTT = time.Duration(rtt) * time.Second / 65536
				}
			}
			c.mu.Lock()
			c.remote = rep
			c.mu.Unlock()
		}
	}
}
