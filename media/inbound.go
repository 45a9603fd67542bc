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
	jb       *jitter.Buffer[byte]  // G.711: wire bytes
	wb       *jitter.Buffer[int16] // wideband codecs: 16 kHz PCM, decoded on arrival
	dec      wbDecoder             // wideband only; the RTP reader's
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

	// RFC 3550 A.8 interarrival jitter, in timestamp units at rate
	rate        int64
	t0          time.Time
	jitter      float64
	lastTransit int32
	haveTransit bool

	// RFC 4733
	dtmfTS      [2]uint32
	dtmfN       int
	lastDTMFSeq int32 // -1: none; end packets are often resent with the same sequence number

	// wideband: the last sequence number decoded (a duplicate is not
	// decoded again: it would disturb the decoder's state), and the
	// extended RTP timestamp that Opus's 48 kHz clock is unwrapped against
	lastDecoded int32 // -1: none
	tsRef       int64

	// counters
	srtpFailed         uint64 // SRTP packets that failed authentication or were replays
	dupDecoded         uint64 // wideband duplicates caught before the decoder
	packets, octets    uint64
	ignoredSource      uint64
	refusedSource      uint64
	relatched          uint64
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

func (in *inbound) init(s *Stream, codec wireCodec, dec wbDecoder, c Consumer, now time.Time) {
	in.mu.Lock() // Stats may read meanwhile
	defer in.mu.Unlock()
	if codec.wideband() {
		in.wb = jitter.New(jitter.Options[int16]{Codec: jitter.PCM{}, SampleRate: 16000, Min: s.opt.JitterMin, Max: s.opt.JitterMax,
			Concealment: s.opt.Concealment})
		in.dec = dec
	} else {
		in.jb = jitter.New(s.jitterOptions(codec.law()))
	}
	in.chain = buildInbound(codec, s.opt.Concealment, c, &in.w)
	in.rate = int64(codec.clockRate())
	in.lastRecv = now
	in.t0 = now
	in.lastDTMFSeq = -1
	in.lastDecoded = -1
}

// nextDue is the jitter buffer's next due time.
func (in *inbound) nextDue() (time.Time, bool) {
	if in.wb != nil {
		return in.wb.NextDue()
	}
	return in.jb.NextDue()
}

// readRTP is an RTP reader goroutine of the stream's own, where the shared
// reader (poller_linux.go) is not available: one reused buffer and packet,
// no allocation per packet.
func (s *Stream) readRTP() {
	var r reader
	for {
		n, from, err := s.rtp.ReadFromUDPAddrPort(r.buf[:])
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.rtpPacket(&r, r.buf[:n], from)
	}
}

// reader holds what reading a packet needs, reused for every packet: a
// stream's own reader goroutine has one, and so has each shared reader.
type reader struct {
	buf, plain [1500]byte
	pkt        rtp.Packet
	hdr        rtp.Header
}

// rtpPacket handles one RTP packet read from the stream's socket. SRTP is
// decrypted and authenticated here, before anything else looks at a packet:
// one that fails is counted and dropped.
func (s *Stream) rtpPacket(r *reader, b []byte, from netip.AddrPort) {
	if sc := s.srtpIn.Load(); sc != nil {
		var err error
		if b, err = sc.rtp.DecryptRTP(r.plain[:0], b, &r.hdr); err != nil {
			s.in.mu.Lock()
			s.in.srtpFailed++
			s.in.mu.Unlock()
			return
		}
	}
	s.handleRTP(s.clk.Now(), unmap(from), b, &r.pkt)
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
	v := s.checkSource(now, from, pkt)
	if v == srcRefused || v == srcIgnored {
		s.countSource(v)
		in.mu.Unlock()
		return
	}
	var movedFrom netip.AddrPort
	if v == srcRelatch {
		s.countSource(v)
		movedFrom = in.source
		in.latched = false // the new source takes over below
	}
	if !in.latched {
		// Symmetric RTP: from now on send to where the far end's RTP
		// comes from, and accept nothing else (see SourcePolicy).
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
	switch {
	case isDTMF:
		if int32(pkt.SequenceNumber) != in.lastDTMFSeq {
			in.received++
		}
		in.lastDTMFSeq = int32(pkt.SequenceNumber)
		digit, haveDigit = in.dtmf(now, pkt)
	case in.wb != nil:
		in.updateJitter(now, pkt.Timestamp)
		if int32(pkt.SequenceNumber) == in.lastDecoded {
			in.dupDecoded++
			break
		}
		pcm, err := in.dec.decode(pkt.Payload)
		if err != nil || len(pcm) == 0 {
			in.malformed++
			break
		}
		in.lastDecoded = int32(pkt.SequenceNumber)
		r := in.wb.Push(jitter.Packet[int16]{Arrival: now, SSRC: pkt.SSRC, Sequence: pkt.SequenceNumber,
			Timestamp: in.ts16(s.codec, pkt.Timestamp), Payload: pcm})
		if r != jitter.Duplicate && r != jitter.Invalid {
			in.received++
		}
		if r == jitter.Resynced {
			due, reschedule = in.wb.NextDue()
		}
	default:
		in.updateJitter(now, pkt.Timestamp)
		r := in.jb.Push(jitter.Packet[byte]{Arrival: now, SSRC: pkt.SSRC, Sequence: pkt.SequenceNumber,
			Timestamp: pkt.Timestamp, Payload: pkt.Payload})
		if r != jitter.Duplicate && r != jitter.Invalid {
			in.received++
		}
		if r == jitter.Resynced {
			due, reschedule = in.jb.NextDue()
		}
	}
	in.mu.Unlock()
	if movedFrom.IsValid() {
		s.log.Warn("RTP source moved without a re-INVITE (its SSRC and sequence continued after a silence): a NAT rebinding, or someone on the path",
			"from", movedFrom, "to", from)
	}
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
// starts a new source at once. One more departure: a packet older than the
// first one received (reordered at the start of the stream, before any
// wrap-around) moves the base back, so that it counts as expected and the
// cumulative loss does not go negative for packets that merely came in late.
func (in *inbound) updateSeq(ssrc uint32, seq uint16) {
	if !in.haveSrc || ssrc != in.ssrc {
		in.haveSrc = true
		in.ssrc = ssrc
		in.initSeq(seq)
		in.haveTransit = false
		in.dtmfN = 0
		in.tsRef = 0
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
		if base := uint16(in.baseSeq); in.cycles == 0 && seq < base && base-seq < maxMisorder {
			in.baseSeq = uint32(seq)
		}
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

// ts16 converts a wideband packet's RTP timestamp to the jitter buffer's
// 16 kHz sample count: twice G.722's 8000 Hz clock (a uint32 product wraps
// with it), a third of Opus's 48 kHz clock, unwrapped first so that the
// division stays continuous across the 32-bit wrap.
func (in *inbound) ts16(c wireCodec, ts uint32) uint32 {
	if c == wireG722 {
		return ts * 2
	}
	if in.tsRef == 0 {
		in.tsRef = int64(ts) + 3<<32
	}
	ext := in.tsRef + int64(int32(ts-uint32(in.tsRef)))
	in.tsRef = max(in.tsRef, ext)
	return uint32(ext / 3)
}

// updateJitter is RFC 3550 A.8, in units of the codec's RTP clock.
func (in *inbound) updateJitter(now time.Time, ts uint32) {
	arrival := uint32(now.Sub(in.t0).Nanoseconds() * in.rate / int64(time.Second))
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
	// in.mu is taken twice for a frame (each lock and unlock an atomic on a
	// line of its own, cold at 500 calls): once for the look before a late
	// read and the pop, once for the look for another due frame and the next
	// due time.
	in := &s.in
	in.mu.Lock()
	if s.lateReadWanted(now) {
		in.mu.Unlock()
		s.readLate() // rtpPacket takes in.mu
		in.mu.Lock()
	}
	for {
		var f jitter.Frame
		var ok bool
		if in.wb != nil {
			f, ok = in.wb.Pop(now, in.w.pcm16)
		} else {
			f, ok = in.jb.Pop(now, in.w.wire)
		}
		if !ok {
			break
		}
		in.frames++
		in.mu.Unlock()
		in.w.frame = Frame{Timestamp: f.Timestamp, Arrival: f.Arrival, Due: f.Due, Concealed: f.Concealed, Shard: s.shard}
		in.chain.run(&in.w)
		in.mu.Lock()
	}
	due, ok := in.nextDue()
	in.mu.Unlock()
	if ok && !s.closed.Load() {
		s.playTimer.Reset(due)
	}
}
