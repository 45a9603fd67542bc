package jitter

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
)

type ulaw struct{}

func (ulaw) Decode(dst []int16, src []byte) int { return g711.ULawToPCM(dst, src) }
func (ulaw) Encode(dst []byte, src []int16) int { return g711.PCMToULaw(dst, src) }
func (ulaw) Silence() byte                      { return g711.ULawSilence }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// source is a sender's audio: a sine-like pattern of µ-law bytes that never
// repeats within a frame, so misplaced samples are detected.
func source(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		v := int16(8000 * ((i*7)%23 - 11) / 11)
		out[i] = g711.EncodeULaw(v)
	}
	return out
}

// sched is one packet's arrival.
type sched struct {
	at  time.Duration // arrival, from t0
	pkt Packet[byte]
}

// packetize cuts audio into packets of ptime (samples) sent at their media
// time from t0, each arriving after delay(i).
func packetize(audio []byte, ptimes []int, seq0 uint16, ts0 uint32, ssrc uint32, delay func(i int) time.Duration) []sched {
	var out []sched
	pos, i := 0, 0
	for pos < len(audio) {
		pt := ptimes[i%len(ptimes)]
		if pos+pt > len(audio) {
			break
		}
		send := time.Duration(pos+pt) * time.Second / SampleRate // sent when its last sample is captured
		out = append(out, sched{
			at: send + delay(i),
			pkt: Packet[byte]{SSRC: ssrc, Sequence: seq0 + uint16(i), Timestamp: ts0 + uint32(pos),
				Payload: audio[pos : pos+pt]},
		})
		pos += pt
		i++
	}
	return out
}

// run plays the schedule through a buffer: pushes at arrival times and pops
// at due times, in time order, until end. It returns the concatenated
// output, the frames and the frame latencies (due - newest arrival).
func run(t testing.TB, b *Buffer[byte], s []sched, end time.Duration) (out []byte, frames []Frame) {
	out, frames, _ = runCadence(t, b, s, end, false)
	return out, frames
}

// runCadence is run; strict requires every frame 20 ms after the previous.
// It also returns how many packets it pushed.
func runCadence(t testing.TB, b *Buffer[byte], s []sched, end time.Duration, strict bool) (out []byte, frames []Frame, pushed int) {
	slices.SortStableFunc(s, func(a, c sched) int { return int(a.at - c.at) })
	var dst [FrameSamples]byte
	i := 0
	var lastDue time.Time
	resyncs := b.Stats().Resyncs
	for {
		due, ok := b.NextDue()
		if i < len(s) && (!ok || !t0.Add(s[i].at).After(due)) {
			pk := s[i].pkt
			pk.Arrival = t0.Add(s[i].at)
			b.Push(pk)
			i++
			continue
		}
		if !ok || due.Sub(t0) > end {
			return out, frames, i
		}
		f, ok := b.Pop(due, dst[:])
		if !ok {
			if d2, _ := b.NextDue(); !d2.After(due) {
				t.Fatalf("Pop at due time %v returned nothing", due.Sub(t0))
			}
			continue // the buffer grew: the frame is due later
		}
		if !lastDue.IsZero() {
			gap := f.Due.Sub(lastDue)
			if gap < 0 || (strict && gap != FrameDuration && b.Stats().Resyncs == resyncs) {
				t.Fatalf("frame due %v after the previous", gap)
			}
		}
		resyncs = b.Stats().Resyncs
		lastDue = f.Due
		out = append(out, dst[:]...)
		frames = append(frames, f)
	}
}

// newBuf is a buffer with the default options, except that it starts at the
// minimum depth: the tests of the steady state measure from the first packet.
// TestStartsDeeperUntilMeasured covers the default start.
func newBuf() *Buffer[byte] { return New(Options[byte]{Codec: ulaw{}, Initial: 20 * time.Millisecond}) }

func TestCleanStreamsComeOutIdentical(t *testing.T) {
	audio := source(8000 * 3)
	tests := []struct {
		name   string
		ptimes []int
		seq    uint16
		ts     uint32
		delay  func(i int) time.Duration
		dups   bool
		min    time.Duration
	}{
		{"20ms in order", []int{160}, 100, 1000, func(int) time.Duration { return 0 }, false, 0},
		{"sequence and timestamp wrap", []int{160}, 65500, 0xFFFFFFFF - 3000, func(int) time.Duration { return 0 }, false, 0},
		{"10ms packets", []int{80}, 1, 1, func(int) time.Duration { return 0 }, false, 0},
		{"60ms packets", []int{480}, 1, 1, func(int) time.Duration { return 0 }, false, 0},
		// A 60 ms packet arrives 40 ms after a 20 ms one would have: the
		// depth must cover that.
		{"ptime changes mid-call", []int{160, 160, 480, 80, 80, 240, 160}, 7, 77, func(int) time.Duration { return 0 }, false, 70 * time.Millisecond},
		{"reordered within depth", []int{160}, 40000, 5, func(i int) time.Duration {
			if i%5 == 2 && i > 0 {
				return 18 * time.Millisecond // overtaken by the next packet
			}
			return 0
		}, false, 0},
		{"duplicates", []int{160}, 9, 9, func(int) time.Duration { return 0 }, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Options[byte]{Codec: ulaw{}, Min: tc.min, Initial: max(tc.min, 20*time.Millisecond)})
			s := packetize(audio, tc.ptimes, tc.seq, tc.ts, 1, tc.delay)
			if tc.dups {
				n := len(s)
				for i := 1; i < n; i += 7 {
					d := s[i]
					d.at += 5 * time.Millisecond
					s = append(s, d)
				}
			}
			out, frames, _ := runCadence(t, b, s, 2900*time.Millisecond, len(tc.ptimes) == 1)
			st := b.Stats()
			if st.Concealed != 0 || st.Late != 0 {
				t.Fatalf("concealed %d late %d, want 0: %+v", st.Concealed, st.Late, st)
			}
			if !bytes.Equal(out, audio[:len(out)]) {
				t.Fatalf("output differs from input")
			}
			if len(out) < 8000*2 {
				t.Fatalf("only %d samples out", len(out))
			}
			if tc.dups && st.Duplicate == 0 {
				t.Fatal("no duplicates counted")
			}
			if st.Depth != max(tc.min, 20*time.Millisecond) {
				t.Fatalf("depth %v, want the 20 ms minimum on a clean network", st.Depth)
			}
			// Frames of 20 ms packets leave exactly the depth after the
			// packet arrives.
			if tc.ptimes[0] == 160 && len(tc.ptimes) == 1 && tc.name != "reordered within depth" {
				for _, f := range frames[:10] {
					if lat := f.Due.Sub(f.Arrival); lat != 20*time.Millisecond {
						t.Fatalf("frame latency %v, want 20ms", lat)
					}
				}
			}
		})
	}
}

func TestLossIsConcealedAndFades(t *testing.T) {
	audio := source(8000)
	const lostFrom, lostTo = 20, 26 // six packets (120 ms) lost
	s := packetize(audio, []int{160}, 1, 1, 1, func(int) time.Duration { return 0 })
	s = slices.Delete(s, lostFrom, lostTo)
	b := newBuf()
	out, frames := run(t, b, s, 900*time.Millisecond)
	var pcm [FrameSamples]int16
	peak := func(k int) int {
		g711.ULawToPCM(pcm[:], out[k*FrameSamples:(k+1)*FrameSamples])
		m := 0
		for _, v := range pcm {
			m = max(m, abs(int(v)))
		}
		return m
	}
	ref := peak(lostFrom - 1)
	for k := lostFrom; k < lostTo; k++ {
		if !frames[k].Concealed {
			t.Fatalf("frame %d not marked concealed", k)
		}
	}
	if p := peak(lostFrom); p == 0 || p > ref {
		t.Fatalf("first concealed frame peak %d, want attenuated repeat of %d", p, ref)
	}
	if peak(lostFrom+1) >= peak(lostFrom) || peak(lostFrom+3) != 0 {
		t.Fatalf("concealment does not fade to silence: %d %d %d %d", peak(lostFrom), peak(lostFrom+1), peak(lostFrom+2), peak(lostFrom+3))
	}
	if frames[lostTo].Concealed || !bytes.Equal(out[lostTo*FrameSamples:(lostTo+1)*FrameSamples], audio[lostTo*FrameSamples:(lostTo+1)*FrameSamples]) {
		t.Fatal("audio after the gap is not the sender's")
	}
	if st := b.Stats(); st.Concealed != lostTo-lostFrom {
		t.Fatalf("concealed %d, want %d", st.Concealed, lostTo-lostFrom)
	}
}

// TestConcealedCountsOnlyLostAudio: the concealment counter counts frames of
// audio the sender sent and we lost (a sequence gap) or got too late — not the
// frames filled while it sent nothing (hold, a pause with its timestamps
// jumping on, the end of the stream), whatever the buffer's depth when the
// next packet comes.
func TestConcealedCountsOnlyLostAudio(t *testing.T) {
	const pkts = 150 // 3 s of 20 ms packets
	clean := func(int) time.Duration { return 0 }
	tests := []struct {
		name  string
		edit  func([]sched) []sched
		depth time.Duration // the minimum depth
		want  uint64
	}{
		{"hold: nothing sent for 1.6 s, the timeline goes on", func(s []sched) []sched {
			s = slices.Delete(s, 40, 120)
			for i := 40; i < len(s); i++ {
				s[i].pkt.Sequence -= 80 // not sent: no gap in the sequence numbers
			}
			return s
		}, 20 * time.Millisecond, 0},
		{"an outage: 80 packets (1.6 s) lost", func(s []sched) []sched {
			return slices.Delete(s, 40, 120)
		}, 20 * time.Millisecond, 80},
		{"a pause: timestamps jump on, sequence numbers do not", func(s []sched) []sched {
			s = slices.Delete(s, 40, 50)
			for i := 40; i < len(s); i++ {
				s[i].pkt.Sequence -= 10
			}
			return s
		}, 60 * time.Millisecond, 0},
		{"the stream ends", func(s []sched) []sched { return s[:100] }, 20 * time.Millisecond, 0},
		{"5 packets lost, the next one comes after their frames played", func(s []sched) []sched {
			return slices.Delete(s, 40, 45)
		}, 20 * time.Millisecond, 5},
		{"5 packets lost, the next one is already in the buffer", func(s []sched) []sched {
			return slices.Delete(s, 40, 45)
		}, 120 * time.Millisecond, 5},
		{"three packets lost twice", func(s []sched) []sched {
			return slices.Delete(slices.Delete(s, 80, 83), 40, 43)
		}, 40 * time.Millisecond, 6},
		{"a delay spike: 4 packets in order, too late", func(s []sched) []sched {
			for i := 40; i < 44; i++ {
				s[i].at += 200 * time.Millisecond
			}
			return s
		}, 20 * time.Millisecond, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.edit(packetize(source(pkts*FrameSamples), []int{160}, 100, 1000, 1, clean))
			b := New(Options[byte]{Codec: ulaw{}, Min: tc.depth, Initial: tc.depth, Max: max(tc.depth, 120*time.Millisecond)})
			_, frames := run(t, b, s, pkts*FrameDuration+time.Second)
			st := b.Stats()
			filled := 0
			for _, f := range frames {
				if f.Concealed {
					filled++
				}
			}
			if st.Concealed != tc.want {
				t.Fatalf("concealed %d, want %d (%d frames were filled; late %d)", st.Concealed, tc.want, filled, st.Late)
			}
		})
	}
}

func TestStartsDeeperUntilMeasured(t *testing.T) {
	// A clean sender: speech-like audio, 1.2 s on and 0.8 s of silence.
	audio := source(8000 * 10)
	for i := range audio {
		if i%16000 >= 9600 {
			audio[i] = g711.ULawSilence
		}
	}
	s := packetize(audio, []int{160}, 1, 1, 1, func(int) time.Duration { return 0 })
	b := New(Options[byte]{Codec: ulaw{}})
	out, frames := run(t, b, s, 9*time.Second)
	for _, f := range frames[:10] {
		if lat := f.Due.Sub(f.Arrival); lat != 40*time.Millisecond {
			t.Fatalf("first frames' latency %v, want the initial 40ms", lat)
		}
	}
	st := b.Stats()
	if st.Depth != 20*time.Millisecond || st.Late != 0 || st.Concealed != 0 {
		t.Fatalf("after the window: depth %v late %d concealed %d, want 20ms, 0, 0", st.Depth, st.Late, st.Concealed)
	}
	if st.Skipped != 20*time.Millisecond {
		t.Fatalf("skipped %v, want one frame of silence", st.Skipped)
	}
	// The skipped frame was silence: the speech came out whole and in order.
	var speech, heard []byte
	for i := 0; i+FrameSamples <= len(out); i += FrameSamples {
		if out[i] != g711.ULawSilence {
			heard = append(heard, out[i:i+FrameSamples]...)
		}
	}
	for i := 0; i+FrameSamples <= len(out)+FrameSamples; i += FrameSamples {
		if audio[i] != g711.ULawSilence {
			speech = append(speech, audio[i:i+FrameSamples]...)
		}
	}
	if !bytes.Equal(heard, speech[:len(heard)]) || len(speech)-len(heard) > 8*FrameSamples {
		t.Fatalf("speech changed: %d bytes heard of %d", len(heard), len(speech))
	}
}

func TestRisingDelayCostsFewLatePackets(t *testing.T) {
	// A sender that falls behind, as a loaded one does: from 5 s its packets
	// come 12 ms later each second, for 3 s, and one in ten up to 10 ms later
	// still. Each late packet grows the depth with headroom, so the climb
	// costs two or three packets (without the headroom: six).
	audio := source(8000 * 15)
	r := rand.New(rand.NewPCG(1, 2))
	s := packetize(audio, []int{160}, 1, 1, 1, func(i int) time.Duration {
		at := time.Duration(i) * 20 * time.Millisecond
		d := min(max(at-5*time.Second, 0), 3*time.Second) * 12 / 1000
		if r.IntN(10) == 0 {
			d += time.Duration(r.Int64N(int64(10 * time.Millisecond)))
		}
		return d
	})
	b := New(Options[byte]{Codec: ulaw{}})
	run(t, b, s, 15*time.Second)
	if st := b.Stats(); st.Late > 3 {
		t.Fatalf("late %d while the delay rose, want at most 3: %+v", st.Late, st)
	}
}

func TestRecurringSpikesAreLateOnce(t *testing.T) {
	// One packet in 400 (every 8 s, twice the 4 s window) comes 40 ms
	// late. The first is late; the depth it needed is kept for LateHold, so
	// the spikes after it are not.
	audio := source(8000 * 40)
	s := packetize(audio, []int{160}, 1, 1, 1, func(i int) time.Duration {
		if i%400 == 150 {
			return 40 * time.Millisecond
		}
		return 0
	})
	b := New(Options[byte]{Codec: ulaw{}})
	run(t, b, s, 40*time.Second)
	if st := b.Stats(); st.Late != 1 {
		t.Fatalf("late %d, want only the first spike: %+v", st.Late, st)
	}
	// With the hold as short as the window, every spike is late again.
	b = New(Options[byte]{Codec: ulaw{}, LateHold: 4 * time.Second})
	run(t, b, s, 40*time.Second)
	if st := b.Stats(); st.Late < 4 {
		t.Fatalf("late %d with a 4 s hold, want every spike", st.Late)
	}
}

func TestLatePacketGrowsDepthAtOnce(t *testing.T) {
	audio := source(8000 * 2)
	s := packetize(audio, []int{160}, 1, 1, 1, func(i int) time.Duration {
		if i == 30 {
			return 60 * time.Millisecond
		}
		return 0
	})
	b := newBuf()
	_, frames := run(t, b, s, 1500*time.Millisecond)
	st := b.Stats()
	if st.Late != 1 {
		t.Fatalf("late %d, want 1", st.Late)
	}
	if st.Depth < 61*time.Millisecond {
		t.Fatalf("depth %v after a 60 ms late packet, want >= 61ms", st.Depth)
	}
	if st.Inserted < 40*time.Millisecond {
		t.Fatalf("inserted %v, want the growth", st.Inserted)
	}
	_ = frames
}

func TestDepthAdaptsToJitterAndShrinksBack(t *testing.T) {
	audio := make([]byte, 8000*30)
	copy(audio, source(len(audio)))
	// Silence from 14 s on: shrinking prefers it.
	for i := 8000 * 14; i < len(audio); i++ {
		audio[i] = g711.ULawSilence
	}
	rng := rand.New(rand.NewPCG(1, 2))
	s := packetize(audio, []int{160}, 1, 1, 1, func(i int) time.Duration {
		if i < 500 { // 10 s of 0..40 ms jitter
			return time.Duration(rng.IntN(40_000)) * time.Microsecond
		}
		return 0
	})
	b := newBuf()
	var depthAt10 time.Duration
	s1 := s[:500]
	run(t, b, s1, 10*time.Second)
	depthAt10 = b.Depth()
	st := b.Stats()
	if depthAt10 < 35*time.Millisecond || depthAt10 > 50*time.Millisecond {
		t.Fatalf("depth %v under 0..40 ms jitter, want 35..50 ms", depthAt10)
	}
	if lateRatio := float64(st.Late) / float64(st.Received); lateRatio > 0.03 {
		t.Fatalf("late ratio %.3f, want < 3%%", lateRatio)
	}
	b2 := newBuf()
	run(t, b2, s, 29*time.Second)
	st2 := b2.Stats()
	if st2.Depth > 22*time.Millisecond {
		t.Fatalf("depth %v after the jitter stopped, want back to 20 ms (+2 ms hysteresis) (%+v)", st2.Depth, st2)
	}
	if st2.MaxDepth > 120*time.Millisecond {
		t.Fatalf("max depth %v above Max", st2.MaxDepth)
	}
}

func TestResync(t *testing.T) {
	audio := source(8000 * 2)
	tests := []struct {
		name   string
		mutate func(s []sched)
	}{
		{"SSRC change", func(s []sched) {
			for i := 50; i < len(s); i++ {
				s[i].pkt.SSRC = 2
				s[i].pkt.Sequence += 12345
				s[i].pkt.Timestamp += 999999
			}
		}},
		{"timestamp jump forward", func(s []sched) {
			for i := 50; i < len(s); i++ {
				s[i].pkt.Timestamp += 8000 * 60
			}
		}},
		{"timestamp jump backward", func(s []sched) {
			for i := 50; i < len(s); i++ {
				s[i].pkt.Timestamp -= 8000 * 60
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := packetize(audio, []int{160}, 1, 1, 1, func(int) time.Duration { return 0 })
			tc.mutate(s)
			b := newBuf()
			out, _ := run(t, b, s, 1900*time.Millisecond)
			st := b.Stats()
			if st.Resyncs != 1 {
				t.Fatalf("resyncs %d, want 1 (%+v)", st.Resyncs, st)
			}
			// The tail after the resync is the sender's audio again.
			tail := out[len(out)-8*FrameSamples:]
			if !bytes.Contains(audio, tail) {
				t.Fatal("audio after resync is not the sender's")
			}
		})
	}
}

func TestPopBeforeDueAndInvalid(t *testing.T) {
	b := newBuf()
	var dst [FrameSamples]byte
	if _, ok := b.Pop(t0, dst[:]); ok {
		t.Fatal("Pop before any packet")
	}
	if r := b.Push(Packet[byte]{Arrival: t0}); r != Invalid {
		t.Fatalf("empty payload: %v", r)
	}
	if r := b.Push(Packet[byte]{Arrival: t0, Payload: make([]byte, 2000)}); r != Invalid {
		t.Fatalf("oversized payload: %v", r)
	}
	b.Push(Packet[byte]{Arrival: t0, Payload: source(160)})
	if _, ok := b.Pop(t0.Add(19*time.Millisecond), dst[:]); ok {
		t.Fatal("Pop before due")
	}
	if due, _ := b.NextDue(); due != t0.Add(20*time.Millisecond) {
		t.Fatalf("due %v", due.Sub(t0))
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func BenchmarkPushPop(b *testing.B) {
	buf := newBuf()
	audio := source(FrameSamples)
	var dst [FrameSamples]byte
	rng := rand.New(rand.NewPCG(3, 4))
	b.ReportAllocs()
	for i := range b.N {
		at := t0.Add(time.Duration(i)*FrameDuration + time.Duration(rng.IntN(10000))*time.Microsecond)
		buf.Push(Packet[byte]{Arrival: at, SSRC: 1, Sequence: uint16(i), Timestamp: uint32(i * FrameSamples), Payload: audio})
		for {
			due, ok := buf.NextDue()
			if !ok || due.After(at) {
				break
			}
			buf.Pop(due, dst[:])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

// BenchmarkPushPopAdapting is Push+Pop with jitter switching between
// 0..60 ms and none every 10 s and talk and silence alternating, so the
// buffer grows, conceals and shrinks.
func BenchmarkPushPopAdapting(b *testing.B) {
	buf := newBuf()
	talk := source(FrameSamples)
	quiet := make([]byte, FrameSamples)
	for i := range quiet {
		quiet[i] = g711.ULawSilence
	}
	var dst [FrameSamples]byte
	rng := rand.New(rand.NewPCG(5, 6))
	const lookahead = 4
	pending := make([]Packet[byte], 0, lookahead)
	b.ReportAllocs()
	for i := range b.N {
		payload := talk
		if (i/100)%2 == 1 {
			payload = quiet
		}
		jit := 0
		if (i/500)%2 == 1 {
			jit = rng.IntN(60000)
		}
		at := t0.Add(time.Duration(i)*FrameDuration + time.Duration(jit)*time.Microsecond)
		pending = append(pending, Packet[byte]{Arrival: at, SSRC: 1, Sequence: uint16(i), Timestamp: uint32(i * FrameSamples), Payload: payload})
		if len(pending) < lookahead {
			continue
		}
		// deliver the earliest-arriving pending packet
		k := 0
		for j := range pending {
			if pending[j].Arrival.Before(pending[k].Arrival) {
				k = j
			}
		}
		pk := pending[k]
		pending = append(pending[:k], pending[k+1:]...)
		for {
			due, ok := buf.NextDue()
			if !ok || due.After(pk.Arrival) {
				break
			}
			buf.Pop(due, dst[:])
		}
		buf.Push(pk)
	}
	st := buf.Stats()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
	if b.N > 10000 && (st.Skipped == 0 || st.Inserted == 0) {
		b.Fatalf("did not adapt: %+v", st)
	}
}

// TestLatencyWithinDepth checks the latency contract: a frame leaves no
// later than the buffer's depth after the newest packet in it arrived.
func TestLatencyWithinDepth(t *testing.T) {
	for _, jit := range []int{0, 10, 20, 40} {
		t.Run(fmt.Sprintf("jitter %d ms", jit), func(t *testing.T) {
			audio := source(8000 * 20)
			rng := rand.New(rand.NewPCG(uint64(jit), 9))
			s := packetize(audio, []int{160}, 1, 1, 1, func(int) time.Duration {
				return time.Duration(rng.IntN(jit*1000+1)) * time.Microsecond
			})
			slices.SortStableFunc(s, func(a, c sched) int { return int(a.at - c.at) })
			b := newBuf()
			var dst [FrameSamples]byte
			i, worst := 0, time.Duration(-1<<63)
			for {
				due, ok := b.NextDue()
				if i < len(s) && (!ok || !t0.Add(s[i].at).After(due)) {
					pk := s[i].pkt
					pk.Arrival = t0.Add(s[i].at)
					b.Push(pk)
					i++
					continue
				}
				if !ok || i == len(s) {
					break
				}
				f, ok := b.Pop(due, dst[:])
				if !ok || f.Arrival.IsZero() {
					continue
				}
				if over := f.Due.Sub(f.Arrival) - b.Depth(); over > worst {
					worst = over
				}
			}
			if worst > time.Millisecond {
				t.Fatalf("a frame left %v after its packet beyond the depth", worst)
			}
			t.Logf("jitter %d ms: depth %v, worst latency beyond depth %v", jit, b.Depth(), worst)
		})
	}
}

// speechSource is espeak-ng speech as µ-law: four sentences with pauses.
func speechSource(t testing.TB) []byte {
	t.Helper()
	var pcm []int16
	for _, s := range audiotest.Sentences[:4] {
		x, err := audiotest.Speech(s, SampleRate)
		if err != nil {
			t.Fatal(err)
		}
		pcm = append(pcm, x...)
		pcm = append(pcm, make([]int16, SampleRate/4)...)
	}
	pcm = pcm[:len(pcm)/FrameSamples*FrameSamples]
	out := make([]byte, len(pcm))
	g711.PCMToULaw(out, pcm)
	return out
}

func decodeULaw(b []byte) []int16 {
	pcm := make([]int16, len(b))
	g711.ULawToPCM(pcm, b)
	return pcm
}

// TestConcealmentsOnSpeech: speech with packets lost at random and in bursts,
// and jitter, through the buffer with each concealment: pitch repetition beats
// repeat-and-fade and silence on the frequency-weighted segmental SNR and the
// log-spectral distance of what was played against what was sent. (The
// segmental SNR, a waveform measure, rates silence best: any concealment whose
// phase is off scores below the 0 dB of silence. It is logged, not judged.)
func TestConcealmentsOnSpeech(t *testing.T) {
	audio := speechSource(t)
	ref := decodeULaw(audio)
	for _, tc := range []struct {
		name   string
		p, r   float64 // Gilbert: P(loss | received), P(received | loss)
		jitter int     // ms, uniform
	}{
		{"random 5%, no jitter", 0.05, 0.95, 0},
		{"random 5%, 30 ms jitter", 0.05, 0.95, 30},
		{"bursts of 2.5, 5%", 0.021, 0.4, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scores := map[Concealment]audiotest.Score{}
			for _, c := range []Concealment{ConcealPitch, ConcealFade, ConcealSilence} {
				rng := rand.New(rand.NewPCG(11, 12))
				s := packetize(audio, []int{160}, 1, 1, 1, func(int) time.Duration {
					return time.Duration(rng.IntN(tc.jitter*1000+1)) * time.Microsecond
				})
				bad := false
				kept := s[:0:0]
				for _, x := range s {
					if bad {
						bad = rng.Float64() >= tc.r
					} else {
						bad = rng.Float64() < tc.p
					}
					if !bad {
						kept = append(kept, x)
					}
				}
				b := New(Options[byte]{Codec: ulaw{}, Concealment: c})
				out, _ := run(t, b, kept, time.Duration(len(audio)/8+500)*time.Millisecond)
				scores[c] = audiotest.Compare(ref, decodeULaw(out), SampleRate)
				st := b.Stats()
				t.Logf("%-7s fwSegSNR %.2f dB, LSD %.2f dB, segSNR %.2f dB (%d segments, %d shifts); concealed %d frames in %d runs, late %v, depth avg %v max %v",
					c, scores[c].FwSegSNR, scores[c].LSD, scores[c].SegSNR, scores[c].Segments, scores[c].Shifts,
					st.Concealed, st.LossRuns, st.LateAudio, st.AvgDepth, st.MaxDepth)
			}
			p, f, z := scores[ConcealPitch], scores[ConcealFade], scores[ConcealSilence]
			if p.FwSegSNR <= max(f.FwSegSNR, z.FwSegSNR) || p.LSD >= min(f.LSD, z.LSD) {
				t.Errorf("want pitch better than fade and silence: fwSegSNR %.2f %.2f %.2f, LSD %.2f %.2f %.2f",
					p.FwSegSNR, f.FwSegSNR, z.FwSegSNR, p.LSD, f.LSD, z.LSD)
			}
		})
	}
}

// TestLossStats: lost stretches count as concealed frames in runs, a sender
// that stops is not a loss, and late audio is counted.
func TestLossStats(t *testing.T) {
	audio := source(8000 * 2)
	s := packetize(audio, []int{160}, 1, 1, 1, func(i int) time.Duration {
		if i == 60 {
			return 200 * time.Millisecond // far too late: dropped
		}
		return 0
	})
	// Lose 20-22 (60 ms) and 40; stop sending after 80 packets.
	var kept []sched
	for i, x := range s[:80] {
		if (i >= 20 && i < 23) || i == 40 {
			continue
		}
		kept = append(kept, x)
	}
	b := newBuf()
	run(t, b, kept, 2*time.Second)
	st := b.Stats()
	if st.Concealed != 5 || st.LossRuns != 3 {
		t.Errorf("concealed %d frames in %d runs, want 5 (3 + 1, and the late packet's) in 3", st.Concealed, st.LossRuns)
	}
	if st.LateAudio != 20*time.Millisecond || st.Late != 1 {
		t.Errorf("late %d packets, %v of audio; want 1, 20ms", st.Late, st.LateAudio)
	}
	if st.AvgDepth < 20*time.Millisecond || st.AvgDepth > st.MaxDepth {
		t.Errorf("average depth %v, max %v", st.AvgDepth, st.MaxDepth)
	}
}

// TestAvgDepthAfterReadersFallBehind: the schedule of an overloaded gateway
// (issue 17's load runs saw a mean depth of -113 ms): its readers fall 1.05 s
// behind at 0.1 s and stay there, so the arrival stamps (read times) step up by
// that much. Every packet after the step is late; the depth grows to Max. When
// the window (4 s) forgets the last prompt packet, the baseline transit jumps
// past the playout offset and the buffer inserts about a second of frames to
// grow back, all in one Pop loop. Those inserted frames carry none of the
// sender's audio and must not count towards the mean depth with the
// intermediate, negative depths of that loop: the mean depth is that of the
// frames of received audio, so never below Min nor above the largest depth.
func TestAvgDepthAfterReadersFallBehind(t *testing.T) {
	audio := source(8000 * 6)
	s := packetize(audio, []int{160}, 1, 1, 1, func(i int) time.Duration {
		if i >= 5 {
			return 1050 * time.Millisecond
		}
		return 0
	})
	b := New(Options[byte]{Codec: ulaw{}})
	_, frames := run(t, b, s, 5*time.Second)
	st := b.Stats()
	if st.Inserted < 900*time.Millisecond || st.Resyncs != 0 {
		t.Fatalf("the schedule did not make the buffer grow back after the step (inserted %v, resyncs %d): %+v", st.Inserted, st.Resyncs, st)
	}
	if st.AvgDepth < 20*time.Millisecond || st.AvgDepth > st.MaxDepth || st.MaxDepth > 120*time.Millisecond {
		t.Fatalf("average depth %v, max %v over %d frames (%d popped here), want Min..max", st.AvgDepth, st.MaxDepth, st.Frames, len(frames))
	}
}

func TestConcealmentNames(t *testing.T) {
	for _, c := range []Concealment{ConcealPitch, ConcealFade, ConcealSilence} {
		got, err := ParseConcealment(c.String())
		if err != nil || got != c {
			t.Errorf("%v: %v %v", c, got, err)
		}
	}
	if _, err := ParseConcealment("plc"); err == nil {
		t.Error("ParseConcealment(plc) accepted")
	}
	if s := Concealment(9).String(); s != "Concealment(9)" {
		t.Error(s)
	}
}

// BenchmarkPushPopLossy is Push+Pop with 5% of the packets lost and 0-30 ms of
// jitter: the concealment's cost per frame, on average; no allocation.
func BenchmarkPushPopLossy(b *testing.B) {
	for _, c := range []Concealment{ConcealPitch, ConcealFade} {
		b.Run(c.String(), func(b *testing.B) {
			buf := New(Options[byte]{Codec: ulaw{}, Concealment: c})
			talk := source(FrameSamples)
			var dst [FrameSamples]byte
			rng := rand.New(rand.NewPCG(7, 8))
			b.ReportAllocs()
			for i := range b.N {
				at := t0.Add(time.Duration(i)*FrameDuration + time.Duration(rng.IntN(30000))*time.Microsecond)
				for {
					due, ok := buf.NextDue()
					if !ok || due.After(at) {
						break
					}
					buf.Pop(due, dst[:])
				}
				if rng.IntN(20) == 0 {
					continue
				}
				buf.Push(Packet[byte]{Arrival: at, SSRC: 1, Sequence: uint16(i), Timestamp: uint32(i * FrameSamples), Payload: talk})
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
		})
	}
}

// The window queues start at the size 20 ms packets need and double for
// shorter packets: a buffer that grew plays and measures exactly like one
// that had the full size from the start.
func TestWindowQueuesGrowForShortPackets(t *testing.T) {
	audio := source(8000 * 12)
	for _, ptime := range []int{80, 160} { // 10 and 20 ms
		rng := rand.New(rand.NewPCG(3, uint64(ptime)))
		s := packetize(audio, []int{ptime}, 1, 1, 1, func(i int) time.Duration {
			return time.Duration(rng.IntN(30_000)) * time.Microsecond
		})
		grown, full := newBuf(), newBuf()
		if grown.qlen != 256 || grown.qmax != 512 {
			t.Fatalf("queues %d of %d at first, want 256 of 512 (4 s window)", grown.qlen, grown.qmax)
		}
		full.minQ, full.histAt, full.histBin = make([]sample, full.qmax), make([]int32, full.qmax), make([]uint16, full.qmax)
		full.qlen, full.qmask, full.minMask = full.qmax, full.qmax-1, full.qmax-1
		out1, frames1 := run(t, grown, s, 12*time.Second)
		out2, frames2 := run(t, full, s, 12*time.Second)
		if !bytes.Equal(out1, out2) || !slices.Equal(frames1, frames2) {
			t.Fatalf("%d-sample packets: a buffer whose queues grew plays differently", ptime)
		}
		if st1, st2 := grown.Stats(), full.Stats(); st1 != st2 {
			t.Fatalf("%d-sample packets: stats %+v, with full queues %+v", ptime, st1, st2)
		}
		if !slices.Equal(window(grown), window(full)) || !slices.Equal(grown.hist, full.hist) {
			t.Fatalf("%d-sample packets: the window differs from the full queues' one", ptime)
		}
		want := 256
		if ptime == 80 {
			want = 512
		}
		if grown.qlen != want {
			t.Fatalf("%d-sample packets: queues of %d, want %d", ptime, grown.qlen, want)
		}
	}
}

// window lists the window queues' entries, oldest first.
func window(b *Buffer[byte]) []sample {
	var out []sample
	for i := b.minHead; i < b.minTail; i++ {
		out = append(out, b.minQ[i&b.minMask])
	}
	for i := b.histHead; i < b.histTail; i++ {
		out = append(out, sample{b.histAt[i&b.qmask], int32(b.histBin[i&b.qmask])})
	}
	return out
}

// Arrival times are kept as int32 µs after a time base that moves forward
// (rebase) before they overflow, after 18 minutes of call: a buffer that
// rebases every few seconds plays, measures and counts exactly like one that
// never does, on a stream with jitter (in µs), loss, reordering and a pause.
func TestRebaseIsInvisible(t *testing.T) {
	audio := source(8000 * 90)
	rng := rand.New(rand.NewPCG(17, 17))
	s := packetize(audio, []int{160}, 1, 1, 1, func(i int) time.Duration {
		return time.Duration(rng.IntN(45_000)) * time.Microsecond
	})
	kept := s[:0]
	for i, x := range s {
		// Losses, single and in bursts, and a pause: 20 s without packets (the
		// window empties), then the rest.
		if i%37 != 5 && !(i > 3200 && i%200 < 4) && i/1000 != 2 {
			kept = append(kept, x)
		}
	}
	rebased, plain := newBuf(), newBuf()
	rebased.rebaseAfter, rebased.rebaseKeep = int64(7*time.Second), int64(5*time.Second)
	out1, frames1 := run(t, rebased, kept, 110*time.Second)
	out2, frames2 := run(t, plain, kept, 110*time.Second)
	if rebased.tbase < int64(80*time.Second) || plain.tbase != 0 {
		t.Fatalf("time bases %v and %v: want the first past 80 s (rebased), the second 0", time.Duration(rebased.tbase), time.Duration(plain.tbase))
	}
	if len(frames1) < 5000 || !bytes.Equal(out1, out2) || !slices.Equal(frames1, frames2) {
		for i := range min(len(frames1), len(frames2)) {
			if frames1[i] != frames2[i] {
				t.Fatalf("frame %d: rebased %+v, plain %+v", i, frames1[i], frames2[i])
			}
		}
		t.Fatalf("a rebased buffer plays differently: %d and %d frames", len(frames1), len(frames2))
	}
	if st1, st2 := rebased.Stats(), plain.Stats(); st1 != st2 {
		t.Fatalf("stats %+v, without rebasing %+v", st1, st2)
	} else if st1.Late == 0 || st1.Concealed == 0 {
		t.Fatalf("stats %+v: the stream should have late and concealed audio", st1)
	}
	w1, w2 := window(rebased), window(plain)
	if len(w1) != len(w2) || !slices.Equal(rebased.hist, plain.hist) {
		t.Fatalf("windows of %d and %d entries", len(w1), len(w2))
	}
	for i := range w1 {
		if rebased.ns(w1[i].at) != plain.ns(w2[i].at) {
			t.Fatalf("window entry %d at %v, without rebasing %v", i, time.Duration(rebased.ns(w1[i].at)), time.Duration(plain.ns(w2[i].at)))
		}
	}
}

// Waiting: a frame due whose packet has not come says so (its owner reads its
// socket once more before Pop); one not yet due, or complete, does not.
func TestWaiting(t *testing.T) {
	s := packetize(source(800), []int{160}, 1, 1, 1, func(int) time.Duration { return 0 })
	b := newBuf()
	if b.Waiting(t0.Add(time.Second)) {
		t.Fatal("an empty buffer waits")
	}
	pk := s[0].pkt
	pk.Arrival = t0
	b.Push(pk)
	due, _ := b.NextDue()
	if b.Waiting(due.Add(-time.Millisecond)) {
		t.Fatal("a frame not yet due waits")
	}
	if b.Waiting(due) {
		t.Fatal("a complete frame waits")
	}
	var dst [FrameSamples]byte
	if _, ok := b.Pop(due, dst[:]); !ok {
		t.Fatal("no frame at its due time")
	}
	due, _ = b.NextDue()
	if b.Waiting(due.Add(-time.Millisecond)) || !b.Waiting(due) {
		t.Fatal("the second frame, due without its packet, does not wait (or waits before it is due)")
	}
	pk = s[1].pkt
	pk.Arrival = due
	b.Push(pk)
	if b.Waiting(due) {
		t.Fatal("the second frame waits once its packet is in")
	}
}
