package resample

import (
	"fmt"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cxco/gateway/media/audiotest"
)

// Requirements from the gateway's audio budget.
const (
	passLo, passHi = 300.0, 3400.0 // telephone band, Hz
	maxRippleDB    = 0.5           // passband gain error, both directions
	minRejectDB    = 60.0          // Up2 images and Down2 aliases
	stopLo         = 4600.0        // first frequency whose image/alias must be rejected
)

// fullFilter returns the 2M+1 taps of the half-band filter as the production
// code uses them, scaled by 2 in Q30 (equivalently h in Q31): the odd phase
// from coef, zeros, and the centre tap 1<<30.
func fullFilter() []int64 {
	h := make([]int64, 2*halfLen+1)
	for j := range phaseLen {
		c := coef[min(j, halfLen-j)]
		h[2*j] = c // tap n = 2j-M, odd
	}
	h[halfLen] = 1 << coefShift
	return h
}

// response returns the filter's gain at f (Hz, 16 kHz rate), 1 at DC.
func response(h []int64, f float64) float64 {
	var sum complex128
	for k, c := range h {
		sum += complex(float64(c), 0) * cmplx.Rect(1, -2*math.Pi*f/16000*float64(k))
	}
	return cmplx.Abs(sum) / (1 << (coefShift + 1))
}

func db(x float64) float64 { return 20 * math.Log10(x) }

// TestFilterDesign checks the quantised coefficients analytically on a 1 Hz
// grid, independent of any signal measurement.
func TestFilterDesign(t *testing.T) {
	h := fullFilter()
	var sum int64
	for k := range h {
		sum += h[k]
		if h[k] != h[len(h)-1-k] {
			t.Fatalf("not symmetric at tap %d", k)
		}
	}
	if sum != 1<<(coefShift+1) {
		t.Errorf("DC gain %d/2^31, want exactly 1", sum)
	}
	ripple := 0.0
	for f := 0.0; f <= passHi; f++ {
		ripple = max(ripple, math.Abs(db(response(h, f))))
	}
	stop := math.Inf(1)
	for f := stopLo; f <= 8000; f++ {
		stop = min(stop, -db(response(h, f)))
	}
	half := db(response(h, 4000))
	t.Logf("passband 0–3400 Hz ripple ±%.5f dB; stop band 4600–8000 Hz ≥ %.1f dB; %.2f dB at 4 kHz", ripple, stop, half)
	if ripple > 0.01 {
		t.Errorf("passband ripple %.4f dB, designed for < 0.01", ripple)
	}
	if stop < 80 {
		t.Errorf("stop-band attenuation %.1f dB, designed for > 80", stop)
	}
	if math.Abs(half+6.02) > 0.1 {
		t.Errorf("gain at 4 kHz %.2f dB, want -6.02 (half-band)", half)
	}
}

// directUp2 is a plain (non-polyphase, non-streaming) reference: zero-stuff,
// convolve with the full filter, delay one more sample, round and saturate.
func directUp2(x []int16) []int16 {
	h := fullFilter()
	z := make([]int64, 2*len(x))
	for i, v := range x {
		z[2*i] = int64(v)
	}
	y := make([]int16, len(z))
	for n := range y {
		var acc int64
		for k, c := range h {
			if i := n - 1 - k; i >= 0 {
				acc += c * z[i]
			}
		}
		y[n] = saturate(acc, coefShift)
	}
	return y
}

// directDown2 filters x at 16 kHz and keeps every odd-indexed output.
func directDown2(x []int16) []int16 {
	h := fullFilter()
	y := make([]int16, len(x)/2)
	for m := range y {
		var acc int64
		for k, c := range h {
			if i := 2*m - 1 - k; i >= 0 {
				acc += c * int64(x[i])
			}
		}
		y[m] = saturate(acc, coefShift+1)
	}
	return y
}

// testSignal returns n samples exercising the whole range: noise, a tone, a
// full-scale square wave (whose Gibbs overshoot must saturate, not wrap) and
// silence.
func testSignal(n int, seed uint64) []int16 {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := make([]int16, n)
	for i := range x {
		switch q := i * 4 / n; q {
		case 0:
			x[i] = int16(rng.Uint32())
		case 1:
			x[i] = int16(20000 * math.Sin(float64(i)*0.3))
		case 2:
			x[i] = math.MaxInt16
			if i/5%2 == 0 {
				x[i] = math.MinInt16
			}
		}
	}
	return x
}

func TestMatchesDirectConvolution(t *testing.T) {
	x := testSignal(3000, 1) // > block, so several passes
	t.Run("Up2", func(t *testing.T) {
		got := make([]int16, 2*len(x))
		if n := NewUp2().Process(got, x); n != len(got) {
			t.Fatalf("Process returned %d, want %d", n, len(got))
		}
		if i := firstDiff(got, directUp2(x)); i >= 0 {
			t.Errorf("output differs from direct convolution at sample %d", i)
		}
	})
	t.Run("Down2", func(t *testing.T) {
		got := make([]int16, len(x)/2)
		if n := NewDown2().Process(got, x); n != len(got) {
			t.Fatalf("Process returned %d, want %d", n, len(got))
		}
		if i := firstDiff(got, directDown2(x)); i >= 0 {
			t.Errorf("output differs from direct convolution at sample %d", i)
		}
	})
}

func firstDiff(a, b []int16) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// chunked feeds x to process in chunks of the given sizes, cycling through
// them, and returns the concatenated output.
func chunked(process func(dst, src []int16) int, x []int16, sizes []int, ratioNum, ratioDen int) []int16 {
	out := make([]int16, len(x)*ratioNum/ratioDen)
	in, o := 0, 0
	for k := 0; in < len(x); k++ {
		c := min(sizes[k%len(sizes)], len(x)-in)
		o += process(out[o:], x[in:in+c])
		in += c
	}
	return out[:o]
}

func TestStreamingMatchesOneCall(t *testing.T) {
	x := testSignal(4800, 2)
	tests := []struct {
		name string
		up   []int // Up2 chunk sizes (8 kHz samples)
		down []int // Down2 chunk sizes (16 kHz samples, even)
	}{
		{name: "20 ms frames", up: []int{160}, down: []int{320}},
		{name: "single samples", up: []int{1}, down: []int{2}},
		{name: "odd sizes", up: []int{7, 13, 161, 1, 33}, down: []int{6, 38, 322, 2, 66}},
		{name: "around the block size", up: []int{block - 1, block, block + 1, 1000}, down: []int{2*block - 2, 2 * block, 2*block + 2, 2000}},
		{name: "with empty calls", up: []int{0, 80, 0, 240}, down: []int{0, 160, 0, 480}},
	}
	wantUp := make([]int16, 2*len(x))
	NewUp2().Process(wantUp, x)
	wantDown := make([]int16, len(x)/2)
	NewDown2().Process(wantDown, x)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := chunked(NewUp2().Process, x, tt.up, 2, 1); !slices.Equal(got, wantUp) {
				t.Errorf("Up2: chunked output differs at %d", firstDiff(got, wantUp))
			}
			if got := chunked(NewDown2().Process, x, tt.down, 1, 2); !slices.Equal(got, wantDown) {
				t.Errorf("Down2: chunked output differs at %d", firstDiff(got, wantDown))
			}
		})
	}
}

func TestReset(t *testing.T) {
	noise := testSignal(1000, 3)
	x := testSignal(640, 4)
	u, d := NewUp2(), NewDown2()
	u.Process(make([]int16, 2*len(noise)), noise)
	d.Process(make([]int16, len(noise)/2), noise)
	u.Reset()
	d.Reset()
	gotUp, wantUp := make([]int16, 2*len(x)), make([]int16, 2*len(x))
	u.Process(gotUp, x)
	NewUp2().Process(wantUp, x)
	if !slices.Equal(gotUp, wantUp) {
		t.Errorf("Up2 after Reset differs from a new converter")
	}
	gotDown, wantDown := make([]int16, len(x)/2), make([]int16, len(x)/2)
	d.Process(gotDown, x)
	NewDown2().Process(wantDown, x)
	if !slices.Equal(gotDown, wantDown) {
		t.Errorf("Down2 after Reset differs from a new converter")
	}
}

func TestPanicsOnBadLengths(t *testing.T) {
	tests := []struct {
		name string
		call func()
	}{
		{"Up2 dst too short", func() { NewUp2().Process(make([]int16, 319), make([]int16, 160)) }},
		{"Down2 odd src", func() { NewDown2().Process(make([]int16, 200), make([]int16, 321)) }},
		{"Down2 dst too short", func() { NewDown2().Process(make([]int16, 159), make([]int16, 320)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			tt.call()
		})
	}
}

func TestStringAndDelay(t *testing.T) {
	if got := NewUp2().String(); got != "Resample(8000->16000)" {
		t.Errorf("Up2.String() = %q", got)
	}
	if got := NewDown2().String(); got != "Resample(16000->8000)" {
		t.Errorf("Down2.String() = %q", got)
	}
	if Delay() != 36 || NewUp2().Delay() != Delay() || NewDown2().Delay() != Delay()/2 {
		t.Errorf("Delay() = %d, Up2 %d, Down2 %d; want 36, 36, 18", Delay(), NewUp2().Delay(), NewDown2().Delay())
	}
}

// TestDelayAligns checks the documented delays on real signals: Up2's even
// outputs are its input exactly, Delay() samples later; Down2's output matches
// the 16 kHz input Delay() samples (16 kHz) earlier; and Up2 then Down2
// reproduces 8 kHz audio Delay() samples later.
func TestDelayAligns(t *testing.T) {
	const n = 8000
	in8 := make([]int16, n)
	(&audiotest.Tone{Rate: 8000, Freq: 1234, Amplitude: 0.5}).Fill(in8)
	up := NewUp2()
	out16 := make([]int16, 2*n)
	up.Process(out16, in8)
	for m := range n - Delay() {
		if out16[2*m+up.Delay()] != in8[m] {
			t.Fatalf("Up2: out[%d] = %d, want in[%d] = %d", 2*m+up.Delay(), out16[2*m+up.Delay()], m, in8[m])
		}
	}

	in16 := make([]int16, 2*n)
	(&audiotest.Tone{Rate: 16000, Freq: 2345, Amplitude: 0.5}).Fill(in16)
	dn := NewDown2()
	out8 := make([]int16, n)
	dn.Process(out8, in16)
	// Skip the start-up transient: the first outputs see the silent history.
	settle := 2 * Delay()
	var ref []int16
	for m := settle; m < n; m++ {
		ref = append(ref, in16[2*(m-dn.Delay())])
	}
	if snr := errorSNR(ref, out8[settle:]); snr < 60 {
		t.Errorf("Down2 output vs delayed input: %.1f dB, want >= 60", snr)
	}

	back := make([]int16, n)
	NewDown2().Process(back, out16)
	snr := errorSNR(in8[settle-Delay():n-Delay()], back[settle:])
	if snr < 60 {
		t.Errorf("Up2→Down2 vs input delayed by %d: %.1f dB, want >= 60", Delay(), snr)
	}
	if math.IsInf(snr, 1) {
		t.Logf("Up2→Down2 round trip of a -9 dBFS 1234 Hz tone: bit-exact after the delay")
	} else {
		t.Logf("Up2→Down2 round trip of a -9 dBFS 1234 Hz tone: error %.1f dB below the signal", snr)
	}
}

// errorSNR returns the power of want over the power of got-want, in dB.
func errorSNR(want, got []int16) float64 {
	var sig, noise float64
	for i := range want {
		w, e := float64(want[i]), float64(got[i])-float64(want[i])
		sig += w * w
		noise += e * e
	}
	return 10 * math.Log10(sig/noise)
}

// toneThrough generates one second (plus settling time) of a tone at inRate,
// runs it through process and returns the input and output windows that
// correspond in time, both one second long.
func toneThrough(process func(dst, src []int16) int, inRate, outRate, freq float64) (in, out []int16) {
	settleIn := int(inRate) / 100 // 10 ms, more than the filter's 2.25 ms delay
	nIn := int(inRate) + settleIn
	x := make([]int16, nIn)
	if freq == inRate/2 {
		// At Nyquist a sine is all zeros; use the cosine ±A instead.
		for i := range x {
			x[i] = 16384
			if i%2 == 1 {
				x[i] = -16384
			}
		}
	} else {
		(&audiotest.Tone{Rate: inRate, Freq: freq, Amplitude: 0.5}).Fill(x)
	}
	y := make([]int16, nIn*int(outRate)/int(inRate))
	process(y, x)
	settleOut := settleIn * int(outRate) / int(inRate)
	return x[settleIn:], y[settleOut:]
}

func passbandFreqs() []float64 {
	var f []float64
	for v := passLo; v < passHi; v += 100 {
		f = append(f, v)
	}
	return append(f, 1004, 1020, 2999, passHi)
}

func TestUp2Tones(t *testing.T) {
	worstGain, worstImage := 0.0, math.Inf(1)
	for _, f := range passbandFreqs() {
		t.Run(fmt.Sprintf("%.0fHz", f), func(t *testing.T) {
			in, out := toneThrough(NewUp2().Process, 8000, 16000, f)
			inLevel := audiotest.ToneLevelDBFS(in, 8000, f)
			outLevel := audiotest.ToneLevelDBFS(out, 16000, f)
			image := audiotest.ToneLevelDBFS(out, 16000, 8000-f)
			gain, reject := outLevel-inLevel, outLevel-image
			worstGain, worstImage = max(worstGain, math.Abs(gain)), min(worstImage, reject)
			if math.Abs(gain) > maxRippleDB {
				t.Errorf("gain %+.3f dB, want within ±%v", gain, maxRippleDB)
			}
			if reject < minRejectDB {
				t.Errorf("image at %.0f Hz only %.1f dB down, want >= %v", 8000-f, reject, minRejectDB)
			}
			if got := audiotest.DominantFrequency(out, 16000); math.Abs(got-f) > 1 {
				t.Errorf("dominant frequency %.2f Hz, want %v", got, f)
			}
		})
	}
	t.Logf("Up2, 300–3400 Hz tones at -9 dBFS: gain within ±%.4f dB; images ≥ %.1f dB down", worstGain, worstImage)
}

func TestDown2Passband(t *testing.T) {
	worst := 0.0
	for _, f := range passbandFreqs() {
		t.Run(fmt.Sprintf("%.0fHz", f), func(t *testing.T) {
			in, out := toneThrough(NewDown2().Process, 16000, 8000, f)
			gain := audiotest.ToneLevelDBFS(out, 8000, f) - audiotest.ToneLevelDBFS(in, 16000, f)
			worst = max(worst, math.Abs(gain))
			if math.Abs(gain) > maxRippleDB {
				t.Errorf("gain %+.3f dB, want within ±%v", gain, maxRippleDB)
			}
			if snr := audiotest.SNRDB(out, 8000, f); snr < 80 {
				t.Errorf("SNR %.1f dB, want >= 80", snr)
			}
		})
	}
	t.Logf("Down2, 300–3400 Hz tones at -9 dBFS: gain within ±%.4f dB", worst)
}

func TestDown2AliasRejection(t *testing.T) {
	var freqs []float64
	for f := stopLo; f < 8000; f += 100 {
		freqs = append(freqs, f)
	}
	freqs = append(freqs, 4650, 7999, 8000)
	worstTotal, worstAlias := math.Inf(1), math.Inf(1)
	for _, f := range freqs {
		t.Run(fmt.Sprintf("%.0fHz", f), func(t *testing.T) {
			in, out := toneThrough(NewDown2().Process, 16000, 8000, f)
			inLevel := audiotest.RMSDBFS(in)
			// Everything left in the output counts, not just the alias bin.
			total := inLevel - audiotest.RMSDBFS(out)
			worstTotal = min(worstTotal, total)
			if total < minRejectDB {
				t.Errorf("output only %.1f dB below the input, want >= %v", total, minRejectDB)
			}
			if alias := 8000 - f; alias > 0 {
				worstAlias = min(worstAlias, inLevel-audiotest.ToneLevelDBFS(out, 8000, alias))
			}
		})
	}
	t.Logf("Down2, 4600–8000 Hz tones at -9 dBFS: output RMS ≥ %.1f dB down; alias tone ≥ %.1f dB down", worstTotal, worstAlias)
}

func TestProcessDoesNotAllocate(t *testing.T) {
	u, d := NewUp2(), NewDown2()
	in8, out16 := make([]int16, 160), make([]int16, 320)
	out8 := make([]int16, 160)
	if a := testing.AllocsPerRun(100, func() {
		u.Process(out16, in8)
		d.Process(out8, out16)
	}); a != 0 {
		t.Errorf("%v allocations per frame, want 0", a)
	}
}

// TestOddPhaseUnrolled checks the unrolled odd-phase sum against a loop.
func TestOddPhaseUnrolled(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]int32, 1000+halfLen)
	for k := range x {
		x[k] = int32(int16(rng.Uint32()))
	}
	acc := make([]int64, 1000)
	oddPhase(acc, x)
	for i, got := range acc {
		var want int64
		for j := range phaseLen {
			want += coef[min(j, halfLen-j)] * int64(x[i+halfLen-j])
		}
		if got != want {
			t.Fatalf("oddPhase at %d = %d, want %d", i, got, want)
		}
	}
}
