package plc

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cxco/gateway/media/audiotest"
)

func speech(t testing.TB, rate int) []int16 {
	t.Helper()
	var all []int16
	for _, s := range audiotest.Sentences[:4] {
		x, err := audiotest.Speech(s, rate)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, x...)
		all = append(all, make([]int16, rate/4)...)
	}
	return all
}

// concealer is one way to fill lost frames, for the comparisons.
type concealer interface {
	good([]int16)
	lost(x, next []int16) // next: the frame after x when it was received (lookahead), else nil
}

type pitchRepeat struct{ c *Concealer }

func (p pitchRepeat) good(x []int16)       { p.c.Good(x) }
func (p pitchRepeat) lost(x, next []int16) { p.c.LostBefore(x, next) }

// repeatFade is what the jitter buffer did before this package: repeat the last
// frame, attenuated linearly to silence over three frames.
type repeatFade struct {
	last []int16
	run  int
}

func (r *repeatFade) good(x []int16) { r.last = append(r.last[:0], x...); r.run = 0 }
func (r *repeatFade) lost(x, _ []int16) {
	for i := range x {
		g := 1 - float64(r.run)/float64(3*len(r.last))
		x[i] = 0
		if g > 0 && i < len(r.last) {
			x[i] = int16(float64(r.last[i]) * g)
		}
		r.run++
	}
}

type zeros struct{}

func (zeros) good([]int16)      {}
func (zeros) lost(x, _ []int16) { clear(x) }

// lose runs x through c in 20 ms frames, losing those lost(k) says, and
// returns what was played. With lookahead the frame after a lost one is given
// to the concealment when it was received, as a jitter buffer can when the
// next packet came in time.
func lose(x []int16, rate int, c concealer, lost func(k int) bool, lookahead bool) []int16 {
	n := rate / 50
	out := append([]int16(nil), x...)
	frames := len(out) / n
	gone := make([]bool, frames+1)
	for k := range frames {
		gone[k] = lost(k)
	}
	gone[frames] = true
	for k := range frames {
		f := out[k*n : (k+1)*n]
		switch {
		case gone[k] && lookahead && !gone[k+1]:
			c.lost(f, out[(k+1)*n:(k+2)*n])
		case gone[k]:
			c.lost(f, nil)
		default:
			c.good(f)
		}
	}
	return out
}

// gilbert is a two-state loss pattern: p is P(loss | received), r P(received | loss).
func gilbert(seed uint64, p, r float64) func(int) bool {
	rng := rand.New(rand.NewPCG(seed, 1))
	bad := false
	return func(int) bool {
		if bad {
			bad = rng.Float64() >= r
		} else {
			bad = rng.Float64() < p
		}
		return bad
	}
}

// TestBeatsRepeatAndFadeOnSpeech is the package's reason to exist: on real
// speech (espeak-ng) with random and bursty loss, at 8 and 16 kHz, the pitch
// repetition scores a higher frequency-weighted segmental SNR and a lower
// log-spectral distance than repeating the last frame and fading (the jitter
// buffer's concealment before), which beats silence; with the next frame known
// its segmental SNR is higher too. (Without it, the overlap into the received
// audio costs segmental SNR, which counts the smoothing of a step as damage.)
func TestBeatsRepeatAndFadeOnSpeech(t *testing.T) {
	for _, tc := range []struct {
		rate int
		name string
		p, r float64
	}{
		{8000, "random 5%", 0.05, 0.95},
		{8000, "bursty 5% in bursts of 2.5", 0.021, 0.4},
		{16000, "random 10%", 0.10, 0.90},
	} {
		rate := tc.rate
		ref := speech(t, rate)
		score := func(c concealer, lookahead bool) audiotest.Score {
			return audiotest.Compare(ref, lose(ref, rate, c, gilbert(7, tc.p, tc.r), lookahead), rate)
		}
		p, pl, f, z := score(pitchRepeat{MustNew(rate)}, false), score(pitchRepeat{MustNew(rate)}, true), score(&repeatFade{}, false), score(zeros{}, false)
		t.Logf("%d Hz, %s: fwSegSNR / LSD / segSNR: pitch %.2f / %.2f / %.2f dB, with lookahead %.2f / %.2f / %.2f, repeat+fade %.2f / %.2f / %.2f, silence %.2f / %.2f / %.2f",
			rate, tc.name, p.FwSegSNR, p.LSD, p.SegSNR, pl.FwSegSNR, pl.LSD, pl.SegSNR, f.FwSegSNR, f.LSD, f.SegSNR, z.FwSegSNR, z.LSD, z.SegSNR)
		if p.FwSegSNR <= f.FwSegSNR || p.LSD >= f.LSD {
			t.Errorf("%d Hz, %s: pitch repetition (fwSegSNR %.2f dB, LSD %.2f dB) does not beat repeat+fade (%.2f, %.2f)",
				rate, tc.name, p.FwSegSNR, p.LSD, f.FwSegSNR, f.LSD)
		}
		// With the next frame known, the received audio is not overlapped:
		// even the waveform measure, which rates any overlap as damage, prefers it.
		if pl.FwSegSNR <= p.FwSegSNR || pl.LSD >= p.LSD || pl.SegSNR <= f.SegSNR {
			t.Errorf("%d Hz, %s: with lookahead (%.2f / %.2f / %.2f dB) not better than without (%.2f / %.2f) and repeat+fade's segSNR (%.2f)",
				rate, tc.name, pl.FwSegSNR, pl.LSD, pl.SegSNR, p.FwSegSNR, p.LSD, f.SegSNR)
		}
		if f.FwSegSNR <= z.FwSegSNR {
			t.Errorf("%d Hz, %s: repeat+fade (%.2f dB) does not beat silence (%.2f)", rate, tc.name, f.FwSegSNR, z.FwSegSNR)
		}
	}
}

// TestContinuesATone: a lost stretch of a steady tone is continued at its
// pitch, with its phase, at full level for the first 10 ms.
func TestContinuesATone(t *testing.T) {
	for _, tc := range []struct {
		rate int
		freq float64
	}{{8000, 200}, {8000, 100}, {8000, 133.33333333333334}, {16000, 200}, {16000, 125}} {
		x := audiotest.Sine(tc.rate, tc.freq, -10, 300_000_000)
		c := MustNew(tc.rate)
		n := tc.rate / 100 // 10 ms
		split := len(x) / 2
		c.Good(append([]int16(nil), x[:split]...))
		got := make([]int16, n)
		c.Lost(got)
		snr := segSNR(x[split:split+n], got)
		if snr < 30 {
			t.Errorf("%d Hz tone at %d Hz: the first 10 ms of concealment is %.1f dB from the tone (pitch %d)", int(tc.freq), tc.rate, snr, c.Pitch())
		}
		if p := float64(tc.rate) / float64(c.Pitch()); math.Abs(p-tc.freq)/tc.freq > 0.02 && math.Abs(p*2-tc.freq)/tc.freq > 0.02 && math.Abs(p*3-tc.freq)/tc.freq > 0.02 {
			t.Errorf("%d Hz tone: pitch %d samples (%.1f Hz)", int(tc.freq), c.Pitch(), p)
		}
	}
}

func segSNR(ref, deg []int16) float64 {
	var s, e float64
	for i := range ref {
		d := float64(ref[i]) - float64(deg[i])
		s += float64(ref[i]) * float64(ref[i])
		e += d * d
	}
	if e == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(s/e)
}

func rms(x []int16) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(len(x)))
}

// TestFadesAsAppendixI: full level for 10 ms, then 20% less per 10 ms, silence
// from 60 ms; the first received audio after it is faded in, not cut in.
func TestFadesAsAppendixI(t *testing.T) {
	for _, rate := range []int{8000, 16000} {
		x := audiotest.Sine(rate, 150, -6, 200_000_000)
		c := MustNew(rate)
		c.Good(append([]int16(nil), x...))
		u := rate / 100
		lost := make([]int16, 8*u)
		c.Lost(lost[:3*u/2]) // in uneven pieces: the schedule is by sample
		c.Lost(lost[3*u/2:])
		level := rms(x)
		for k := range 8 {
			got := rms(lost[k*u:(k+1)*u]) / level
			// the mean gain over each 10 ms of the linear ramp
			want := 1.0
			if k >= 1 {
				want = max(0, 1-0.2*(float64(k)-0.5))
			}
			if k >= 6 {
				want = 0
			}
			if math.Abs(got-want) > 0.06 {
				t.Errorf("%d Hz: level in the %d. 10 ms of the loss %.2f of the speech's, want %.2f", rate, k+1, got, want)
			}
		}
		// After 80 ms of silence the overlap fades the new audio in over 10 ms.
		next := make([]int16, 2*u)
		for i := range next {
			next[i] = 10000
		}
		c.Good(next)
		if next[0] > 10000/10 || next[u-1] < 10000*9/10 || next[u] != 10000 {
			t.Errorf("%d Hz: the audio after the loss is not faded in over 10 ms: %d %d %d", rate, next[0], next[u-1], next[u])
		}
		if c.Concealing() {
			t.Errorf("%d Hz: still concealing after the overlap", rate)
		}
	}
}

// TestOverlapAfterShortLoss: after one lost 20 ms frame the received audio is
// overlap-added over a quarter period plus 4 ms, and is the received audio after.
func TestOverlapAfterShortLoss(t *testing.T) {
	x := audiotest.Sine(8000, 160, -6, 200_000_000) // period 50 samples
	c := MustNew(8000)
	c.Good(append([]int16(nil), x[:800]...))
	lost := make([]int16, 160)
	c.Lost(lost)
	if !c.Concealing() || c.Pitch() != 50 {
		t.Fatalf("concealing %v, pitch %d, want true, 50", c.Concealing(), c.Pitch())
	}
	next := append([]int16(nil), x[960:1120]...)
	c.Good(next[:10]) // the overlap may span calls
	c.Good(next[10:])
	olen := 50 / 4
	for i := olen; i < len(next); i++ {
		if next[i] != x[960+i] {
			t.Fatalf("sample %d after the loss changed: %d, want %d (overlap %d)", i, next[i], x[960+i], olen)
		}
	}
	// The tone continued through the loss, so the overlap joins two copies of
	// it, the concealment's attenuated to 0.8 after 20 ms: 0.8+0.2w of the tone.
	if snr := segSNR(x[960:960+olen], next[:olen]); snr < 15 {
		t.Errorf("overlap region %.1f dB from the tone", snr)
	}
	if c.Concealing() {
		t.Error("still concealing after the overlap")
	}
}

// TestLossResumesDuringOverlap: a loss that starts again before the overlap
// after the last one ended continues the same concealment (its schedule too).
func TestLossResumesDuringOverlap(t *testing.T) {
	x := audiotest.Sine(8000, 200, -6, 100_000_000)
	c := MustNew(8000)
	c.Good(append([]int16(nil), x...))
	a := make([]int16, 160)
	c.Lost(a)
	b := append([]int16(nil), x[:5]...)
	c.Good(b)
	d := make([]int16, 400) // 50 ms more: 75 ms in all, faded out by the end
	c.Lost(d)
	if rms(d[len(d)-80:]) != 0 {
		t.Errorf("the resumed loss did not keep the schedule: level %f at 65-75 ms", rms(d[len(d)-80:]))
	}
}

func TestHistoryAndReset(t *testing.T) {
	x := audiotest.Sine(8000, 200, -6, 100_000_000)
	a, b := MustNew(8000), MustNew(8000)
	a.Good(append([]int16(nil), x...))
	b.History(x[len(x)-100:]) // shorter than the history: zeros in front
	b.History(x)              // replaced
	la, lb := make([]int16, 160), make([]int16, 160)
	a.Lost(la)
	b.Lost(lb[:1])
	b.History(make([]int16, 400)) // ignored while concealing
	b.Lost(lb[1:])
	for i := range la {
		if la[i] != lb[i] {
			t.Fatalf("History gave another concealment than Good at %d: %d %d", i, la[i], lb[i])
		}
	}
	a.Reset()
	if a.Concealing() {
		t.Fatal("Reset left a loss in progress")
	}
	a.Lost(la)
	if rms(la) != 0 {
		t.Fatal("after Reset the concealment is not silence")
	}
	if a.Rate() != 8000 || a.HistoryLen() != 390 || MustNew(16000).HistoryLen() != 780 {
		t.Fatal("rate or history length")
	}
	a.Lost(nil)
}

func TestNewRejectsOtherRates(t *testing.T) {
	for _, r := range []int{0, 11025, 48000} {
		if _, err := New(r); err == nil || !strings.Contains(err.Error(), "8000 or 16000") {
			t.Errorf("rate %d: %v", r, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("MustNew(44100) did not panic")
		}
	}()
	MustNew(44100)
}

func TestSaturates(t *testing.T) {
	if sat(40000) != math.MaxInt16 || sat(-40000) != math.MinInt16 || sat(-1.6) != -2 || sat(1.4) != 1 {
		t.Fatal("sat")
	}
}

// BenchmarkLost is the cost of concealing one 20 ms frame at 8 kHz, at the
// start of a loss (the pitch search) and after; no allocation.
func BenchmarkLost(b *testing.B) {
	for _, rate := range []int{8000, 16000} {
		b.Run(map[int]string{8000: "8kHz", 16000: "16kHz"}[rate], func(b *testing.B) {
			x := audiotest.Sine(rate, 180, -10, 100_000_000)
			c := MustNew(rate)
			f := make([]int16, rate/50)
			b.ReportAllocs()
			for b.Loop() {
				c.History(x)
				c.Lost(f)
				copy(f, x)
				c.Good(f)
			}
		})
	}
}
