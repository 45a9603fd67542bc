// Package jitter is a time-driven adaptive jitter buffer for RTP audio: 8 kHz
// G.711 bytes (one byte per sample), or linear PCM at 8 or 16 kHz (int16
// samples: wideband codecs are decoded as their packets arrive and buffered as
// PCM). The sample type is the Buffer's type parameter; positions below count
// its samples at Options.SampleRate.
//
// Packets of any length from 10 to 60 ms are written into a ring of samples
// indexed by their (unwrapped) RTP timestamp. Frames of exactly 20 ms are
// read at playout times: the frame starting at sample p is due at
//
//	t0 + media(p) + offset
//
// where media(p) is the sample's position on the sender's clock and offset is
// the fastest transit seen in the measurement window (the baseline) plus the
// current depth. The owner asks NextDue and calls Pop at that time; frames
// then come out at a steady 20 ms cadence.
//
// The depth adapts between Min and Max to a high percentile of the relative
// transit delay (transit minus baseline) over a window of recent packets.
// A new timeline starts at Initial (2×Min) until one window of it has been
// measured. The depth grows at once when a packet arrives late, to what that
// packet needed plus headroom (by repeating audio in front of the next
// frame), and keeps that for LateHold (16 s) after the last packet that
// needed it: a sender's delay spikes recur. It shrinks slowly by skipping
// audio, preferably silence, so the cadence of Pop never changes.
//
// Audio missing at its playout time (lost, or not yet arrived), and audio
// inserted to grow the depth, is concealed by pitch waveform repetition after
// ITU-T G.711 Appendix I (media/plc, at the buffer's rate: 8 kHz G.711, 16 kHz
// G.722 or Opus): the buffer keeps the last 64 ms it played and decodes it only
// when a loss starts, and when the audio after a gap is already in the ring the
// concealment runs into it (plc's LostBefore), so received audio leaves the
// buffer as it came. Options.Concealment selects the older repeat-and-fade, or
// silence, instead.
//
// A Buffer is not safe for concurrent use; its owner serialises Push and Pop.
package jitter

import (
	"fmt"
	"math"
	"time"

	"github.com/cxco/gateway/media/plc"
)

// Audio format constants of the default (8 kHz) buffer.
const (
	SampleRate    = 8000
	FrameSamples  = 160 // samples (bytes) in one output frame at 8 kHz
	FrameDuration = 20 * time.Millisecond
)

// Concealment is how audio missing at its playout time is filled.
type Concealment uint8

// Concealments.
const (
	// ConcealPitch repeats the last pitch periods, after ITU-T G.711
	// Appendix I (media/plc); the default.
	ConcealPitch Concealment = iota
	// ConcealFade repeats the last frame, fading to silence over 60 ms (the
	// buffer's concealment before ConcealPitch; kept for comparison).
	ConcealFade
	// ConcealSilence plays silence.
	ConcealSilence
)

var concealmentNames = [...]string{"pitch", "fade", "silence"}

func (c Concealment) String() string {
	if int(c) < len(concealmentNames) {
		return concealmentNames[c]
	}
	return fmt.Sprintf("Concealment(%d)", int(c))
}

// ParseConcealment reads a Concealment by its name: pitch, fade or silence.
func ParseConcealment(s string) (Concealment, error) {
	for i, n := range concealmentNames {
		if s == n {
			return Concealment(i), nil
		}
	}
	return 0, fmt.Errorf("jitter: concealment %q: want pitch, fade or silence", s)
}

// Sample is what the buffer holds: G.711 bytes or 16-bit PCM.
type Sample interface{ ~uint8 | ~int16 }

// Codec converts the buffer's samples to and from linear PCM; it is needed
// to attenuate concealed audio and to find silence. For PCM it is the
// identity (PCM).
type Codec[T Sample] interface {
	Decode(dst []int16, src []T) int
	Encode(dst []T, src []int16) int
	Silence() T
}

// PCM is the identity Codec of a PCM buffer.
type PCM struct{}

func (PCM) Decode(dst []int16, src []int16) int { return copy(dst, src) }
func (PCM) Encode(dst []int16, src []int16) int { return copy(dst, src) }
func (PCM) Silence() int16                      { return 0 }

// Options configure a Buffer.
type Options[T Sample] struct {
	Codec Codec[T] // required
	// SampleRate of the samples, 8000 or 16000; default 8000. The buffer's
	// timestamps count samples at this rate.
	SampleRate int
	Min        time.Duration // minimum depth; default 20 ms, at most a minute
	Max        time.Duration // maximum depth; default 120 ms, at most a minute
	// Window is how far back jitter is measured; default 4 s.
	Window time.Duration
	// Percentile of relative delay the depth covers; default 0.995.
	Percentile float64
	// Margin added to the measured percentile; default 1 ms.
	Margin time.Duration
	// Initial is the depth a new timeline starts with and keeps at least
	// until one Window of it has been measured; default 2×Min, within
	// Min..Max. The first packets say little about a sender's jitter, and
	// the opening second of a call is when the caller is least likely to speak.
	Initial time.Duration
	// LateHold is how long the depth a late packet needed is kept after the
	// last late packet; default 16 s (four windows). A sender that was late
	// once is late again, typically within seconds.
	LateHold time.Duration
	// ShrinkHold is how long the depth must have been too large before
	// audio that is not silence is skipped to shrink it; default 2 s.
	ShrinkHold time.Duration
	// Concealment fills missing audio; default ConcealPitch.
	Concealment Concealment
}

func (o *Options[T]) defaults() {
	if o.SampleRate != 16000 {
		o.SampleRate = 8000
	}
	if o.Min <= 0 {
		o.Min = 20 * time.Millisecond
	}
	if o.Max <= 0 {
		o.Max = 120 * time.Millisecond
	}
	// At most a minute: the histogram's bins (1 ms) fit in 16 bits.
	o.Min, o.Max = min(o.Min, time.Minute), min(o.Max, time.Minute)
	if o.Max < o.Min {
		o.Max = o.Min
	}
	if o.Window <= 0 {
		o.Window = 4 * time.Second
	}
	if o.LateHold <= 0 {
		o.LateHold = 4 * o.Window
	}
	if o.Initial <= 0 {
		o.Initial = 2 * o.Min
	}
	o.Initial = min(max(o.Initial, o.Min), o.Max)
	if o.Percentile <= 0 || o.Percentile > 1 {
		o.Percentile = 0.995
	}
	if o.Margin <= 0 {
		o.Margin = time.Millisecond
	}
	if o.ShrinkHold <= 0 {
		o.ShrinkHold = 2 * time.Second
	}
}

// Packet is one RTP packet's audio as the buffer needs it. Payload is
// copied; the caller may reuse it after Push returns.
type Packet[T Sample] struct {
	Arrival   time.Time
	SSRC      uint32
	Sequence  uint16
	Timestamp uint32 // in samples at the buffer's rate
	Payload   []T
}

// Result says what Push did with a packet.
type Result int

// Push results.
const (
	Accepted  Result = iota // stored for playout
	Resynced                // started a new timeline (first packet, SSRC change, timestamp jump) and stored
	Duplicate               // already received; dropped
	Late                    // its audio was already played; dropped (or the part still to come was stored)
	Invalid                 // empty or too long; dropped
)

var resultNames = [...]string{"accepted", "resynced", "duplicate", "late", "invalid"}

func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "unknown"
}

// Frame describes one popped 20 ms frame.
type Frame struct {
	// Timestamp is the RTP timestamp of the frame's first sample from the
	// ring (concealed or inserted audio in front of it shares it).
	Timestamp uint32
	// Arrival is the arrival time of the newest packet whose audio is in
	// the frame; zero if the frame holds no received audio.
	Arrival time.Time
	// Due is when the frame was due.
	Due time.Time
	// Concealed is set if any part of the frame was not received audio.
	Concealed bool
}

// Stats are the buffer's counters.
type Stats struct {
	Received  uint64 // packets pushed with a valid payload
	Late      uint64 // packets (partly) too late for playout
	Duplicate uint64 // packets received before
	Reordered uint64 // packets older than the newest sequence number seen
	Resyncs   uint64 // new timelines after the first
	Invalid   uint64 // empty or oversized payloads
	Frames    uint64 // frames popped
	// Concealed counts frames in which audio the sender sent was lost (by
	// their sequence numbers) or came too late, and was concealed. Frames
	// filled while the sender sent nothing (hold, a pause in its stream, the
	// end) and frames inserted to grow the depth are not concealment.
	Concealed uint64

	Inserted time.Duration // audio inserted to grow the depth
	Skipped  time.Duration // audio skipped to shrink the depth

	// LossRuns counts the runs of consecutive Concealed frames:
	// Concealed/LossRuns is the mean loss burst, in frames.
	LossRuns uint64
	// LateAudio is the audio of late packets that was dropped.
	LateAudio time.Duration

	Depth    time.Duration // current depth
	MaxDepth time.Duration // largest depth so far
	AvgDepth time.Duration // mean depth over the frames popped, except those inserted to grow it
	Target   time.Duration // depth the buffer is adapting to
}

// Buffer is the jitter buffer. See the package documentation.
type Buffer[T Sample] struct {
	opt   Options[T]
	codec Codec[T]

	// the rate's sizes
	rate       int64 // samples a second
	frame      int64 // samples in a 20 ms frame
	sampleNS   int64 // ns per sample
	blockShift int64 // arrival times are kept per 1 ms: 1<<blockShift samples
	maxPayload int64 // longest packet accepted: 120 ms
	fadeLen    int64 // concealment fades to silence over 60 ms

	// ring of samples: sample s (an extended timestamp) is at position
	// (s-s0) mod size, kept as pPos for p and stepped from it (pos), so no
	// division; its size is what the depth and a packet need, a whole number
	// of have words (grow)
	ring    []T
	have    []uint64 // one bit per ring sample: received
	arrival []int32  // per 1 ms block: newest arrival, µs after tbase, +1 (0: none)
	size    int64    // len(ring)
	pPos    int64    // position of p
	// reach is how far past p a packet may end before it counts as a jump
	// of the sender's timeline: the ring's size rounded up to a power of two
	// (the buffer's limit when its ring was that). A packet further ahead than
	// the ring holds but within it grows the ring to it (grow).
	reach int64

	// tbase (ns since epoch) is the time base of the arrival blocks and the
	// window queues: they keep int32 microseconds after it (half the memory of
	// int64 ns). It moves forward (rebase) before they could overflow, which
	// they would after 35 minutes.
	tbase                   int64
	rebaseAfter, rebaseKeep int64 // ns; the constants below (tests shorten them)

	epoch   time.Time // first arrival ever; arrival times are kept relative to it
	started bool
	ssrc    uint32
	t0      int64 // arrival (ns since epoch) of the timeline's first packet
	s0      int64 // extended timestamp of the timeline's first packet
	p       int64 // extended timestamp of the next frame's first sample
	offset  int64 // ns: due(p) = t0 + media(p-s0) + offset

	// sequence numbers: duplicate and reorder detection
	maxSeq int64
	seqWin [1024 / 64]uint64

	// sliding minimum of transit (monotonic deque) and histogram of
	// relative delay, both over Window
	minQ             []sample
	minHead, minTail int
	minMask          int // len(minQ)-1: it holds at most qlen entries, and
	// is allocated as they come (growMin): a few, unless transit keeps rising
	// histQ is the histogram's entries: arrival (µs after tbase) and bin, in
	// two arrays (6 bytes an entry, not a padded 8)
	histAt      []int32
	histBin     []uint16
	qlen, qmask int // length of histQ (a power of two), and the most entries minQ holds
	qmax        int // the length they may grow to (queueLen of the window)
	histHead    int
	histTail    int
	hist        []uint32 // counts per 1 ms of relative delay
	// The percentile's bin and the count of hist up to it (inclusive), kept
	// as entries come and go (measure), so that percentile moves from the
	// last answer instead of summing the histogram from 0 at every frame.
	pBin     int
	pCum     uint32
	lateHold int64 // ns of depth a recent late packet needs
	lateAt   int64
	farLate  int

	// concealment and adaptation state
	played     []T // the last samples played, a ring of playedMask+1; playedW is where the next goes
	playedW    int64
	playedMask int64
	plc        *plc.Concealer // ConcealPitch
	// plcBusy is plc.Concealing(), kept here (it changes only in concealPitch
	// and at a resync): every Pop looks at it, and the concealer's state is a
	// cache line of its own, cold at hundreds of calls.
	plcBusy     bool
	rep         []int16 // ConcealFade: the frame repeated
	pcm         []int16
	ahead       []int16 // received audio after a gap at the frame's end
	enc         []T
	fill        []bool
	fillRun     int   // fill samples in the current run of concealment
	depthSum    int64 // ns of depth summed over the frames of received audio popped
	depthFrames int64 // those frames (not the ones inserted to grow the depth)
	excessSince int64
	lastShrink  int64

	// Telling loss from silence (see Stats.Concealed). newestEnd is the end of
	// the newest audio received. A frame missing samples before it is a hole:
	// concealment when the hole is in a lost range (samples of packets whose
	// sequence numbers were skipped). A frame missing samples at the tail,
	// where nothing newer has come yet, joins the run; the next packet
	// decides: the run's frames in its lost or late range were concealment,
	// the rest was the sender's silence.
	newestEnd int64
	lost      [8]tsRange
	nlost     int
	run       tsRange
	runFrames uint64
	// concealedEnd is where the last frame counted as concealment ended: the
	// next one starting there continues its run (Stats.LossRuns).
	concealedEnd int64

	stats Stats
}

// tsRange is a range [from, to) of extended timestamps.
type tsRange struct{ from, to int64 }

func (s tsRange) overlap(o tsRange) int64 { return max(0, min(s.to, o.to)-max(s.from, o.from)) }

type sample struct {
	at int32 // arrival, µs after tbase
	v  int32 // transit (µs) or histogram bin
}

// Rebasing: once an arrival is rebaseAfter past tbase, tbase moves to
// rebaseKeep before it; entries older than that (none that the window or the
// ring still needs: they hold seconds) are clamped.
const (
	rebaseAfter = int64(1<<30) * 1000 // ns: 17.9 min of µs
	rebaseKeep  = int64(1<<29) * 1000 // ns: 8.9 min
)

// us is t (ns since epoch) in µs after tbase, rounded down, clamped to int32.
func (b *Buffer[T]) us(t int64) int32 { return clamp32(floorDiv(t-b.tbase, 1000)) }

// ns is the time (ns since epoch) of a queue entry's µs.
func (b *Buffer[T]) ns(us int32) int64 { return b.tbase + int64(us)*1000 }

func floorDiv(a, d int64) int64 {
	q := a / d
	if a%d != 0 && a < 0 {
		q--
	}
	return q
}

func clamp32(v int64) int32 { return int32(min(max(v, math.MinInt32), math.MaxInt32)) }

// rebase moves tbase forward so that at (ns since epoch) is rebaseKeep after it.
func (b *Buffer[T]) rebase(at int64) {
	d := floorDiv(at-b.rebaseKeep-b.tbase, 1000) // µs
	if d <= 0 {
		return
	}
	b.tbase += d * 1000
	for i := b.minHead; i < b.minTail; i++ {
		e := &b.minQ[i&b.minMask]
		e.at = clamp32(int64(e.at) - d)
	}
	for i := b.histHead; i < b.histTail; i++ {
		e := &b.histAt[i&b.qmask]
		*e = clamp32(int64(*e) - d)
	}
	for i, a := range b.arrival {
		if a != 0 {
			b.arrival[i] = int32(max(int64(a)-d, 0)) // older than rebaseKeep: none
		}
	}
}

// queueLen is how many window entries are kept at most: the window's worth of
// 10 ms packets (the shortest usual) and some, a power of two.
func queueLen(window time.Duration) int {
	n := 64
	for n < int(window/(10*time.Millisecond))+16 {
		n <<= 1
	}
	return n
}

// queueStart is the window queues' length at first: enough for the window's
// 20 ms packets (the usual packet time), so that most buffers never grow; a
// sender of shorter packets doubles them up to queueLen.
func queueStart(window time.Duration) int {
	n := 64
	for n < int(window/(20*time.Millisecond))+16 {
		n <<= 1
	}
	return min(n, queueLen(window))
}

// New returns an empty buffer.
func New[T Sample](opts Options[T]) *Buffer[T] {
	opts.defaults()
	rate := int64(opts.SampleRate)
	frame := rate / 50
	sampleNS := int64(time.Second) / rate
	blockShift := int64(3) // 8 samples a ms at 8 kHz
	if rate == 16000 {
		blockShift = 4
	}
	maxPayload := rate * 120 / 1000
	// The ring holds the maximum depth plus the longest packet plus two
	// frames, in whole have words (8 kHz, default Max: 2240 samples, 280 ms);
	// a packet may end up to the next power of two past playout (512 ms)
	// before it is a timeline jump, which grows the ring (rarely: a burst at
	// the start of a call, audio arriving while playout stalled).
	need := int64(opts.Max/time.Duration(sampleNS)) + maxPayload + 2*frame
	size := (need + 63) &^ 63
	reach := int64(256)
	for reach < size {
		reach <<= 1
	}
	qlen := queueStart(opts.Window)
	b := &Buffer[T]{
		opt:        opts,
		codec:      opts.Codec,
		rate:       rate,
		frame:      frame,
		sampleNS:   sampleNS,
		blockShift: blockShift,
		maxPayload: maxPayload,
		fadeLen:    3 * frame,
		played:     make([]T, 32*rate/1000*2), // 64 ms: ≥ plc's 48.75 ms, a power of two
		playedMask: 32*rate/1000*2 - 1,
		pcm:        make([]int16, frame),
		ahead:      make([]int16, frame),
		enc:        make([]T, frame),
		fill:       make([]bool, frame),
		ring:       make([]T, size),
		have:       make([]uint64, size/64),
		arrival:    make([]int32, size>>blockShift),
		size:       size,
		reach:      reach,
		minQ:       make([]sample, minStart),
		minMask:    minStart - 1,
		histAt:     make([]int32, qlen),
		histBin:    make([]uint16, qlen),
		qlen:       qlen,
		qmask:      qlen - 1,
		qmax:       queueLen(opts.Window),
		hist:       make([]uint32, int(opts.Max/time.Millisecond)+2),

		rebaseAfter: rebaseAfter,
		rebaseKeep:  rebaseKeep,
	}
	switch opts.Concealment {
	case ConcealPitch:
		b.plc = plc.MustNew(int(rate))
	case ConcealFade:
		b.rep = make([]int16, frame)
	}
	return b
}

// Reset forgets the timeline; the next packet starts a new one. Counters
// are kept.
func (b *Buffer[T]) Reset() {
	b.started = false
}

// Depth returns the current depth: how long a packet that took the
// fastest path waits in the buffer.
func (b *Buffer[T]) Depth() time.Duration {
	if !b.started {
		return 0
	}
	return time.Duration(b.offset - b.base())
}

// Stats returns the counters.
func (b *Buffer[T]) Stats() Stats {
	s := b.stats
	s.Depth = b.Depth()
	if b.started {
		s.Target = time.Duration(b.target())
	}
	if b.depthFrames > 0 {
		s.AvgDepth = time.Duration(b.depthSum / b.depthFrames)
	}
	return s
}

// NextDue returns when the next frame is due; false before the first packet.
func (b *Buffer[T]) NextDue() (time.Time, bool) {
	if !b.started {
		return time.Time{}, false
	}
	return b.epoch.Add(time.Duration(b.due())), true
}

// Waiting reports whether a frame is due at now and some of its audio has not
// arrived: the owner may look once more for a packet that came in since it
// last read, before it calls Pop.
func (b *Buffer[T]) Waiting(now time.Time) bool {
	return b.started && b.rel(now) >= b.due() && !b.allHave(b.p, b.p+b.frame)
}

func (b *Buffer[T]) due() int64 { return b.t0 + (b.p-b.s0)*b.sampleNS + b.offset }

func (b *Buffer[T]) rel(t time.Time) int64 {
	if b.epoch.IsZero() {
		b.epoch = t
	}
	return int64(t.Sub(b.epoch))
}

// Push stores a packet's audio.
func (b *Buffer[T]) Push(pk Packet[T]) Result {
	n := int64(len(pk.Payload))
	if n == 0 || n > b.maxPayload {
		b.stats.Invalid++
		return Invalid
	}
	b.stats.Received++
	at := b.rel(pk.Arrival)
	if at-b.tbase > b.rebaseAfter {
		b.rebase(at)
	}
	if !b.started || pk.SSRC != b.ssrc {
		b.resync(pk, at)
		return Resynced
	}
	start := b.p + int64(int32(pk.Timestamp-uint32(b.p)))
	end := start + n
	if end > b.p+b.reach {
		// Further ahead than the ring may hold: the sender's timeline jumped.
		b.resync(pk, at)
		return Resynced
	}
	if end > b.p+b.size {
		b.grow()
	}
	if end <= b.p-b.rate {
		// More than a second behind playout: a few of these in a row mean
		// the timeline jumped backwards.
		b.farLate++
		if b.farLate >= 3 {
			b.resync(pk, at)
			return Resynced
		}
	} else {
		b.farLate = 0
	}

	// Sequence numbers: duplicates and reordering.
	e := b.maxSeq + int64(int16(pk.Sequence-uint16(b.maxSeq)))
	newest, skipped := false, int64(0)
	switch {
	case e > b.maxSeq:
		newest, skipped = true, e-b.maxSeq-1
		b.advanceSeq(e)
		b.markSeq(e)
	case b.maxSeq-e < int64(len(b.seqWin))*64:
		if b.seqSeen(e) {
			b.stats.Duplicate++
			return Duplicate
		}
		b.stats.Reordered++
		b.markSeq(e)
	default:
		b.stats.Reordered++
	}

	// Transit and jitter measurement, in whole µs (as the window keeps it).
	transit := floorDiv(at-b.t0-(start-b.s0)*b.sampleNS, 1000) * 1000
	b.measure(at, transit)
	b.renewLateHold(at, transit)

	if newest {
		b.lostBefore(start, end, skipped*n)
	}
	if end <= b.p {
		b.stats.Late++
		b.stats.LateAudio += time.Duration(n * b.sampleNS)
		b.grewLate(at, transit)
		return Late
	}
	res := Accepted
	skip := int64(0)
	if start < b.p {
		b.stats.Late++
		b.grewLate(at, transit)
		skip = b.p - start
		b.stats.LateAudio += time.Duration(skip * b.sampleNS)
		res = Late
	}
	if skip == 0 && b.allHave(start, end) {
		b.stats.Duplicate++
		return Duplicate
	}
	b.write(start+skip, pk.Payload[skip:], at)
	return res
}

func (b *Buffer[T]) resync(pk Packet[T], at int64) {
	if b.started {
		b.stats.Resyncs++
	}
	b.started = true
	b.ssrc = pk.SSRC
	b.t0 = at
	b.s0 = int64(pk.Timestamp) + 1<<32
	b.p, b.pPos = b.s0, 0
	b.offset = int64(b.opt.Initial)
	b.maxSeq = int64(pk.Sequence) + 1<<32
	clear(b.seqWin[:])
	b.markSeq(b.maxSeq)
	clear(b.have)
	b.minHead, b.minTail = 0, 0
	b.histHead, b.histTail = 0, 0
	clear(b.hist)
	b.pBin, b.pCum = 0, 0
	b.lateHold, b.lateAt = 0, 0
	b.farLate = 0
	b.fillRun = 0
	b.excessSince = 0
	b.lastShrink = at
	b.newestEnd = b.p + int64(len(pk.Payload))
	b.nlost, b.runFrames, b.run = 0, 0, tsRange{}
	for i := range b.played {
		b.played[i] = b.codec.Silence()
	}
	if b.plc != nil {
		b.plc.Reset()
		b.plcBusy = false
	}
	b.measure(at, 0)
	b.write(b.p, pk.Payload, at)
}

// lostBefore takes the newest packet so far, [start, end), which follows
// skipped samples' worth of packets that never came: it settles the run of
// tail frames (those in the lost samples, or in this packet's own audio when
// it came too late, were concealment) and keeps the lost range for the holes
// still to be played.
func (b *Buffer[T]) lostBefore(start, end, skipped int64) {
	lost := tsRange{start - skipped, start}
	if b.runFrames > 0 {
		gone := tsRange{lost.from, min(end, b.p)} // lost, or played before this packet came
		if k := (b.run.overlap(gone) + b.frame - 1) / b.frame; k > 0 {
			b.stats.Concealed += uint64(min(uint64(k), b.runFrames))
			b.countRun(max(b.run.from, gone.from), min(b.run.to, gone.to))
		}
		b.runFrames, b.run = 0, tsRange{}
	}
	if lost.from = max(lost.from, b.p); lost.to > lost.from {
		if b.nlost == len(b.lost) { // merge with the last: ranges only grow later
			b.nlost--
			lost.from = b.lost[b.nlost].from
		}
		b.lost[b.nlost] = lost
		b.nlost++
	}
	b.newestEnd = max(b.newestEnd, end)
}

// concealed counts a frame whose ring samples [from, to) were not all there.
func (b *Buffer[T]) concealed(from, to int64) {
	f := tsRange{from, to}
	if to <= b.newestEnd {
		for i := range b.nlost {
			if b.lost[i].overlap(f) > 0 {
				b.stats.Concealed++
				b.countRun(from, to)
				return
			}
		}
		return // a hole the sender left: silence suppression, a timestamp jump
	}
	if b.runFrames == 0 {
		b.run = f
	}
	b.run.to = to
	b.runFrames++
}

// countRun counts concealment of [from, to) as a new run of loss unless it
// continues the last one.
func (b *Buffer[T]) countRun(from, to int64) {
	if from != b.concealedEnd {
		b.stats.LossRuns++
	}
	b.concealedEnd = to
}

// expireLost forgets lost ranges already played.
func (b *Buffer[T]) expireLost() {
	k := 0
	for i := range b.nlost {
		if b.lost[i].to > b.p {
			b.lost[k] = b.lost[i]
			k++
		}
	}
	b.nlost = k
}

func (b *Buffer[T]) advanceSeq(e int64) {
	if e-b.maxSeq >= int64(len(b.seqWin))*64 {
		clear(b.seqWin[:])
	} else {
		for s := b.maxSeq + 1; s <= e; s++ {
			i := s & (int64(len(b.seqWin))*64 - 1)
			b.seqWin[i>>6] &^= 1 << (i & 63)
		}
	}
	b.maxSeq = e
}

func (b *Buffer[T]) seqSeen(e int64) bool {
	i := e & (int64(len(b.seqWin))*64 - 1)
	return b.seqWin[i>>6]&(1<<(i&63)) != 0
}

func (b *Buffer[T]) markSeq(e int64) {
	i := e & (int64(len(b.seqWin))*64 - 1)
	b.seqWin[i>>6] |= 1 << (i & 63)
}

// measure records one packet's transit: the sliding minimum (baseline) and
// the histogram of delay relative to it.
func (b *Buffer[T]) measure(at, transit int64) {
	horizon := b.us(at - int64(b.opt.Window)) // an entry at or after it is in the window
	if b.qlen < b.qmax && (b.minTail-b.minHead == b.qlen && b.minQ[b.minHead&b.minMask].at >= horizon ||
		b.histTail-b.histHead == b.qlen && b.histAt[b.histHead&b.qmask] >= horizon) {
		b.growQueues()
	}
	// sliding minimum
	tus := clamp32(transit / 1000)
	for b.minTail > b.minHead && b.minQ[(b.minTail-1)&b.minMask].v >= tus {
		b.minTail--
	}
	if b.minTail-b.minHead == b.qlen {
		b.minHead++
	} else if b.minTail-b.minHead == len(b.minQ) {
		b.growMin()
	}
	b.minQ[b.minTail&b.minMask] = sample{b.us(at), tus}
	b.minTail++
	for b.minQ[b.minHead&b.minMask].at < horizon {
		b.minHead++
	}
	if b.minHead >= b.qlen {
		b.minHead -= b.qlen
		b.minTail -= b.qlen
	}
	// histogram of relative delay
	for b.histTail > b.histHead && (b.histAt[b.histHead&b.qmask] < horizon || b.histTail-b.histHead == b.qlen) {
		old := int(b.histBin[b.histHead&b.qmask])
		b.hist[old]--
		if old <= b.pBin {
			b.pCum--
		}
		b.histHead++
	}
	if b.histHead >= b.qlen {
		b.histHead -= b.qlen
		b.histTail -= b.qlen
	}
	d := transit - b.base()
	bin := (d + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	bin = min(max(bin, 0), int64(len(b.hist)-1))
	b.hist[bin]++
	if int(bin) <= b.pBin {
		b.pCum++
	}
	b.histAt[b.histTail&b.qmask], b.histBin[b.histTail&b.qmask] = b.us(at), uint16(bin)
	b.histTail++
}

func (b *Buffer[T]) base() int64 { return int64(b.minQ[b.minHead&b.minMask].v) * 1000 }

// growQueues doubles the window queues' length: a full queue whose oldest
// entry is still inside the window (packets shorter than 20 ms). histQ is
// reallocated; minQ may now hold as many entries, and grows to them as they
// come. Heads and tails stay as they are: both are below twice the old
// length, so each entry's place in the doubled ring is its index.
func (b *Buffer[T]) growQueues() {
	n := 2 * b.qlen
	at, bin := make([]int32, n), make([]uint16, n)
	for i := b.histHead; i < b.histTail; i++ {
		at[i&(n-1)], bin[i&(n-1)] = b.histAt[i&b.qmask], b.histBin[i&b.qmask]
	}
	b.histAt, b.histBin, b.qlen, b.qmask = at, bin, n, n-1
}

// minStart is minQ's length at first. The deque keeps only entries whose
// transit is below every later one's: with jitter, a handful (a transit that
// rises steadily, a sender's clock slower than ours, keeps more).
const minStart = 16

// growMin doubles minQ (fewer than qlen entries, all in use). Head and tail
// are below twice qlen, a multiple of the new length: entries keep their
// indices, and normalising them by qlen (measure) keeps their places.
func (b *Buffer[T]) growMin() {
	n := 2 * len(b.minQ)
	minQ := make([]sample, n)
	for i := b.minHead; i < b.minTail; i++ {
		minQ[i&(n-1)] = b.minQ[i&b.minMask]
	}
	b.minQ, b.minMask = minQ, n-1
}

// lateHeadroom is how much more than a late packet needed the depth grows to:
// a packet is late because the delay is above all the window has seen, and a
// delay that is rising (a sender falling behind, a queue filling) will be
// higher still for the next one.
const lateHeadroom = 10 * time.Millisecond

// grewLate makes the depth cover a late packet at once, with headroom.
func (b *Buffer[T]) grewLate(at, transit int64) {
	need := transit - b.base() + int64(b.opt.Margin) + int64(lateHeadroom)
	if need > b.lateHold || at-b.lateAt > int64(b.opt.LateHold) {
		b.lateHold = need
	}
	b.lateAt = at
}

// renewLateHold keeps the late hold while packets keep needing it: one that
// only the hold kept from being late (it needed more than the minimum and the
// measured percentile) starts the hold's time again.
func (b *Buffer[T]) renewLateHold(at, transit int64) {
	if b.lateAt == 0 || at-b.lateAt > int64(b.opt.LateHold) {
		return
	}
	need := transit - b.base() + int64(b.opt.Margin)
	if need > int64(b.opt.Min) && need > b.percentile() {
		b.lateAt = at
	}
}

// percentile is the measured depth: the Percentile of relative delay over the
// window, plus Margin; 0 before any measurement.
func (b *Buffer[T]) percentile() int64 {
	n := uint32(b.histTail - b.histHead)
	if n == 0 {
		return 0
	}
	k := uint32(math.Ceil(b.opt.Percentile * float64(n)))
	// The smallest bin whose count up to it reaches k, from the last one:
	// forward while short of k, back while the bin before still reaches it.
	for b.pCum < k {
		if b.pBin == len(b.hist)-1 {
			return 0 // not reached (k > n: not with a Percentile in (0, 1])
		}
		b.pBin++
		b.pCum += b.hist[b.pBin]
	}
	for b.pBin > 0 && b.pCum-b.hist[b.pBin] >= k {
		b.pCum -= b.hist[b.pBin]
		b.pBin--
	}
	return int64(b.pBin)*int64(time.Millisecond) + int64(b.opt.Margin)
}

// percentileScan is percentile as a sum of the histogram from its first bin
// (the tests hold the kept bin to it).
func (b *Buffer[T]) percentileScan() int64 {
	n := uint32(b.histTail - b.histHead)
	if n == 0 {
		return 0
	}
	k := uint32(math.Ceil(b.opt.Percentile * float64(n)))
	sum := uint32(0)
	for i, c := range b.hist {
		sum += c
		if sum >= k {
			return int64(i)*int64(time.Millisecond) + int64(b.opt.Margin)
		}
	}
	return 0
}

// target is the depth the buffer adapts to, in ns.
func (b *Buffer[T]) target() int64 {
	t := b.percentile()
	if b.minTail > b.minHead {
		newest := b.ns(b.minQ[(b.minTail-1)&b.minMask].at)
		if b.lateAt != 0 && newest-b.lateAt <= int64(b.opt.LateHold) {
			t = max(t, b.lateHold)
		}
		if newest-b.t0 < int64(b.opt.Window) {
			t = max(t, int64(b.opt.Initial))
		}
	}
	return min(max(t, int64(b.opt.Min)), int64(b.opt.Max))
}

// write stores samples from extended timestamp start.
func (b *Buffer[T]) write(start int64, data []T, at int64) {
	for len(data) > 0 {
		i := b.pos(start)
		n := copy(b.ring[i:], data)
		b.setHave(i, int64(n))
		// Arrival blocks are aligned to the timeline's first sample (as
		// ring positions are), so packets of whole milliseconds never share
		// a block.
		b.markArrival(i, int64(n), b.us(at)+1)
		data = data[n:]
		start += int64(n)
	}
}

// markArrival stamps the arrival blocks of ring positions [i, i+n) (no wrap)
// with a, unless they have a later one.
func (b *Buffer[T]) markArrival(i, n int64, a int32) {
	blocks := b.arrival[i>>b.blockShift : (i+n-1)>>b.blockShift+1]
	for k, v := range blocks {
		if v < a {
			blocks[k] = a
		}
	}
}

// newestArrival is the latest arrival stamp of the blocks of the frame at p:
// the blocks from p's to the frame's last sample's, wrapping at the ring's end
// (the ring is a whole number of blocks).
func (b *Buffer[T]) newestArrival() int32 {
	first, last := b.pPos>>b.blockShift, b.pos(b.p+b.frame-1)>>b.blockShift
	newest := int32(0)
	for j := first; ; j++ {
		if j == int64(len(b.arrival)) {
			j = 0
		}
		newest = max(newest, b.arrival[j])
		if j == last {
			return newest
		}
	}
}

// pos is the ring position of sample s, which is within a ring's size of p.
func (b *Buffer[T]) pos(s int64) int64 {
	i := b.pPos + s - b.p
	if i >= b.size {
		i -= b.size
	} else if i < 0 {
		i += b.size
	}
	return i
}

// advance moves playout n samples (at most a frame) on.
func (b *Buffer[T]) advance(n int64) {
	b.p += n
	if b.pPos += n; b.pPos >= b.size {
		b.pPos -= b.size
	}
}

func (b *Buffer[T]) block(s int64) int64 { return b.pos(s) >> b.blockShift }

// grow makes the ring reach samples long, for a packet that ends further
// past playout than the ring holds (but not so far as to be a jump): what it
// holds, and the arrival blocks, move to their places in the longer ring.
func (b *Buffer[T]) grow() {
	n := b.reach
	ring, have, arrival := make([]T, n), make([]uint64, n/64), make([]int32, n>>b.blockShift)
	pPos := (b.p - b.s0) % n
	for d := int64(0); d < b.size; d++ {
		i, j := b.pos(b.p+d), (pPos+d)%n
		ring[j] = b.ring[i]
		if b.have[i>>6]&(1<<(i&63)) != 0 {
			have[j>>6] |= 1 << (j & 63)
		}
		if i&(1<<b.blockShift-1) == 0 {
			arrival[j>>b.blockShift] = b.arrival[i>>b.blockShift]
		}
	}
	b.ring, b.have, b.arrival, b.size, b.pPos = ring, have, arrival, n, pPos
}

// span is the mask of k bits (1 to 64) of a have word from bit on.
func span(bit, k int64) uint64 {
	if k == 64 {
		return ^uint64(0)
	}
	return (1<<k - 1) << bit
}

func (b *Buffer[T]) setHave(i, n int64) {
	for n > 0 {
		w, bit := i>>6, i&63
		k := min(64-bit, n)
		b.have[w] |= span(bit, k)
		i += k
		n -= k
	}
}

// allHave reports whether every sample in [start, end) was received; it
// tests 64 samples per step.
func (b *Buffer[T]) allHave(start, end int64) bool {
	for s := start; s < end; {
		i := b.pos(s)
		w, bit := i>>6, i&63
		k := min(64-bit, end-s)
		m := span(bit, k)
		if b.have[w]&m != m {
			return false
		}
		s += k
	}
	return true
}

func (b *Buffer[T]) has(s int64) bool {
	i := b.pos(s)
	return b.have[i>>6]&(1<<(i&63)) != 0
}

// consume forgets samples [s, s+n) after playout; like allHave, 64 samples per
// step (the ring is a whole number of have words, so no step crosses its end).
func (b *Buffer[T]) consume(s, n int64) {
	for n > 0 {
		i := b.pos(s)
		w, bit := i>>6, i&63
		k := min(64-bit, n)
		b.have[w] &^= span(bit, k)
		s += k
		n -= k
	}
}

// silent reports whether samples [s, s+n) (n <= one frame) are missing
// or quiet.
func (b *Buffer[T]) silent(s, n int64) bool {
	const quiet = 300 // about -40 dBFS peak
	for k := range n {
		if b.has(s + k) {
			b.enc[k] = b.ring[b.pos(s+k)]
		} else {
			b.enc[k] = b.codec.Silence()
		}
	}
	b.codec.Decode(b.pcm[:n], b.enc[:n])
	for _, v := range b.pcm[:n] {
		if v > quiet || v < -quiet {
			return false
		}
	}
	return true
}

// Pop writes the frame due at or before now into dst (at least
// one frame of samples) and returns it; false if no frame is due yet.
func (b *Buffer[T]) Pop(now time.Time, dst []T) (Frame, bool) {
	if !b.started || int64(len(dst)) < b.frame {
		return Frame{}, false
	}
	due := b.due()
	if b.rel(now) < due {
		return Frame{}, false
	}
	dst = dst[:b.frame]

	// Adapt. Whole frames are inserted (concealment) or skipped, so frames
	// stay aligned with the sender's packets and the cadence is kept; less
	// than a frame is adapted by moving the due time.
	const ms = int64(time.Millisecond)
	cur := b.offset - b.base()
	tgt := b.target()
	ins := int64(0)
	switch {
	case cur < tgt:
		b.excessSince = 0
		if tgt-cur >= int64(FrameDuration) {
			ins = b.frame
			break
		}
		b.offset += (tgt - cur + ms - 1) / ms * ms
		if due = b.due(); b.rel(now) < due {
			return Frame{}, false
		}
	case cur-tgt > 2*ms:
		e := cur - tgt
		if e < int64(FrameDuration) {
			// Lossless: the next frame just leaves a little earlier.
			b.offset -= e / ms * ms
			due = b.due()
			b.excessSince = 0
			break
		}
		if b.excessSince == 0 {
			b.excessSince = due
		}
		hold := int64(b.opt.ShrinkHold)
		if b.silent(b.p, b.frame) || (due-b.excessSince >= hold && due-b.lastShrink >= hold/2) {
			b.consume(b.p, b.frame)
			b.advance(b.frame)
			b.offset -= int64(FrameDuration)
			b.stats.Skipped += FrameDuration
			b.lastShrink = due
		}
	default:
		b.excessSince = 0
	}
	f := Frame{Due: b.epoch.Add(time.Duration(due))}

	// Render: ins filled samples, then ring samples (missing ones filled).
	newest := int32(0)
	fills := int64(0)
	if ins == 0 && !b.plcBusy && b.allHave(b.p, b.p+b.frame) {
		// Fast path: the whole frame was received (and no concealment
		// needs to overlap it).
		n := copy(dst, b.ring[b.pPos:])
		copy(dst[n:], b.ring)
		newest = b.newestArrival()
		b.fillRun = 0
		goto done
	}
	for i := int64(0); i < b.frame; i++ {
		if i < ins {
			b.fill[i] = true
			fills++
			continue
		}
		s := b.p + i - ins
		if b.has(s) {
			dst[i] = b.ring[b.pos(s)]
			b.fill[i] = false
			if a := b.arrival[b.block(s)]; a > newest {
				newest = a
			}
		} else {
			b.fill[i] = true
			fills++
		}
	}
	if fills > 0 || b.plcBusy {
		b.conceal(dst, b.p+b.frame-ins)
	}
	if fills > 0 {
		f.Concealed = true
		if fills > ins {
			b.concealed(b.p, b.p+b.frame-ins)
		}
	} else {
		b.fillRun = 0
	}
done:
	f.Timestamp = uint32(b.p)
	if newest > 0 {
		f.Arrival = b.epoch.Add(time.Duration(b.ns(newest - 1)))
	}
	b.consume(b.p, b.frame-ins)
	b.advance(b.frame - ins)
	if b.nlost > 0 {
		b.expireLost()
	}
	b.offset += ins * b.sampleNS
	b.stats.Inserted += time.Duration(ins * b.sampleNS)
	b.stats.Frames++
	if ins == 0 {
		// The depth the frame's received audio waited. A frame inserted to
		// grow the depth carries none: it is not counted. After the baseline
		// transit jumped past the offset (readers fallen behind: every packet
		// late, the depth at Max), the buffer inserts frame after frame in one
		// Pop loop, each with the intermediate depth of that loop, negative
		// until it is back; counting those made the mean negative. A frame that
		// is not inserted leaves Pop at the target depth or above it, so at
		// least Min.
		d := b.offset - b.base()
		b.depthSum += d
		b.depthFrames++
		if time.Duration(d) > b.stats.MaxDepth {
			b.stats.MaxDepth = time.Duration(d)
		}
	}
	b.remember(dst)
	return f, true
}

// remember keeps a popped frame in the ring of played samples.
func (b *Buffer[T]) remember(frame []T) {
	n := copy(b.played[b.playedW:], frame)
	copy(b.played, frame[n:])
	b.playedW = (b.playedW + int64(len(frame))) & b.playedMask
}

// lastPlayed copies the last len(dst) samples played into dst, oldest first.
func (b *Buffer[T]) lastPlayed(dst []T) {
	start := (b.playedW - int64(len(dst))) & b.playedMask
	n := copy(dst, b.played[start:])
	copy(dst[n:], b.played)
}

// conceal fills the marked samples of dst; next is the ring position of the
// sample after the frame.
func (b *Buffer[T]) conceal(dst []T, next int64) {
	switch b.opt.Concealment {
	case ConcealPitch:
		b.concealPitch(dst, next)
	case ConcealFade:
		b.concealFade(dst)
	default:
		silence := b.codec.Silence()
		for i := range b.frame {
			if b.fill[i] {
				dst[i] = silence
			}
		}
	}
}

// concealPitch fills the marked samples of dst by pitch repetition (media/plc).
// The concealer gets the played history only when a loss starts; received
// samples go through it only while it overlaps the end of a loss, and only
// those it changed are encoded again.
func (b *Buffer[T]) concealPitch(dst []T, next int64) {
	c := b.plc
	if h := c.HistoryBuf(); h != nil {
		// Decoded from the played ring straight into the concealer's history.
		n := int64(len(h))
		start := (b.playedW - n) & b.playedMask
		first := b.played[start:min(start+n, int64(len(b.played)))]
		b.codec.Decode(h[:len(first)], first)
		b.codec.Decode(h[len(first):], b.played[:n-int64(len(first))])
	}
	b.codec.Decode(b.pcm, dst[:b.frame])
	for i := int64(0); i < b.frame; {
		j := i + 1
		for j < b.frame && b.fill[j] == b.fill[i] {
			j++
		}
		switch {
		case b.fill[i]:
			c.LostBefore(b.pcm[i:j], b.after(j, next))
			b.codec.Encode(b.enc[i:j], b.pcm[i:j])
			copy(dst[i:j], b.enc[i:j])
		case c.Concealing():
			c.Good(b.pcm[i:j])
			b.codec.Encode(b.enc[i:j], b.pcm[i:j])
			copy(dst[i:j], b.enc[i:j])
		}
		i = j
	}
	b.plcBusy = c.Concealing()
}

// after returns the received samples that follow a gap ending at frame
// sample j: the rest of the frame's received run, or, for a gap that reaches
// the frame's end, what the ring holds from next on (decoded); nil if none.
func (b *Buffer[T]) after(j int64, next int64) []int16 {
	if j < b.frame {
		k := j
		for k < b.frame && !b.fill[k] {
			k++
		}
		return b.pcm[j:k]
	}
	n := int64(0)
	for n < b.frame && b.has(next+n) {
		b.enc[n] = b.ring[b.pos(next+n)]
		n++
	}
	b.codec.Decode(b.ahead[:n], b.enc[:n])
	return b.ahead[:n]
}

// concealFade fills the marked samples of dst with the frame before the current
// run of concealment, attenuated linearly to silence over fadeLen samples.
func (b *Buffer[T]) concealFade(dst []T) {
	if b.fillRun == 0 {
		b.lastPlayed(b.enc)
		b.codec.Decode(b.rep, b.enc)
	}
	silence := b.codec.Silence()
	for i := range b.frame {
		if !b.fill[i] {
			b.pcm[i] = 0
			continue
		}
		g := 1 - float32(b.fillRun)/float32(b.fadeLen)
		if g <= 0 {
			b.pcm[i] = 0
		} else {
			b.pcm[i] = int16(float32(b.rep[i]) * g)
		}
		b.fillRun++
	}
	b.codec.Encode(b.enc[:], b.pcm[:])
	for i := range b.frame {
		if b.fill[i] {
			if b.pcm[i] == 0 {
				dst[i] = silence
			} else {
				dst[i] = b.enc[i]
			}
		}
	}
}
