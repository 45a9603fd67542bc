package audiotest

import (
	"math"
	"math/cmplx"
	"sync"
)

// Score compares what the far end heard with what was sent: one utterance.
type Score struct {
	// SegSNR is the segmental SNR in dB: over the 20 ms segments of the sent
	// audio that hold speech (within 40 dB of its loudest segment), the mean
	// of each segment's SNR against the time-aligned received segment, each
	// clamped to [-10, 35] dB as is usual (a perfect segment counts 35, one
	// replaced by something unrelated about 0, by silence 0, by its negative -6).
	SegSNR float64
	// LSD is the log-spectral distance in dB over the same segments: the root
	// mean square, over the 100-3800 Hz band, of the difference of the sent
	// and received power spectra in dB, averaged over two 32 ms Hann windows
	// per segment, 10 ms apart (so that a step at a segment's edge counts),
	// and over segments. 0 is identical.
	LSD float64
	// FwSegSNR is the frequency-weighted segmental SNR in dB (Hu and Loizou,
	// "Evaluation of objective quality measures for speech enhancement", 2008):
	// per window as for LSD, the SNR of the received magnitude in each critical
	// band of 100-3700 Hz against the sent, clamped to [-10, 35] dB, weighted
	// by the sent band magnitude to the power 0.2, averaged over bands and then
	// over windows. It compares magnitudes, not waveforms: a concealment with
	// the right spectrum scores well even when its phase is off, which SegSNR
	// punishes more than silence. Of the three it follows listeners' quality
	// ratings best (in that study).
	FwSegSNR float64
	// Delay is where the sent audio starts in the received, in samples (the
	// utterance's alignment); Shifts counts the segments where the alignment
	// moved by whole segments within it (a jitter buffer that grew or shrank).
	Delay, Shifts int
	// Segments is how many segments were scored.
	Segments int
	// Worst is the number of scored segments with an SNR under 10 dB.
	Worst int
}

// Score bounds.
const (
	segSNRMin, segSNRMax = -10.0, 35.0
	activeRange          = 40.0 // dB below the loudest segment that still counts as speech
	maxShift             = 8    // segments the alignment may move within an utterance (160 ms)
	shiftCost            = 12.0 // dB of summed segment SNR a move must gain
)

// Compare scores deg, the audio received, against ref, one utterance as sent,
// both at rate. deg must contain the utterance (with anything around it): its
// position is found by cross-correlation, and then each 20 ms segment is
// aligned by a Viterbi search over whole-segment shifts of up to 160 ms from
// it, each move costing 12 dB of segment SNR (segments that fall outside deg
// score as lost). A gateway's media path moves
// audio by whole 20 ms frames (a jitter buffer growing by inserting a frame,
// shrinking by skipping one), and keeps a lost frame's place with its
// concealment, which the cost stops the alignment from jumping over.
func Compare(ref, deg []int16, rate int) Score {
	s, _ := CompareSegments(ref, deg, rate, nil)
	return s
}

// CompareSegments is Compare, and also the same scores over only the listed
// 20 ms segments of ref that hold speech (those a network lost, say: what
// concealment filled in), with the alignment of the whole.
func CompareSegments(ref, deg []int16, rate int, only []int) (all, listed Score) {
	n := rate / 50
	segs := len(ref) / n
	if segs == 0 || len(deg) == 0 {
		return Score{}, Score{}
	}
	d0 := xcorrPeak(ref, deg)

	// Which segments hold speech.
	energy := make([]float64, segs)
	loudest := 0.0
	for s := range segs {
		for _, v := range ref[s*n : (s+1)*n] {
			energy[s] += float64(v) * float64(v)
		}
		loudest = max(loudest, energy[s])
	}
	active := make([]bool, segs)
	for s, e := range energy {
		active[s] = e > 0 && 10*math.Log10(loudest/e) < activeRange
	}

	// Viterbi over shifts j in [-maxShift, maxShift] segments from d0.
	const states = 2*maxShift + 1
	snr := func(s, j int) float64 {
		d := d0 + (j-maxShift)*n
		lo := s*n + d
		if lo < 0 || lo+n > len(deg) {
			return segSNRMin
		}
		return segmentSNR(ref[s*n:(s+1)*n], deg[lo:lo+n])
	}
	score := make([][states]float64, segs)
	from := make([][states]int8, segs)
	for j := range states {
		score[0][j] = -math.Abs(float64(j-maxShift)) * shiftCost
		if active[0] {
			score[0][j] += snr(0, j)
		}
	}
	for s := 1; s < segs; s++ {
		for j := range states {
			best, arg := math.Inf(-1), 0
			for i := range states {
				v := score[s-1][i] - math.Abs(float64(j-i))*shiftCost
				if v > best {
					best, arg = v, i
				}
			}
			score[s][j] = best
			from[s][j] = int8(arg)
			if active[s] {
				score[s][j] += snr(s, j)
			}
		}
	}
	path := make([]int, segs)
	for j := range states {
		if score[segs-1][j] > score[segs-1][path[segs-1]] {
			path[segs-1] = j
		}
	}
	for s := segs - 1; s > 0; s-- {
		path[s-1] = int(from[s][path[s]])
	}

	want := make([]bool, segs)
	for _, s := range only {
		if s >= 0 && s < segs {
			want[s] = true
		}
	}
	var acc [2]struct{ snr, lsd, fw float64 }
	outs := [2]*Score{&all, &listed}
	all.Delay = d0 + (path[0]-maxShift)*n
	listed.Delay = all.Delay
	for s := range segs {
		if s > 0 && path[s] != path[s-1] {
			all.Shifts++
		}
		if !active[s] {
			continue
		}
		v := snr(s, path[s])
		d := d0 + (path[s]-maxShift)*n
		var l, fw float64
		for _, at := range [2]int{n / 4, 3 * n / 4} {
			a, b := spectralScores(ref, deg, s*n+at, s*n+d+at, rate)
			l += a / 2
			fw += b / 2
		}
		for k, out := range outs {
			if k == 1 && !want[s] {
				continue
			}
			acc[k].snr += v
			acc[k].lsd += l
			acc[k].fw += fw
			if v < 10 {
				out.Worst++
			}
			out.Segments++
		}
	}
	listed.Shifts = all.Shifts
	for k, out := range outs {
		if out.Segments > 0 {
			out.SegSNR = acc[k].snr / float64(out.Segments)
			out.LSD = acc[k].lsd / float64(out.Segments)
			out.FwSegSNR = acc[k].fw / float64(out.Segments)
		}
	}
	return all, listed
}

// segmentSNR is 10·log10(Σref² / Σ(ref-deg)²), clamped.
func segmentSNR(ref, deg []int16) float64 {
	var sig, noise float64
	for i, v := range ref {
		r := float64(v)
		e := r - float64(deg[i])
		sig += r * r
		noise += e * e
	}
	if noise == 0 {
		return segSNRMax
	}
	if sig == 0 {
		return segSNRMin
	}
	return min(max(10*math.Log10(sig/noise), segSNRMin), segSNRMax)
}

// xcorrPeak returns the lag d in [-len(ref)/2, len(deg)-len(ref)/2] (at least
// half of ref overlaps deg) that maximises Σ ref[i]·deg[i+d], deg taken as zero
// outside it: directly for a few lags, else by FFT.
func xcorrPeak(ref, deg []int16) int {
	lo, hi := -len(ref)/2, len(deg)-len(ref)/2
	if hi-lo < 64 {
		best, arg := math.Inf(-1), 0
		for d := lo; d <= hi; d++ {
			var v float64
			for i, r := range ref {
				if j := i + d; j >= 0 && j < len(deg) {
					v += float64(r) * float64(deg[j])
				}
			}
			if v > best {
				best, arg = v, d
			}
		}
		return arg
	}
	size := 1
	for size < len(deg)+len(ref) {
		size <<= 1
	}
	a := make([]complex128, size)
	b := make([]complex128, size)
	for i, v := range deg {
		a[i] = complex(float64(v), 0)
	}
	for i, v := range ref {
		b[i] = complex(float64(v), 0)
	}
	fft(a)
	fft(b)
	for i := range a {
		a[i] *= cmplx.Conj(b[i])
	}
	// The inverse transform through the forward one: conj(FFT(conj(X)))/size.
	for i := range a {
		a[i] = cmplx.Conj(a[i])
	}
	fft(a)
	best, arg := math.Inf(-1), 0
	for d := lo; d <= hi; d++ {
		if v := real(a[(d+size)%size]); v > best { // negative lags wrap to the end
			best, arg = v, d
		}
	}
	return arg
}

// Critical bands of the telephone band, edges in Hz (after Zwicker's table).
var bandEdges = [...]float64{100, 200, 300, 400, 510, 630, 770, 920, 1080, 1270, 1480, 1720, 2000, 2320, 2700, 3150, 3700}

// spectralScores returns the log-spectral distance and the frequency-weighted
// SNR of the 32 ms windows of deg centred on d against ref centred on r.
func spectralScores(ref, deg []int16, r, d, rate int) (lsd, fw float64) {
	w := 256 * rate / 8000 // 32 ms
	pr := spectrum(ref, r-w/2, w)
	pd := spectrum(deg, d-w/2, w)
	bin := func(hz float64) int { return int(math.Round(hz * float64(w) / float64(rate))) }
	const floor = 1e-6 // -60 dB below a full-scale sine's peak bin
	lo, hi := bin(100), bin(3800)
	var sum float64
	for k := lo; k <= hi; k++ {
		a := 10 * math.Log10(pr[k]+floor)
		b := 10 * math.Log10(pd[k]+floor)
		sum += (a - b) * (a - b)
	}
	lsd = math.Sqrt(sum / float64(hi-lo+1))

	var num, den float64
	for j := 0; j+1 < len(bandEdges); j++ {
		var er, ed float64
		for k := bin(bandEdges[j]); k < bin(bandEdges[j+1]); k++ {
			er += pr[k]
			ed += pd[k]
		}
		xr, xd := math.Sqrt(er), math.Sqrt(ed)
		if xr == 0 {
			continue
		}
		snr := segSNRMax
		if e := xr - xd; e != 0 {
			snr = min(max(10*math.Log10(xr*xr/(e*e)), segSNRMin), segSNRMax)
		}
		wt := math.Pow(xr, 0.2)
		num += wt * snr
		den += wt
	}
	if den == 0 {
		return lsd, segSNRMax
	}
	return lsd, num / den
}

var hannCache sync.Map // window length -> []float64

// hannScaled is the periodic Hann window of w points, scaled by 4/(w·32768)
// so that a full-scale sine's peak bin has magnitude about 1.
func hannScaled(w int) []float64 {
	if v, ok := hannCache.Load(w); ok {
		return v.([]float64)
	}
	win := make([]float64, w)
	for i := range win {
		win[i] = (0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(w))) * 4 / float64(w) / ref
	}
	hannCache.Store(w, win)
	return win
}

// spectrum is the power spectrum (bins 0..w/2) of x[at:at+w], Hann windowed,
// zeros outside x, normalised so that a full-scale sine's peak bin is about 1.
func spectrum(x []int16, at, w int) []float64 {
	win := hannScaled(w)
	buf := make([]complex128, w)
	for i := range w {
		j := at + i
		if j < 0 || j >= len(x) {
			continue
		}
		buf[i] = complex(float64(x[j])*win[i], 0)
	}
	fft(buf)
	p := make([]float64, w/2+1)
	for k := range p {
		a := cmplx.Abs(buf[k])
		p[k] = a * a
	}
	return p
}
