package audiotest

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// sineDBFS is the expected RMS level of a Tone of the given Amplitude.
func sineDBFS(amplitude float64) float64 {
	return 20*math.Log10(amplitude*fullScale/ref) + rmsOfSine
}

func tone(rate, freq, amplitude float64, n int) []int16 {
	x := make([]int16, n)
	t := Tone{Rate: rate, Freq: freq, Amplitude: amplitude}
	t.Fill(x)
	return x
}

func TestToneFillIsContinuousAcrossCalls(t *testing.T) {
	want := tone(8000, 1013, 0.7, 4000)
	for _, chunk := range []int{1, 7, 160, 333} {
		tn := Tone{Rate: 8000, Freq: 1013, Amplitude: 0.7}
		got := make([]int16, len(want))
		for off := 0; off < len(got); off += chunk {
			tn.Fill(got[off:min(off+chunk, len(got))])
		}
		if !slices.Equal(got, want) {
			t.Errorf("chunks of %d: samples differ from one Fill call", chunk)
		}
	}
}

func TestToneFillShape(t *testing.T) {
	x := tone(8000, 1000, 1, 8) // 8 samples per cycle
	want := []int16{0, 23170, 32767, 23170, 0, -23170, -32767, -23170}
	if !slices.Equal(x, want) {
		t.Errorf("1 kHz at 8 kHz = %v, want %v", x, want)
	}
	clipped := tone(8000, 1000, 2, 8)
	if slices.Max(clipped) != math.MaxInt16 || slices.Min(clipped) != math.MinInt16 {
		t.Errorf("amplitude 2 should saturate, got %v", clipped)
	}
}

func TestSilence(t *testing.T) {
	x := tone(8000, 440, 0.5, 100)
	Silence(x)
	if slices.ContainsFunc(x, func(v int16) bool { return v != 0 }) {
		t.Errorf("Silence left non-zero samples")
	}
}

func TestRMSDBFS(t *testing.T) {
	square := make([]int16, 8000)
	for i := range square {
		square[i] = math.MaxInt16
		if i%8 >= 4 {
			square[i] = math.MinInt16
		}
	}
	tests := []struct {
		name string
		x    []int16
		want float64
	}{
		{"full-scale sine", tone(8000, 1000, 1, 8000), sineDBFS(1)},
		{"half-scale sine", tone(8000, 1000, 0.5, 8000), sineDBFS(0.5)},
		{"-40 dBFS sine off-bin", tone(16000, 1234.5, 0.01, 16000), sineDBFS(0.01)},
		{"full-scale square", square, 0},
		{"silence", make([]int16, 160), math.Inf(-1)},
		{"empty", nil, math.Inf(-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RMSDBFS(tt.x)
			if math.IsInf(tt.want, -1) {
				if !math.IsInf(got, -1) {
					t.Errorf("RMSDBFS = %v, want -Inf", got)
				}
				return
			}
			if math.Abs(got-tt.want) > 0.01 {
				t.Errorf("RMSDBFS = %.4f dBFS, want %.4f", got, tt.want)
			}
		})
	}
	if got := sineDBFS(1); math.Abs(got+3.01) > 0.01 {
		t.Errorf("full-scale sine convention: %.4f dBFS, want -3.01", got)
	}
}

func TestLoudSpan(t *testing.T) {
	x := make([]int16, 1000)                  // 6 frames of 160 and a partial one of 40
	copy(x[160:], tone(8000, 1000, 0.1, 320)) // -23 dBFS: frames 1 and 2
	x[990] = 30000                            // loud, but in the partial frame
	tests := []struct {
		name        string
		x           []int16
		frame       int
		dBFS        float64
		first, last int
	}{
		{"tone", x, 160, -30, 160, 480},
		{"threshold above the tone", x, 160, -20, -1, -1},
		{"one frame", x, 1000, -40, 0, 1000},
		{"only a partial frame", x[960:], 160, -30, -1, -1},
		{"empty", nil, 160, -30, -1, -1},
		{"zero frame", x, 0, -30, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, last := LoudSpan(tt.x, tt.frame, tt.dBFS)
			if first != tt.first || last != tt.last {
				t.Errorf("LoudSpan = %d, %d, want %d, %d", first, last, tt.first, tt.last)
			}
		})
	}
}

func TestGoertzelAndToneLevel(t *testing.T) {
	tests := []struct {
		name            string
		rate, freq, amp float64
		n               int
	}{
		{"full scale 1 kHz at 8 kHz", 8000, 1000, 1, 8000},
		{"-20 dBFS 300 Hz at 8 kHz", 8000, 300, 0.1, 8000},
		{"-6 dBFS 3400 Hz at 8 kHz, 20 ms", 8000, 3400, 0.5, 160},
		{"off-bin 1234.5 Hz at 16 kHz", 16000, 1234.5, 0.3, 16000},
		{"-60 dBFS 7000 Hz at 16 kHz", 16000, 7000, 0.001, 16000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := tone(tt.rate, tt.freq, tt.amp, tt.n)
			peak := PowerDBFS(Goertzel(x, tt.rate, tt.freq))
			if want := 20 * math.Log10(tt.amp*fullScale/ref); math.Abs(peak-want) > 0.05 {
				t.Errorf("PowerDBFS(Goertzel) = %.3f dB, want %.3f", peak, want)
			}
			level := ToneLevelDBFS(x, tt.rate, tt.freq)
			if want := sineDBFS(tt.amp); math.Abs(level-want) > 0.05 {
				t.Errorf("ToneLevelDBFS = %.3f dBFS, want %.3f", level, want)
			}
			if rms := RMSDBFS(x); math.Abs(level-rms) > 0.05 {
				t.Errorf("ToneLevelDBFS = %.3f, RMSDBFS = %.3f: should agree for a pure tone", level, rms)
			}
			// Nothing at a frequency 200 Hz away: only quantisation noise and
			// window leakage.
			if other := ToneLevelDBFS(x, tt.rate, tt.freq+200); other > level-60 && other > -100 {
				t.Errorf("level 200 Hz away = %.1f dBFS next to a %.1f dBFS tone", other, level)
			}
		})
	}
	if p := Goertzel(nil, 8000, 1000); p != 0 {
		t.Errorf("Goertzel(nil) = %v, want 0", p)
	}
}

func TestDominantFrequency(t *testing.T) {
	tests := []struct {
		name            string
		rate, freq, amp float64
		n               int
		tol             float64
	}{
		{"300 Hz, 1 s at 8 kHz", 8000, 300, 0.5, 8000, 0.05},
		{"1 kHz, 1 s at 8 kHz", 8000, 1000, 0.5, 8000, 0.05},
		{"3400 Hz, 1 s at 8 kHz", 8000, 3400, 0.5, 8000, 0.05},
		{"1234.5 Hz, 1 s at 16 kHz", 16000, 1234.5, 0.01, 16000, 0.05},
		{"7700 Hz, 1 s at 16 kHz", 16000, 7700, 0.5, 16000, 0.05},
		{"1 kHz, 20 ms at 8 kHz", 8000, 1000, 0.5, 160, 5},
		{"2 kHz, 20 ms at 16 kHz", 16000, 2017, 0.5, 320, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := tone(tt.rate, tt.freq, tt.amp, tt.n)
			got := DominantFrequency(x, tt.rate)
			if math.Abs(got-tt.freq) > tt.tol {
				t.Errorf("DominantFrequency = %.3f Hz, want %.3f ± %v", got, tt.freq, tt.tol)
			}
		})
	}
	t.Run("DC offset is ignored", func(t *testing.T) {
		x := tone(8000, 440, 0.2, 8000)
		for i := range x {
			x[i] += 10000
		}
		if got := DominantFrequency(x, 8000); math.Abs(got-440) > 0.05 {
			t.Errorf("DominantFrequency = %.3f Hz, want 440", got)
		}
	})
	t.Run("silence", func(t *testing.T) {
		if got := DominantFrequency(make([]int16, 800), 8000); got != 0 {
			t.Errorf("DominantFrequency(silence) = %v, want 0", got)
		}
	})
}

func TestTwoToneMix(t *testing.T) {
	const rate = 8000
	a := tone(rate, 1000, 0.5, rate)
	b := tone(rate, 1700, 0.05, rate) // 20 dB below a
	x := make([]int16, rate)
	for i := range x {
		x[i] = a[i] + b[i]
	}
	if got := DominantFrequency(x, rate); math.Abs(got-1000) > 0.05 {
		t.Errorf("DominantFrequency = %.3f Hz, want 1000", got)
	}
	for _, c := range []struct {
		freq, amp float64
	}{{1000, 0.5}, {1700, 0.05}} {
		if got, want := ToneLevelDBFS(x, rate, c.freq), sineDBFS(c.amp); math.Abs(got-want) > 0.05 {
			t.Errorf("ToneLevelDBFS(%v Hz) = %.3f dBFS, want %.3f", c.freq, got, want)
		}
	}
	if got := SNRDB(x, rate, 1000); math.Abs(got-20) > 0.05 {
		t.Errorf("SNRDB(1000 Hz) = %.3f dB, want 20", got)
	}
	if got := SNRDB(x, rate, 1700); math.Abs(got+20) > 0.05 {
		t.Errorf("SNRDB(1700 Hz) = %.3f dB, want -20", got)
	}
	// Total power is the sum of both tones' powers.
	want := 10 * math.Log10(math.Pow(10, sineDBFS(0.5)/10)+math.Pow(10, sineDBFS(0.05)/10))
	if got := RMSDBFS(x); math.Abs(got-want) > 0.01 {
		t.Errorf("RMSDBFS = %.3f dBFS, want %.3f", got, want)
	}
}

func TestSNRDB(t *testing.T) {
	t.Run("quantisation-limited full-scale tone", func(t *testing.T) {
		// An ideal 16-bit quantiser gives 6.02·16 + 1.76 ≈ 98.1 dB.
		x := tone(16000, 1234.5, 1, 16000)
		if got := SNRDB(x, 16000, 1234.5); got < 97 || got > 99.5 {
			t.Errorf("SNRDB = %.2f dB, want ≈ 98", got)
		}
	})
	t.Run("tone in known noise", func(t *testing.T) {
		const rate = 8000
		x := tone(rate, 697, 0.25, rate)
		rng := rand.New(rand.NewPCG(1, 2))
		var noise, sig float64
		for i := range x {
			v := float64(x[i])
			sig += v * v
			n := int16(rng.IntN(2001) - 1000)
			noise += float64(n) * float64(n)
			x[i] += n
		}
		want := 10 * math.Log10(sig/noise)
		if got := SNRDB(x, rate, 697); math.Abs(got-want) > 0.1 {
			t.Errorf("SNRDB = %.3f dB, want %.3f", got, want)
		}
	})
	t.Run("tone absent", func(t *testing.T) {
		x := tone(8000, 1000, 0.5, 8000)
		if got := SNRDB(x, 8000, 2500); got > -60 {
			t.Errorf("SNRDB at 2500 Hz of a 1 kHz tone = %.1f dB, want < -60", got)
		}
	})
	t.Run("silence", func(t *testing.T) {
		if got := SNRDB(make([]int16, 100), 8000, 1000); !math.IsNaN(got) {
			t.Errorf("SNRDB(silence) = %v, want NaN", got)
		}
	})
}

func TestWAVRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tone.wav")
	x := tone(16000, 440, 0.5, 1234)
	x[0], x[1] = math.MinInt16, math.MaxInt16
	if err := WriteWAV(path, 16000, x); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 44+2*len(x) || string(b[0:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " ||
		string(b[36:40]) != "data" || binary.LittleEndian.Uint32(b[24:28]) != 16000 {
		t.Errorf("unexpected canonical header % x", b[:44])
	}
	rate, got, err := ReadWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	if rate != 16000 || !slices.Equal(got, x) {
		t.Errorf("ReadWAV = rate %d, %d samples; want 16000 and the written samples", rate, len(got))
	}
}

func TestReadWAVErrors(t *testing.T) {
	valid := func() []byte {
		path := filepath.Join(t.TempDir(), "v.wav")
		if err := WriteWAV(path, 8000, []int16{1, -2, 3}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	patch := func(off int, v uint16) []byte {
		b := valid()
		binary.LittleEndian.PutUint16(b[off:], v)
		return b
	}
	withList := func() []byte {
		b := valid()
		list := append([]byte("LIST"), 3, 0, 0, 0, 'a', 'b', 'c', 0) // odd size, padded
		out := slices.Concat(b[:36], list, b[36:])
		binary.LittleEndian.PutUint32(out[4:], uint32(len(out)-8))
		return out
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr error
		want    []int16
	}{
		{"valid", valid(), nil, []int16{1, -2, 3}},
		{"extra LIST chunk is skipped", withList(), nil, []int16{1, -2, 3}},
		{"not RIFF", []byte("hello, this is not a wave file"), ErrNotWAV, nil},
		{"empty", nil, ErrNotWAV, nil},
		{"stereo", patch(22, 2), ErrUnsupportedFormat, nil},
		{"8-bit", patch(34, 8), ErrUnsupportedFormat, nil},
		{"IEEE float", patch(20, 3), ErrUnsupportedFormat, nil},
		{"truncated data", valid()[:48], ErrMalformed, nil},
		{"no data chunk", valid()[:36], ErrMalformed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.wav")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, got, err := ReadWAV(path)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadWAV error = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ReadWAV samples = %v, want %v", got, tt.want)
			}
		})
	}
	if _, _, err := ReadWAV(filepath.Join(t.TempDir(), "missing.wav")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: error = %v, want os.ErrNotExist", err)
	}
}

// TestPaceKeepsRealTimeAfterAStall: on a clock the test moves, a sender that
// stalls for five frames sends the frames that fell due at once when the stall
// ends, and the frames after them on time.
func TestPaceKeepsRealTimeAfterAStall(t *testing.T) {
	const every = 20 * time.Millisecond
	var clock time.Duration // since start
	now := func() time.Time { return time.Unix(0, 0).Add(clock) }
	var at []time.Duration
	pace(12, every, now, func(d time.Duration) { clock += d }, func(i int) {
		at = append(at, clock)
		if i == 2 {
			clock += 5*every + every/2 // the stall
		}
	})
	want := []time.Duration{0, 20, 40, 150, 150, 150, 150, 150, 160, 180, 200, 220}
	if len(at) != len(want) {
		t.Fatalf("%d frames, want %d", len(at), len(want))
	}
	for i := range want {
		if at[i] != want[i]*time.Millisecond {
			t.Errorf("frame %d sent at %v, want %v", i, at[i], want[i]*time.Millisecond)
		}
	}
}
