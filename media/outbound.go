package media

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/media/jitter"
	"github.com/cxco/gateway/media/opus"
	"github.com/pion/rtp"
)

const (
	frameDur     = jitter.FrameDuration
	frameSamples = jitter.FrameSamples
	rtpHeaderLen = 12
	// chunkFrames is the audio per pooled chunk: 160 ms, 1280 bytes of G.711
	// (a size class of Go's allocator exactly). A queue holds on average half
	// a chunk more than its audio: 640 bytes (2 KiB with 25-frame chunks).
	chunkFrames = 8
	// underrunWindow: audio that resumes within this long after the queue ran
	// dry (with no Flush) is the same speech, and the silence between an
	// underrun. A provider streams a response without pauses of its own (they
	// are in the audio), and the next response follows the caller's turn.
	underrunWindow = time.Second
)

// chunk is a pooled block of queued frames: chunkFrames frames of the
// queue's frame size (160 bytes of G.711, or 640 bytes of 16 kHz PCM for a
// wideband codec).
type chunk struct {
	data []byte
	r, w int
	next *chunk
}

// chunkPools has one pool per frame size.
var chunkPools = map[int]*sync.Pool{
	frameSamples:     {New: func() any { return &chunk{data: make([]byte, chunkFrames*frameSamples)} }},
	4 * frameSamples: {New: func() any { return &chunk{data: make([]byte, chunkFrames*4*frameSamples)} }},
}

// queue is the bounded outbound queue of 20 ms frames. Its memory is
// proportional to what is queued: chunks come from a shared pool and go
// back when emptied, so a call whose agent is silent holds none (a chunk is
// 1.25 KiB of G.711, 5 KiB of 16 kHz PCM; a Get and a Put cost tens of ns).
type queue struct {
	head, tail *chunk
	n, max     int
	size       int // bytes per frame
	pool       *sync.Pool
	dropped    uint64
}

func (q *queue) setSize(size int) {
	q.size = size
	q.pool = chunkPools[size]
}

func (q *queue) release(c *chunk) { q.pool.Put(c) }

func (q *queue) push(f []byte) {
	if q.n >= q.max {
		q.pop(nil)
		q.dropped++
	}
	if q.tail == nil || q.tail.w == chunkFrames {
		c := q.pool.Get().(*chunk)
		c.r, c.w, c.next = 0, 0, nil
		if q.tail == nil {
			q.head = c
		} else {
			q.tail.next = c
		}
		q.tail = c
	}
	copy(q.tail.data[q.tail.w*q.size:(q.tail.w+1)*q.size], f)
	q.tail.w++
	q.n++
}

// pop takes the oldest frame into dst (nil: drop it).
func (q *queue) pop(dst []byte) bool {
	if q.n == 0 {
		return false
	}
	c := q.head
	copy(dst, c.data[c.r*q.size:(c.r+1)*q.size])
	c.r++
	q.n--
	if c.r == c.w && (c.w == chunkFrames || q.n == 0) {
		q.head = c.next
		if q.head == nil {
			q.tail = nil
		}
		q.release(c)
	}
	return true
}

func (q *queue) flush() int {
	n := q.n
	for c := q.head; c != nil; {
		next := c.next
		q.release(c)
		c = next
	}
	q.head, q.tail, q.n = nil, nil, 0
	return n
}

// outbound is the send side of a Stream: re-framing, conversion, the queue
// and the pacer's state, all under mu. pkt belongs to the pacer callback.
type outbound struct {
	mu       sync.Mutex
	format   Format
	codec    wireCodec
	wire     law
	enc      wbEncoder // wideband only; the pacer's
	chain    *outboundChain
	q        queue
	drained  chan struct{}
	lastPlay time.Time

	ssrc    uint32
	seq     uint16
	ts0     uint32
	n       int64     // 20 ms ticks since Start: the sample count / 160
	grid    time.Time // time of tick 0
	next    time.Time // when the next tick is scheduled
	talking bool      // the last tick sent queued audio

	packets, octets, silence uint64
	played, flushed          uint64
	discarded                uint64
	// Underruns: the queue ran dry in the middle of the far side's audio
	// (more came within underrunWindow, with no Flush between), so the caller
	// heard silence that was not in it.
	dryAt          time.Time // the tick that found the queue empty after audio; zero: none pending
	dryTicks       uint64    // silent ticks since
	underruns      uint64
	underrunFrames uint64
	lastTS         uint32
	lastSentAt     time.Time
	traceSent      time.Time // the pacing trace's: when the last packet left

	// the pacer's buffers, sized for the codec at Start (a G.711 call needs
	// 172 bytes, not room for Opus's largest frame): the packet, its SRTP
	// form, and for a wideband codec the queued frame and its samples
	pkt    []byte
	sealed []byte
	hdr    rtp.Header
	frame  []byte
	pcm    []int16
}

// srtpRoom is what SRTP adds to a packet at most: the longest
// authentication tag (HMAC-SHA1-80's 10 bytes, AEAD's 16).
const srtpRoom = 16

// maxPayload is the longest payload the pacer sends in one packet.
func (c wireCodec) maxPayload() int {
	if c == wireOpus {
		return opus.MaxPacket
	}
	return frameSamples // G.711 and G.722: 160 bytes per 20 ms
}

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (o *outbound) init(s *Stream, codec wireCodec, enc wbEncoder, f Format, now time.Time) {
	o.mu.Lock() // Flush, Queued, Drained and Stats may run meanwhile
	defer o.mu.Unlock()
	o.format = f
	o.codec = codec
	o.wire = codec.law()
	o.enc = enc
	o.pkt = make([]byte, rtpHeaderLen+codec.maxPayload())
	o.sealed = make([]byte, 0, rtpHeaderLen+codec.maxPayload()+srtpRoom)
	if codec.wideband() {
		o.frame = make([]byte, 4*frameSamples)
		o.pcm = make([]int16, 2*frameSamples)
	}
	o.chain = buildOutbound(f, codec)
	o.q.setSize(o.chain.queuedBytes())
	o.q.max = int(s.opt.QueueMax / frameDur)
	o.grid = now
	o.next = now
}

func (o *outbound) signalDrained() {
	if o.drained != nil {
		close(o.drained)
		o.drained = nil
	}
}

// Play queues audio in the consumer's format (µ-law bytes, or 16-bit
// little-endian 16 kHz PCM), of any length: it is cut into 20 ms frames,
// converted to the call's codec and sent by the pacer. A partial frame
// waits for more audio (or is padded with silence if none comes within
// 20 ms). Play into an empty queue sends the first frame at once.
func (s *Stream) Play(audio []byte) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if !s.started.Load() {
		return ErrNotStarted
	}
	o := &s.out
	now := s.clk.Now()
	o.mu.Lock()
	c := o.chain
	fb := o.format.frameBytes()
	wasEmpty := o.q.n == 0
	for len(audio) > 0 {
		if c.npart == 0 && len(audio) >= fb {
			o.q.push(c.frame(audio[:fb]))
			audio = audio[fb:]
			continue
		}
		k := copy(c.part[c.npart:fb], audio)
		c.npart += k
		audio = audio[k:]
		if c.npart == fb {
			c.npart = 0
			o.q.push(c.frame(c.part[:fb]))
		}
	}
	o.lastPlay = now
	if !o.dryAt.IsZero() {
		if now.Sub(o.dryAt) <= underrunWindow && o.dryTicks > 0 {
			o.underruns++
			o.underrunFrames += o.dryTicks
		}
		o.dryAt = time.Time{}
	}
	// A new talkspurt goes out at once: re-phase the pacer. Not when the
	// pacer sent in this very tick (silence, the queue empty): a second packet
	// would follow it within the tick. The pacer runs first in its shard's
	// tick, so audio played from a playout of the same tick (an echo) found
	// it gone, and every frame went out as a talkspurt of its own a tick
	// after a packet of silence, two packets every 20 ms.
	kick := wasEmpty && o.q.n > 0 && !o.talking && o.next.Sub(now) > time.Millisecond &&
		now.Sub(o.lastSentAt) >= time.Millisecond && s.Direction().Sends()
	if kick && !s.closed.Load() {
		o.next = now
		s.paceTimer.Reset(now)
	}
	o.mu.Unlock()
	return nil
}

// PlayPCM queues 16 kHz PCM samples (FormatPCM16k streams only).
func (s *Stream) PlayPCM(pcm []int16) error {
	if s.started.Load() && s.out.format != FormatPCM16k {
		return fmt.Errorf("%w: PlayPCM on a %s stream", ErrFormat, s.out.format)
	}
	var b [640]byte
	for len(pcm) > 0 {
		n := min(len(pcm), len(b)/2)
		for i, v := range pcm[:n] {
			binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
		}
		if err := s.Play(b[:2*n]); err != nil {
			return err
		}
		pcm = pcm[n:]
	}
	return nil
}

// Flush drops every queued frame at once (barge-in: the caller spoke over
// the agent) and returns how many were dropped; Stats.Flushed counts them.
// The next pacer tick sends silence.
func (s *Stream) Flush() int { return s.drop(&s.out.flushed) }

// Discard drops every queued frame like Flush, for audio that is simply no
// longer wanted (ringback once a transfer answers): Stats.Discarded counts
// these, so the barge-in figure means what it says.
func (s *Stream) Discard() int { return s.drop(&s.out.discarded) }

func (s *Stream) drop(counter *uint64) int {
	o := &s.out
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.q.flush()
	if o.chain != nil {
		o.chain.reset()
	}
	*counter += uint64(n)
	// Silence after a barge-in is meant, and what comes next is a new
	// talkspurt (marker bit, sent at once).
	o.dryAt, o.talking = time.Time{}, false
	o.signalDrained()
	return n
}

// Queued returns how many 20 ms frames are waiting to be sent.
func (s *Stream) Queued() int {
	o := &s.out
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.q.n
}

// Drained returns a channel that is closed once everything queued so far
// has been sent (at once if nothing is queued), or flushed, or the stream
// closed. Use it to hang up after the agent's last audio.
func (s *Stream) Drained() <-chan struct{} {
	o := &s.out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.q.n == 0 && (o.chain == nil || o.chain.npart == 0) {
		return closedCh
	}
	if o.drained == nil {
		o.drained = make(chan struct{})
	}
	return o.drained
}

// onPace is the pacer: one RTP packet per 20 ms tick, queued audio or
// silence (G.711 silence, not comfort noise; a wideband codec encodes its
// queued PCM or zeros, so the encoder's state follows the stream),
// timestamps from the sample count, marker bit on the first packet of each
// talkspurt. With SRTP the packet is encrypted last.
func (s *Stream) onPace(now time.Time) {
	if s.closed.Load() {
		return
	}
	o := &s.out
	wide := o.codec.wideband()
	o.mu.Lock()
	sched := o.next
	payload := o.pkt[rtpHeaderLen : rtpHeaderLen+frameSamples]
	if wide {
		payload = o.frame
	}
	audio := o.q.pop(payload)
	if !audio && o.chain.npart > 0 && now.Sub(o.lastPlay) >= frameDur {
		copy(payload, o.chain.pad()) // the tail of an utterance
		audio = true
	}
	if audio {
		o.played++
	}
	if o.q.n == 0 && o.chain.npart == 0 {
		o.signalDrained()
	}
	if !audio {
		if wide {
			clear(payload)
		} else {
			sil := o.wire.silence()
			for i := range payload {
				payload[i] = sil
			}
		}
	}
	switch {
	case !audio && o.talking:
		o.dryAt, o.dryTicks = now, 1
	case !audio && !o.dryAt.IsZero():
		o.dryTicks++
		if now.Sub(o.dryAt) > underrunWindow {
			o.dryAt = time.Time{} // a pause between responses, not a gap in one
		}
	}
	marker := audio && !o.talking
	o.talking = audio
	ts := o.ts0 + uint32(o.n)*o.codec.tsPerFrame()
	o.n++
	dst := s.Remote()
	send := s.Direction().Sends() && (dst.IsValid() || s.tr != nil)
	if send {
		h := o.pkt[:rtpHeaderLen]
		h[0] = 0x80
		h[1] = s.pt & 0x7f
		if marker {
			h[1] |= 0x80
		}
		binary.BigEndian.PutUint16(h[2:], o.seq)
		binary.BigEndian.PutUint32(h[4:], ts)
		binary.BigEndian.PutUint32(h[8:], o.ssrc)
		o.seq++
		o.packets++
		if !wide {
			o.octets += frameSamples
		}
		if !audio {
			o.silence++
		}
		o.lastTS = ts
		o.lastSentAt = now
	}
	// Next tick: 20 ms after this one. In silence, fall back onto the
	// grid if a talkspurt start pulled the phase forward; if the wheel
	// fell far behind, re-phase rather than burst.
	next := sched.Add(frameDur)
	if !audio {
		if g := o.grid.Add(time.Duration(o.n) * frameDur); g.After(next) {
			next = g
		}
	}
	if now.Sub(next) > 3*frameDur {
		next = now
		o.grid = now.Add(-time.Duration(o.n) * frameDur)
	}
	o.next = next
	// Reset under mu so that a Play kicking the pacer meanwhile cannot be
	// overwritten (lock order: out.mu, then the wheel's shard).
	if !s.closed.Load() {
		s.paceTimer.Reset(next)
	}
	o.mu.Unlock()
	n := rtpHeaderLen + frameSamples
	if wide {
		// Encoded outside the lock: the encoder and these buffers are the
		// pacer's alone, and Play need not wait for Opus.
		for i := range o.pcm {
			o.pcm[i] = int16(binary.LittleEndian.Uint16(o.frame[2*i:]))
		}
		enc, err := o.enc.encode(o.pcm)
		if err != nil || !send {
			return
		}
		n = rtpHeaderLen + copy(o.pkt[rtpHeaderLen:], enc)
		o.mu.Lock()
		o.octets += uint64(n - rtpHeaderLen)
		o.mu.Unlock()
	}
	if !send {
		return
	}
	pkt := o.pkt[:n]
	if clock.Tracing() {
		t, c := time.Now(), s.paceClass
		clock.PaceLate[c].Add(t.Sub(sched))
		if at := s.shard.TickStart(); !at.IsZero() {
			clock.PaceInTick[c].Add(t.Sub(at))
		}
		if !o.traceSent.IsZero() {
			clock.PaceGap[c].Add(t.Sub(o.traceSent))
		}
		o.traceSent = t
	}
	if sc := s.srtpOut.Load(); sc != nil {
		var err error
		if pkt, err = sc.rtp.EncryptRTP(o.sealed[:0], pkt, &o.hdr); err != nil {
			return
		}
	}
	if s.tr != nil {
		_ = s.tr.WriteRTP(pkt)
	} else {
		_, _ = s.rtp.WriteToUDPAddrPort(pkt, dst)
	}
}
