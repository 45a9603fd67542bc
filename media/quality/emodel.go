// Package quality estimates a call's conversational quality with the ITU-T
// G.107 E-model (06/2015): the transmission rating R from the impairments a
// media path measures (delay, packet loss and how bursty it was, the codec and
// its concealment), and the MOS (conversational quality estimate) that R maps
// to.
//
// Everything G.107 lets a planner set but a gateway cannot measure (loudness
// ratings, room noise, sidetone, echo loss) stays at G.107's default values,
// with which R is 93.2 on a perfect connection. The impairments it can measure:
//
//   - Ta, the one-way mouth-to-ear delay; T (the talker echo path) and Tr/2
//     (the listener echo path) are taken equal to it, as G.107 does when
//     there is one delay figure;
//   - Ppl, the share of packets lost, counting those the jitter buffer dropped
//     as late (they are lost to the listener just the same);
//   - BurstR, the burst ratio: the mean length of the loss bursts seen over
//     that expected of random loss at the same rate (1 for random loss);
//   - the codec's Ie and Bpl from ITU-T G.113 Appendix I: G.711 has Ie 0, and
//     Bpl 25.1 with the packet loss concealment of G.711 Appendix I, 4.3
//     without any.
package quality

import (
	"math"
	"time"
)

// Codec is a codec's equipment impairment factor Ie and packet-loss
// robustness factor Bpl (ITU-T G.113 Appendix I).
type Codec struct {
	Ie, Bpl float64
}

// G.711 as ITU-T G.113 Appendix I (Table I.3) rates it.
var (
	// G711PLC is G.711 with the concealment of G.711 Appendix I.
	G711PLC = Codec{Ie: 0, Bpl: 25.1}
	// G711 is G.711 without concealment (silence, or a repeat that G.113
	// does not rate).
	G711 = Codec{Ie: 0, Bpl: 4.3}
)

// Impairments are what the E-model is given.
type Impairments struct {
	Delay  time.Duration // Ta, one-way mouth to ear
	Loss   float64       // Ppl as a fraction, 0..1
	BurstR float64       // ≥ 1; 0 means 1 (random)
	Codec  Codec
}

// Default values of G.107 (Table 1) for what is not measured.
const (
	slr, rlr  = 8.0, 2.0 // send and receive loudness ratings, dB
	stmr      = 15.0     // sidetone masking rating, dB
	lstr      = 18.0     // listener sidetone rating, dB
	ds        = 3.0      // D-value of the telephone, send side
	telr      = 65.0     // talker echo loudness rating, dB
	wepl      = 110.0    // weighted echo path loss, dB
	qdu       = 1.0      // quantising distortion units
	nc        = -70.0    // circuit noise referred to the 0 dBr point, dBm0p
	nfor      = -64.0    // noise floor at the receive side, dBmp
	ps, pr    = 35.0, 35.0
	advantage = 0.0 // A: none for a wired call
	mT, sT    = 100.0, 1.0
)

// basic returns Ro and Is of G.107 §7.2 and §7.3 with the default values, and
// No, which the delay impairment needs.
func basic() (ro, is, no float64) {
	olr := slr + rlr
	nos := ps - slr - ds - 100 + 0.004*(ps-olr-ds-14)*(ps-olr-ds-14)
	pre := pr + 10*math.Log10(1+math.Pow(10, (10-lstr)/10))
	nor := rlr - 121 + pre + 0.008*(pre-35)*(pre-35)
	nfo := nfor + rlr
	no = 10 * math.Log10(math.Pow(10, nc/10)+math.Pow(10, nos/10)+math.Pow(10, nor/10)+math.Pow(10, nfo/10))
	ro = 15 - 1.5*(slr+no)

	xolr := olr + 0.2*(64+no-rlr)
	iolr := 20 * (math.Pow(1+math.Pow(xolr/8, 8), 1.0/8) - xolr/8)
	// STMRo with T = 0: the echo term is 10^-6.5 next to 10^-1.5 (TELR 65 dB),
	// so the talker echo's delay does not move it measurably.
	stmro := -10 * math.Log10(math.Pow(10, -stmr/10)+math.Pow(10, -telr/10))
	ist := 12*math.Pow(1+math.Pow((stmro-13)/6, 8), 1.0/8) -
		28*math.Pow(1+math.Pow((stmro+1)/19.4, 35), 1.0/35) -
		13*math.Pow(1+math.Pow((stmro-3)/33, 13), 1.0/13) + 29
	q := 37 - 15*math.Log10(qdu)
	g := 1.07 + 0.258*q + 0.0602*q*q
	y := (ro-100)/15 + 46/8.4 - g/9
	z := 46/30.0 - g/40
	iq := 15 * math.Log10(1+math.Pow(10, y)+math.Pow(10, z))
	return ro, iolr + ist + iq, no
}

var roDefault, isDefault, noDefault = basic()

// delayImpairment is Id of G.107 §7.4 for one-way delay ta (ms), with T = Ta
// and Tr = 2·Ta.
func delayImpairment(ta float64) float64 {
	t, tr := ta, 2*ta
	// Talker echo.
	roe := -1.5 * (noDefault - rlr)
	terv := telr - 40*math.Log10((1+t/10)/(1+t/150)) + 6*math.Exp(-0.3*t*t)
	re := 80 + 2.5*(terv-14)
	idte := ((roe-re)/2 + math.Sqrt((roe-re)*(roe-re)/4+100) - 1) * (1 - math.Exp(-t))
	// Listener echo.
	rle := 10.5 * (wepl + 7) * math.Pow(tr+1, -0.25)
	idle := (roDefault-rle)/2 + math.Sqrt((roDefault-rle)*(roDefault-rle)/4+169)
	// Too-long absolute delay.
	idd := 0.0
	if ta > mT {
		x := math.Log10(ta/mT) / math.Log10(2)
		idd = 25 * (math.Pow(1+math.Pow(x, 6*sT), 1/(6*sT)) - 3*math.Pow(1+math.Pow(x/3, 6*sT), 1/(6*sT)) + 2)
	}
	return idte + idle + idd
}

// R returns the transmission rating factor for the impairments, 0..100
// (G.107's R can exceed 100 only with an advantage factor, which is 0 here).
func R(im Impairments) float64 {
	ppl := min(max(im.Loss, 0), 1) * 100
	burst := max(im.BurstR, 1)
	ie := im.Codec.Ie
	bpl := im.Codec.Bpl
	ieEff := ie
	if ppl > 0 {
		ieEff = ie + (95-ie)*ppl/(ppl/burst+bpl)
	}
	// A delay under 0 is not one (a jitter buffer that fell behind a stalled
	// reader can average a negative depth): G.107's formulas are undefined
	// there (NaN), and a NaN rating cannot be stored as JSON.
	ta := max(float64(im.Delay)/float64(time.Millisecond), 0)
	r := roDefault - isDefault - delayImpairment(ta) - ieEff + advantage
	if math.IsNaN(r) {
		return 0
	}
	return min(max(r, 0), 100)
}

// MOS maps R to the conversational quality estimate MOS_CQE (G.107 Annex B):
// 1 at R ≤ 0, 4.5 at R ≥ 100. (The Annex's polynomial dips just under 1 for R
// below 6.5; a MOS is never under 1.)
func MOS(r float64) float64 {
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	return max(1, 1+0.035*r+r*(r-60)*(100-r)*7e-6)
}

// BurstRatio is G.107's BurstR from what a receiver counted: lost packets in
// runs (bursts) out of expected. For a two-state Markov model of the loss,
// BurstR = 1/(p+q) = the mean burst length × (1 − the loss rate); random loss
// gives 1. It returns 1 when nothing was lost.
func BurstRatio(lost, runs, expected float64) float64 {
	if lost <= 0 || runs <= 0 || expected <= 0 || lost >= expected {
		return 1
	}
	return max(1, lost/runs*(1-lost/expected))
}

// Rating is the category of speech transmission quality ITU-T G.109 (Table 1)
// gives R: best (90-100, very satisfied), high (80-90, satisfied), medium
// (70-80, some users dissatisfied), low (60-70, many dissatisfied), poor
// (below 60, nearly all dissatisfied).
func Rating(r float64) string {
	switch {
	case r >= 90:
		return "best"
	case r >= 80:
		return "high"
	case r >= 70:
		return "medium"
	case r >= 60:
		return "low"
	}
	return "poor"
}
