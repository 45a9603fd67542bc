package media

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cxco/gateway/media/jitter"
	"github.com/pion/rtp"
)

// inbound is the receive side of a Stream. Fields under mu are shared by
// the RTP reader and the playout callback; w and chain belong to the
// playout callback.
type inbound struct {
	mu       sync.Mutex
	jb       *jitter.Buffer
	latched  bool
	source   netip.AddrPort
	lastRecv time.Time

	// RFC 3550 A.1 sequence state for the current source
	haveSrc       bool
	ssrc          uint32
	maxSeq        uint16
	cycles        uint32
	baseSeq       uint32
	badSeq        uint32
	received      uint64 // packets of this source, duplicates excluded
	expectedPrior uint64
	receivedPrior uint64
	fraction      uint8

	// RFC 3550 A.8 interarrival jitter, in timestamp units
	t0          time.Time
	jitter      float64
	lastTransit int32
	haveTransit bool

	// RFC 4733
	dtmfTS      [2]uint32
	dtmfN       int
	lastDTMFSeq int32 // -1: none; end packets are often resent with the same sequence number

	// counters
	packets, octets    uint64
	ignoredSource      uint64
	ignoredPayloadType uint64
	malformed          uint64
	digits             uint64
	frames             uint64

	// the far end's last SR, for our reception reports
	lastSR   uint32
	lastSRAt time.Time

	chain inboundChain
	w     work
}

func (in *inbound) init(s *Stream, wire law, c Consumer, now time.Time) {
	in.mu.Lock() // Stats may read meanwhile
	defer in.mu.Unlock()
	in.jb = jitter.New(s.jitterOptions(wire))
	in.chain = buildInbound(wire, c)
	in.lastRecv = now
	in.t0 = now
	in.lastDTMFSeq = -1
}

// readRTP is the RTP reader goroutine: one reused buffer and packet, no
// allocation per packet.
func (s *Stream) readRTP() {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, from, err := s.rtp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.handleRTP(s.clk.Now(), unmap(from), buf[:n], &pkt)
	}
}

func (s *Stream) handleRTP(now time.Time, from netip.AddrPort, b []byte, pkt *rtp.Packet) {
	in := &s.in
	if err := pkt.Unmarshal(b); err != nil || pkt.Version != 2 {
		in.mu.Lock()
		in.malformed++
		in.mu.Unlock()
		return
	}
	isDTMF := s.hasDTMF && pkt.PayloadType == s.dtmfPT
	if pkt.PayloadType != s.pt && !isDTMF {
		in.mu.Lock()
		in.ignoredPayloadType++
		in.mu.Unlock()
		return
	}
	in.mu.Lock()
	if in.latched && from != in.source {
		in.ignoredSource++
		in.mu.Unlock()
		return
	}
	if !in.latched {
		// Symmetric RTP: from now on send to where the far end's RTP
		// comes from, and accept nothing else.
		in.latched = true
		in.source = from
		if s.Remote() != from {
			f := from // a copy: taking from's address would move it to the heap on every call
			s.remote.Store(&f)
			if !s.ctl.latched.Load() && from.Port() < 65535 {
				r := netip.AddrPortFrom(from.Addr(), from.Port()+1)
				s.remoteRTCP.Store(&r)
			}
		}
	}
	in.lastRecv = now
	in.packets++
	in.octets += uint64(len(pkt.Payload))
	in.updateSeq(pkt.SSRC, pkt.SequenceNumber)

	var (
		digit      Digit
		haveDigit  bool
		reschedule bool
		due        time.Time
	)
	if isDTMF {
		if int32(pkt.SequenceNumber) != in.lastDTMFSeq {
			in.received++
		}
		in.lastDTMFSeq = int32(pkt.SequenceNumber)
		digit, haveDigit = in.dtmf(now, pkt)
	} else {
		in.updateJitter(now, pkt.Timestamp)
		r := in.jb.Push(jitter.Packet{Arrival: now, SSRC: pkt.SSRC, Sequence: pkt.SequenceNumber,
			Timestamp: pkt.Timestamp, Payload: pkt.Payload})
		if r != jitter.Duplicate && r != jitter.Invalid {
			in.received++
		}
		if r == jitter.Resynced {
			due, reschedule = in.jb.NextDue()
		}
	}
	in.mu.Unlock()
	if reschedule && !s.closed.Load() {
		s.playTimer.Reset(due)
	}
	if haveDigit && s.consumer.OnDigit != nil {
		s.consumer.OnDigit(digit)
	}
}

const (
	maxDropout  = 3000
	maxMisorder = 100
	seqMod      = 1 << 16
)

// updateSeq is RFC 3550 A.1's update_seq without probation: a new SSRC
// starts a new source at once.
func (in *inbound) updateSeq(ssrc uint32, seq uint16) {
	if !in.haveSrc || ssrc != in.ssrc {
		in.haveSrc = true
		in.ssrc = ssrc
		in.initSeq(seq)
		in.haveTransit = false
		in.dtmfN = 0
		return
	}
	udelta := seq - in.maxSeq
	switch {
	case udelta < maxDropout:
		if seq < in.maxSeq {
			in.cycles += seqMod
		}
		in.maxSeq = seq
	case uint32(udelta) <= seqMod-maxMisorder:
		// A very large jump: restart if the next packet follows it.
		if uint32(seq) == in.badSeq {
			in.initSeq(seq)
		} else {
			in.badSeq = (uint32(seq) + 1) & (seqMod - 1)
		}
	default:
		// duplicate or reordered
	}
}

func (in *inbound) initSeq(seq uint16) {
	in.baseSeq = uint32(seq)
	in.maxSeq = seq
	in.badSeq = seqMod + 1
	in.cycles = 0
	in.received = 0
	in.expectedPrior = 0
	in.receivedPrior = 0
}

// expected is RFC 3550 A.3's expected packet count.
func (in *inbound) expected() uint64 {
	if !in.haveSrc {
		return 0
	}
	ext := in.cycles + uint32(in.maxSeq)
	return uint64(ext) - uint64(in.baseSeq) + 1
}

func (in *inbound) cumulativeLost() int64 {
	return int64(in.expected()) - int64(in.received)
}

// updateJitter is RFC 3550 A.8.
func (in *inbound) updateJitter(now time.Time, ts uint32) {
	arrival := uint32(now.Sub(in.t0).Nanoseconds() / (int64(time.Second) / 8000))
	transit := int32(arrival - ts)
	if in.haveTransit {
		d := transit - in.lastTransit
		if d < 0 {
			d = -d
		}
		in.jitter += (float64(d) - in.jitter) / 16
	}
	in.lastTransit = transit
	in.haveTransit = true
}

// dtmf reads an RFC 4733 event payload and reports each event once, at the
// first packet seen with its timestamp (start, update or end packet alike).
func (in *inbound) dtmf(now time.Time, pkt *rtp.Packet) (Digit, bool) {
	p := pkt.Payload
	if len(p) < 4 {
		in.malformed++
		return Digit{}, false
	}
	ts := pkt.Timestamp
	for i := range in.dtmfN {
		if in.dtmfTS[i] == ts {
			return Digit{}, false
		}
	}
	in.dtmfTS[1] = in.dtmfTS[0]
	in.dtmfTS[0] = ts
	in.dtmfN = min(in.dtmfN+1, len(in.dtmfTS))
	r := eventRune(p[0])
	if r == 0 {
		return Digit{}, false
	}
	in.digits++
	return Digit{Digit: r, Event: p[0], Timestamp: ts, Arrival: now}, true
}

func eventRune(e uint8) rune {
	switch {
	case e <= 9:
		return rune('0' + e)
	case e == 10:
		return '*'
	case e == 11:
		return '#'
	case e >= 12 && e <= 15:
		return rune('A' + e - 12)
	case e == 16:
		return '!'
	}
	return 0
}

// onPlayout runs at each frame's due time: pop what is due, pass it down the
// chain to the consumer, and schedule the next due time.
func (s *Stream) onPlayout(now time.Time) {
	if s.closed.Load() {
		return
	}
	in := &s.in
	for {
		in.mu.Lock()
		f, ok := in.jb.Pop(now, in.w.wire[:])
		if ok {
			in.frames++
		}
		in.mu.Unlock()
		if !ok {
			break
		}
		in.w.frame = Frame{Timestamp: f.Timestamp, Arrival: f.Arrival, Due: f.Due, Concealed: f.Concealed}
		in.chain.run(&in.w)
	}
	in.mu.Lock()
	due, ok := in.jb.NextDue()
	in.mu.Unlock()
	if ok && !s.closed.Load() {
		s.playTimer.Reset(due)
	}
}
