// Package plc conceals lost audio by pitch waveform repetition, in the manner
// of ITU-T G.711 Appendix I ("A high quality low-complexity algorithm for
// packet loss concealment with G.711"), for 8 kHz and 16 kHz linear PCM.
// The code is ours, written from the Appendix's description; every constant
// below is the Appendix's at 8 kHz, doubled at 16 kHz.
//
// What Appendix I does, and this package with it:
//
//   - It keeps a history of the audio played: 48.75 ms, three of the longest
//     pitch periods and a quarter.
//   - When a loss starts, it estimates the pitch period: the lag, between 5 and
//     15 ms (200 to 66 Hz), at which the normalised cross-correlation of the
//     last 20 ms of history with the history before it peaks; a coarse search
//     at every other lag and sample, then a fine one around the best.
//   - It fills the loss by repeating the last pitch period of the history. The
//     end of each repetition is overlap-added, over a quarter period, with the
//     quarter period that precedes the repeated stretch, so each repetition runs
//     into the next without a step.
//   - Repeating one period for long sounds buzzy: after 10 ms of loss the last
//     two periods are repeated, after 20 ms the last three.
//   - The first 10 ms of a loss play at full level; then the level falls by 20%
//     per 10 ms, to silence at 60 ms.
//   - The loss ends in an overlap-add of the continued repetition with the
//     received audio after it, over a quarter period plus 4 ms for each 10 ms
//     of loss after the first, at most 10 ms.
//
// Where we differ, and why (the figures are from TestBeatsRepeatAndFadeOnSpeech):
//
// A jitter buffer often holds the packet after a lost one when the lost one is
// due. Then we know the received audio the loss runs into, and the overlap
// at its end takes place inside the loss, with that audio's first period
// repeated backwards (LostBefore): the concealment joins the received audio
// without a step, and the received audio is played as it came. Without that
// lookahead (Lost), the received audio itself is overlapped as in Appendix I,
// but over a quarter period only: every measure we have (segmental SNR,
// frequency-weighted segmental SNR, log-spectral distance) rates Appendix I's
// longer overlap worse, as it replaces more received audio with concealment,
// and a quarter period is what Appendix I itself uses for its other seams.
//
// Appendix I delays all output by 3.75 ms (a quarter of the
// longest period), so that when a loss starts it can still overlap-add the
// last quarter period it received with the start of the repetition. A gateway
// whose upstream budget is "jitter-buffer depth + 2 ms" cannot pay 3.75 ms on
// every call for that, so the repetition starts right where the received
// audio ended. The seam is then as smooth as the audio is periodic at the
// estimated pitch, which is what the estimate maximises: the last period is
// the one whose continuation best matches the last 20 ms. The gain of the
// other steps over repeating the last frame and fading is measured in
// plc_test.go and, through the whole gateway on an impaired network, in
// deploy/loadtest/PERFORMANCE.md.
//
// A Concealer allocates nothing after New. It is not safe for concurrent use.
package plc

import (
	"fmt"
	"math"
)

// Constants of Appendix I at 8 kHz, in samples; scaled by Rate/8000.
const (
	pitchMin8 = 40  // shortest pitch period: 5 ms, 200 Hz
	pitchMax8 = 120 // longest: 15 ms, 66.7 Hz
	corrLen8  = 160 // 20 ms of history correlated to find the period
	unit8     = 80  // 10 ms: the loss's schedule (more periods, fading) moves in these steps
	olaStep8  = 32  // 4 ms: the overlap after a loss grows by this per further 10 ms lost
	history8  = 3*pitchMax8 + pitchMax8/4
	fadeUnits = 5 // after the first unit, the level falls to nothing over five more

	maxScale = 2 // 16 kHz
	// HistoryMax is the longest history a Concealer keeps: 48.75 ms at 16 kHz.
	HistoryMax = history8 * maxScale
)

// Concealer fills lost stretches of one audio stream.
//
// Feed it the stream in order: Good with each received stretch (it changes
// the first samples after a loss, to overlap-add them with the concealment),
// Lost with each missing one (it writes the concealment). An owner that keeps
// the played audio in another form (G.711 bytes, say) may instead give the
// history only when a loss starts: while Concealing reports false, History
// replaces it, and received audio need not pass through Good.
type Concealer struct {
	rate                          int
	pmin, pmax, corr, unit, olaIn int
	histLen                       int

	hist []int16 // the last histLen samples played, oldest first

	// the loss being concealed
	erasing   bool    // between the first Lost and the end of the overlap after it
	erased    int     // samples synthesised since the loss began
	pitch, q  int     // period and quarter period
	periods   int     // periods repeated now: 1 to 3
	idx       int     // next sample of pb to play
	pb        []int16 // histLen: the history being repeated
	olaLen    int     // overlap after the loss: length, and samples of it left
	olaLeft   int
	lastPitch int // the period of the last loss (Pitch)
}

// New returns a Concealer for rate 8000 or 16000 Hz.
func New(rate int) (*Concealer, error) {
	if rate != 8000 && rate != 16000 {
		return nil, fmt.Errorf("plc: rate %d Hz: want 8000 or 16000", rate)
	}
	k := rate / 8000
	c := &Concealer{rate: rate, pmin: pitchMin8 * k, pmax: pitchMax8 * k, corr: corrLen8 * k,
		unit: unit8 * k, olaIn: olaStep8 * k, histLen: history8 * k}
	// Sized by the rate: an 8 kHz call needs half of HistoryMax.
	buf := make([]int16, 2*c.histLen)
	c.hist, c.pb = buf[:c.histLen:c.histLen], buf[c.histLen:]
	return c, nil
}

// MustNew is New for a rate known to be valid.
func MustNew(rate int) *Concealer {
	c, err := New(rate)
	if err != nil {
		panic(err)
	}
	return c
}

// Rate returns the sample rate.
func (c *Concealer) Rate() int { return c.rate }

// HistoryLen is how many samples of history the Concealer keeps (48.75 ms).
func (c *Concealer) HistoryLen() int { return c.histLen }

// Concealing reports whether a loss is being concealed or its end overlapped:
// the next received samples must then go through Good.
func (c *Concealer) Concealing() bool { return c.erasing }

// Pitch is the period, in samples, found for the last loss; 0 before any.
func (c *Concealer) Pitch() int { return c.lastPitch }

// Reset forgets the history and any loss in progress: a new stream.
func (c *Concealer) Reset() {
	clear(c.hist)
	c.erasing = false
	c.olaLeft = 0
}

// History replaces the history with the end of pcm, the audio played most
// recently, oldest first (zeros in front if pcm is shorter than HistoryLen).
// It is ignored while Concealing.
func (c *Concealer) History(pcm []int16) {
	if c.erasing {
		return
	}
	h := c.hist[:c.histLen]
	if len(pcm) >= len(h) {
		copy(h, pcm[len(pcm)-len(h):])
		return
	}
	n := len(h) - len(pcm)
	clear(h[:n])
	copy(h[n:], pcm)
}

// HistoryBuf is the history itself, HistoryLen samples, oldest first, for an
// owner to overwrite in place (as History would copy it); nil while
// Concealing, when the history must not change.
func (c *Concealer) HistoryBuf() []int16 {
	if c.erasing {
		return nil
	}
	return c.hist
}

// push appends played samples to the history.
func (c *Concealer) push(x []int16) {
	h := c.hist[:c.histLen]
	if len(x) >= len(h) {
		copy(h, x[len(x)-len(h):])
		return
	}
	copy(h, h[len(x):])
	copy(h[len(h)-len(x):], x)
}

// Good takes received samples. Right after a loss it overlap-adds the first
// of them with the continued concealment, in place.
func (c *Concealer) Good(pcm []int16) {
	if c.erasing {
		if c.olaLeft == 0 {
			// The first received sample after the loss: a quarter period of
			// overlap (see the package documentation for why not longer).
			c.olaLen = c.q
			c.olaLeft = c.olaLen
		}
		i := 0
		for ; i < len(pcm) && c.olaLeft > 0; i++ {
			j := c.olaLen - c.olaLeft
			w := float32(j+1) / float32(c.olaLen+1)
			pcm[i] = sat(c.next()*(1-w) + float32(pcm[i])*w)
			c.olaLeft--
		}
		if c.olaLeft == 0 {
			c.erasing = false
		}
	}
	c.push(pcm)
}

// Lost writes concealment for len(dst) missing samples.
func (c *Concealer) Lost(dst []int16) {
	c.LostBefore(dst, nil)
}

// LostBefore writes concealment for len(dst) missing samples that next, the
// received audio after them, follows. When next holds at least one pitch
// period, the concealment's end runs into a backward repetition of next's
// first period, over the overlap Appendix I gives the received audio after a
// loss, so the loss ends without a step and the received audio is played as it
// came: the following Good leaves it alone. Otherwise it is Lost.
func (c *Concealer) LostBefore(dst, next []int16) {
	if len(dst) == 0 {
		return
	}
	if !c.erasing {
		c.start()
	}
	// A loss that resumes during the overlap after the last one continues it.
	c.olaLeft = 0
	for i := range dst {
		dst[i] = sat(c.next())
	}
	if p := c.pitch; len(next) >= p {
		lost := (c.erased + c.unit - 1) / c.unit
		n := min(c.q+(lost-1)*c.olaIn, c.unit, len(dst))
		for k := range n {
			i := len(dst) - n + k
			m := len(dst) - i // samples before next[0]
			back := float32(next[(p-m%p)%p])
			w := float32(k+1) / float32(n+1)
			dst[i] = sat(float32(dst[i])*(1-w) + back*w)
		}
		c.erasing = false
	}
	c.push(dst)
}

// start begins a loss: the period, and the pitch buffer the repetition reads.
func (c *Concealer) start() {
	c.erasing = true
	c.erased = 0
	c.pitch = c.estimatePitch()
	c.lastPitch = c.pitch
	c.q = c.pitch / 4
	copy(c.pb[:c.histLen], c.hist[:c.histLen])
	c.periods = 1
	c.idx = c.histLen - c.pitch
}

// next returns the next sample of the concealment.
func (c *Concealer) next() float32 {
	B := c.histLen
	if c.erased >= (1+fadeUnits)*c.unit {
		c.erased++
		return 0 // faded out; nothing to repeat any more
	}
	tail := B - c.q
	// More periods as the loss goes on, switched outside the overlap region so
	// that the overlap's partner does not change half-way.
	if want := min(1+c.erased/c.unit, 3); want > c.periods && c.idx < tail {
		c.periods = want
	}
	start := B - c.periods*c.pitch
	v := float32(c.pb[c.idx])
	if c.idx >= tail {
		// The last quarter period runs into the quarter period before the
		// repeated stretch, which the repetition's start continues.
		j := c.idx - tail
		w := float32(j+1) / float32(c.q+1)
		v = v*(1-w) + float32(c.pb[start-c.q+j])*w
	}
	c.idx++
	if c.idx == B {
		c.idx = start
	}
	if c.erased >= c.unit {
		v *= 1 - float32(c.erased-c.unit)/float32(fadeUnits*c.unit)
	}
	c.erased++
	return v
}

// estimatePitch finds the period between pmin and pmax at which the last corr
// samples of the history best match the history one period earlier: the peak
// of their normalised cross-correlation, searched at every other lag and
// sample (every fourth at 16 kHz), then at every lag and sample around it.
func (c *Concealer) estimatePitch() int {
	step := 2 * c.rate / 8000
	best, score := c.pmax, math.Inf(-1)
	for p := c.pmin; p <= c.pmax; p += step {
		if s := c.ncc(p, step); s > score {
			best, score = p, s
		}
	}
	lo, hi := max(best-step+1, c.pmin), min(best+step-1, c.pmax)
	score = math.Inf(-1)
	for p := lo; p <= hi; p++ {
		if s := c.ncc(p, 1); s > score {
			best, score = p, s
		}
	}
	return best
}

// ncc is the correlation of the last corr samples with those p earlier,
// divided by the root of the earlier ones' energy (every step-th sample).
func (c *Concealer) ncc(p, step int) float64 {
	h := c.hist[:c.histLen]
	var xy, yy float64
	for n := len(h) - c.corr; n < len(h); n += step {
		x, y := float64(h[n]), float64(h[n-p])
		xy += x * y
		yy += y * y
	}
	if yy == 0 {
		return 0
	}
	return xy / math.Sqrt(yy)
}

func sat(v float32) int16 {
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	case v < 0:
		return int16(v - 0.5)
	}
	return int16(v + 0.5)
}
