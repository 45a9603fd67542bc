// Package resample converts telephone audio between 8 kHz and 16 kHz with a
// linear-phase windowed-sinc half-band filter.
//
// Up2 interpolates 8 kHz to 16 kHz and Down2 decimates 16 kHz to 8 kHz. Both
// are streaming: they keep the filter history between calls, so feeding a
// signal in chunks of any size gives exactly the same output as one call. They
// neither allocate nor start goroutines; one converter serves one stream and
// is not safe for concurrent use.
//
// # Filter
//
// One 71-tap half-band low-pass filter at 16 kHz (cut-off 4 kHz), a sinc
// shaped by a Kaiser window (β = 8.3), computed once in float64 at package
// initialisation and quantised to Q30 fixed point. Half of its taps are zero
// and the centre tap is ½, so in polyphase form each converter only runs the
// 36-tap odd phase (18 multiplies, by symmetry) per 8 kHz sample; the even
// phase is a pure delay. The per-sample arithmetic is integer: int64
// accumulation, rounding, and saturation to int16.
//
// Response of the quantised filter (TestFilterDesign computes it on a 1 Hz
// grid; the tone tests measure it through the converters): passband
// 0–3400 Hz flat within ±0.001 dB; at least 82 dB attenuation from 4600 Hz
// to 8 kHz, so Up2 images and Down2 aliases of telephone-band signals sit
// near the 16-bit noise floor; -6 dB at 4 kHz.
package resample

import "math"

const (
	// halfLen is M: the filter has 2M+1 taps h[-M..M], and M is odd so the
	// outermost taps are non-zero.
	halfLen = 35
	// phaseLen is the length of the odd (sinc) phase: the taps h[n] for odd n.
	phaseLen = halfLen + 1
	// nPairs is the number of distinct coefficients of the symmetric phase.
	nPairs = phaseLen / 2
	// kaiserBeta trades transition width for stop-band attenuation; 8.3 puts
	// the stop-band edge just below 4600 Hz with 82 dB attenuation.
	kaiserBeta = 8.3
	// coefShift is the fixed-point scale of coef: Q30.
	coefShift = 30
	// block is how many 8 kHz samples a converter processes per inner pass;
	// longer inputs are processed in several passes (a 20 ms frame in five).
	// It sizes each converter's buffers: a call that converts both ways keeps
	// one of each, 1.3 KiB at 32 (8.1 KiB at 256, with no speed to show for
	// it: BenchmarkUp2, BenchmarkDown2 within noise of each other).
	block = 32
	// delay16k is the group delay of each converter in 16 kHz samples. The
	// filter alone delays by halfLen; one more sample keeps both converters
	// aligned on the 8 kHz grid and gives them the same delay in time.
	delay16k = halfLen + 1
)

// coef holds the odd phase of the filter, scaled by 2 (the interpolation
// gain) in Q30: coef[j] = 2·h[2j-M] for j < nPairs. The phase is symmetric,
// coef[j] = coef[M-j], and its taps sum to exactly 1<<coefShift so DC passes
// unchanged.
var coef = designPhase()

// Delay returns the group delay of each converter, in samples at 16 kHz.
//
// Both converters delay the signal by the same time, Delay()/16000 s
// (2.25 ms): Up2's output lags by Delay() of its 16 kHz output samples and
// Down2's output by Delay()/2 of its 8 kHz output samples (the methods
// Up2.Delay and Down2.Delay return these). Up2 followed by Down2 therefore
// delays 8 kHz audio by exactly Delay() samples.
func Delay() int { return delay16k }

// designPhase computes the windowed-sinc half-band filter and returns its odd
// phase in fixed point.
func designPhase() [nPairs]int64 {
	var g [phaseLen]float64
	sum := 0.0
	for j := range g {
		n := float64(2*j - halfLen) // odd tap index relative to the centre
		sinc := math.Sin(math.Pi*n/2) / (math.Pi * n / 2)
		r := n / (halfLen + 1)
		win := besselI0(kaiserBeta*math.Sqrt(1-r*r)) / besselI0(kaiserBeta)
		g[j] = sinc * win
		sum += g[j]
	}
	var c [nPairs]int64
	total := int64(0)
	for j := range c {
		c[j] = int64(math.Round(g[j] / sum * (1 << coefShift)))
		total += 2 * c[j]
	}
	// Put the rounding residue on the largest (central) coefficient so the
	// phase sums to exactly one. total is even, as is the target, so the
	// residue splits evenly over the pair.
	c[nPairs-1] += ((1 << coefShift) - total) / 2
	return c
}

// besselI0 is the zeroth-order modified Bessel function of the first kind,
// by its power series (converges quickly for the arguments used here).
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 100; k++ {
		term *= x / 2 / float64(k)
		t2 := term * term
		sum += t2
		if t2 < sum*1e-17 {
			break
		}
	}
	return sum
}

// oddPhase sets acc[i] to the odd-phase filter output in Q30 for the window
// x[i : i+phaseLen] (oldest sample first): Σ coef[j]·(w[j]+w[M-j]).
// len(x) must be at least len(acc)+halfLen.
//
// The sum is written out for halfLen = 35, and the loop is kept in a function
// of its own with few live values: as a nested loop, or as a call per sample,
// the compiler spills registers on every tap or sample and the converters run
// two to three times slower. TestOddPhaseUnrolled checks it against the loop
// form.
func oddPhase(acc []int64, x []int32) {
	c := &coef
	x = x[:len(acc)+halfLen]
	for i := range acc {
		w := (*[phaseLen]int32)(x[i : i+phaseLen])
		acc[i] = c[0]*int64(w[0]+w[35]) +
			c[1]*int64(w[1]+w[34]) +
			c[2]*int64(w[2]+w[33]) +
			c[3]*int64(w[3]+w[32]) +
			c[4]*int64(w[4]+w[31]) +
			c[5]*int64(w[5]+w[30]) +
			c[6]*int64(w[6]+w[29]) +
			c[7]*int64(w[7]+w[28]) +
			c[8]*int64(w[8]+w[27]) +
			c[9]*int64(w[9]+w[26]) +
			c[10]*int64(w[10]+w[25]) +
			c[11]*int64(w[11]+w[24]) +
			c[12]*int64(w[12]+w[23]) +
			c[13]*int64(w[13]+w[22]) +
			c[14]*int64(w[14]+w[21]) +
			c[15]*int64(w[15]+w[20]) +
			c[16]*int64(w[16]+w[19]) +
			c[17]*int64(w[17]+w[18])
	}
}

// saturate rounds a fixed-point value with shift fractional bits and clamps
// it to the int16 range.
func saturate(acc int64, shift uint) int16 {
	v := (acc + 1<<(shift-1)) >> shift
	switch {
	case v > math.MaxInt16:
		return math.MaxInt16
	case v < math.MinInt16:
		return math.MinInt16
	default:
		return int16(v)
	}
}
