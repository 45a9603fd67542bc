package audiotest

import (
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

func speech8k(t *testing.T) []int16 {
	t.Helper()
	x, err := Speech(Sentences[0], 8000)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestSpeech(t *testing.T) {
	x := speech8k(t)
	if d := float64(len(x)) / 8000; d < 1 || d > 5 {
		t.Fatalf("%q lasts %.2f s", Sentences[0], d)
	}
	if l := ActiveLevel(x, 8000); math.Abs(l-SpeechLevel) > 0.2 {
		t.Fatalf("active level %.2f dBFS, want %.1f", l, SpeechLevel)
	}
	y, _ := Speech(Sentences[0], 8000)
	if &y[0] != &x[0] {
		t.Fatal("the second call spoke again instead of using the cache")
	}
	w, err := Speech(Sentences[0], 16000)
	if err != nil || math.Abs(float64(len(w))-2*float64(len(x))) > 2 {
		t.Fatalf("16 kHz: %d samples for %d at 8 kHz (%v)", len(w), len(x), err)
	}
	// Speech has its energy where voices do: most of it under 1 kHz.
	if f := DominantFrequency(x, 8000); f < 80 || f > 1000 {
		t.Fatalf("dominant frequency %.0f Hz", f)
	}
	if !math.IsInf(ActiveLevel(make([]int16, 800), 8000), -1) {
		t.Fatal("silence has a level")
	}
}

func TestSpeechWithoutEspeak(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := Speech("not cached yet", 8000); err == nil || !strings.Contains(err.Error(), "apt-get install -y espeak-ng") {
		t.Fatalf("err = %v", err)
	}
	_ = os.Getenv("PATH")
}

func TestResample(t *testing.T) {
	for _, tc := range []struct{ from, to int }{{22050, 8000}, {8000, 16000}, {16000, 8000}, {8000, 22050}} {
		x := Sine(tc.from, 1000, -6, time.Second)
		y := Resample(x, tc.from, tc.to)
		if math.Abs(float64(len(y))-float64(tc.to)) > 1 {
			t.Errorf("%d->%d: %d samples", tc.from, tc.to, len(y))
		}
		mid := y[len(y)/4 : 3*len(y)/4]
		if f := DominantFrequency(mid, float64(tc.to)); math.Abs(f-1000) > 0.5 {
			t.Errorf("%d->%d: %.2f Hz", tc.from, tc.to, f)
		}
		if l := ToneLevelDBFS(mid, float64(tc.to), 1000); math.Abs(l-(-6-3.01)) > 0.1 {
			t.Errorf("%d->%d: level %.2f dBFS", tc.from, tc.to, l)
		}
		if s := SNRDB(mid, float64(tc.to), 1000); s < 60 {
			t.Errorf("%d->%d: SNR %.1f dB", tc.from, tc.to, s)
		}
	}
	// Above the lower Nyquist frequency nothing passes.
	x := Sine(22050, 5000, -6, time.Second)
	if l := RMSDBFS(Resample(x, 22050, 8000)[800:7200]); l > -60 {
		t.Errorf("a 5 kHz tone resampled to 8 kHz: %.1f dBFS", l)
	}
	if y := Resample(x[:10], 8000, 8000); len(y) != 10 || &y[0] == &x[0] {
		t.Error("same rate: not a copy")
	}
}

func TestCompareIdenticalAndDelayed(t *testing.T) {
	x := speech8k(t)
	s := Compare(x, x, 8000)
	if s.SegSNR != 35 || s.FwSegSNR != 35 || s.LSD != 0 || s.Delay != 0 || s.Shifts != 0 || s.Worst != 0 || s.Segments < 50 {
		t.Fatalf("identical: %+v", s)
	}
	// Delayed by 1234 samples inside a longer recording.
	deg := append(make([]int16, 1234), x...)
	deg = append(deg, make([]int16, 3000)...)
	if s := Compare(x, deg, 8000); s.Delay != 1234 || s.SegSNR != 35 {
		t.Fatalf("delayed: %+v", s)
	}
	// The recording starts a little late: a negative delay.
	if s := Compare(x, x[160:], 8000); s.Delay != -160 {
		t.Fatalf("late start: %+v", s)
	}
	if s := Compare(x[:100], x, 8000); s.Segments != 0 {
		t.Fatalf("shorter than a segment: %+v", s)
	}
}

// TestCompareFollowsInsertedAndSkippedFrames: a 20 ms frame of silence inserted
// in the middle and a frame skipped later move the alignment, not the score.
func TestCompareFollowsInsertedAndSkippedFrames(t *testing.T) {
	x := speech8k(t)
	n := 160
	a, b := len(x)/n/3*n, 2*len(x)/n/3*n
	deg := append([]int16(nil), x[:a]...)
	deg = append(deg, make([]int16, n)...)
	deg = append(deg, x[a:b]...)
	deg = append(deg, x[b+n:]...)
	s := Compare(x, deg, 8000)
	if s.Shifts != 2 || s.SegSNR < 33 {
		t.Fatalf("%+v", s)
	}
}

// TestCompareRanksDamage: more noise scores lower on every measure, and a lost
// frame filled with silence costs about one segment's worth.
func TestCompareRanksDamage(t *testing.T) {
	x := speech8k(t)
	rng := rand.New(rand.NewPCG(1, 2))
	noisy := func(level float64) []int16 {
		y := append([]int16(nil), x...)
		for i := range y {
			y[i] = saturate(float64(y[i]) + rng.NormFloat64()*level)
		}
		return y
	}
	a, b := Compare(x, noisy(30), 8000), Compare(x, noisy(300), 8000)
	if !(a.SegSNR > b.SegSNR && a.FwSegSNR > b.FwSegSNR && a.LSD < b.LSD) {
		t.Fatalf("less noise %+v, more noise %+v", a, b)
	}
	y := append([]int16(nil), x...)
	k := len(y) / 320 // a segment in the middle
	clear(y[k*160 : (k+1)*160])
	s, lost := CompareSegments(x, y, 8000, []int{k, -1, 1 << 20})
	if s.Worst != 1 || s.SegSNR > 35 || s.SegSNR < 34 {
		t.Fatalf("one frame of silence: %+v", s)
	}
	if lost.Segments != 1 || lost.Worst != 1 || lost.SegSNR != 0 || lost.Delay != s.Delay {
		t.Fatalf("the lost segment alone: %+v", lost)
	}
}

func TestSegmentSNREdges(t *testing.T) {
	if v := segmentSNR([]int16{0, 0}, []int16{1, 1}); v != segSNRMin {
		t.Fatal(v)
	}
	if v := segmentSNR([]int16{1000, 1000}, []int16{-1000, -1000}); math.Abs(v-(-6.02)) > 0.01 {
		t.Fatal(v)
	}
	if _, fw := spectralScores(make([]int16, 400), make([]int16, 400), 200, 200, 8000); fw != segSNRMax {
		t.Fatal(fw)
	}
}
