// Package g722 is ITU-T G.722 (09/2012) wideband audio coding at 64 kbit/s:
// 16 kHz 16-bit linear PCM in, one byte per pair of samples out, and back.
//
// It follows the standard's block description: a 24-tap quadrature mirror
// filter (QMF) splits the signal into a lower and a higher sub-band sampled at
// 8 kHz; the lower band is coded with 6-bit ADPCM (blocks 1L-6L), the higher
// with 2-bit ADPCM (blocks 1H-6H), both with the same adaptive predictor
// (block 4: a pole-zero predictor with two poles and six zeros). Each output
// byte holds the higher band's 2 bits above the lower band's 6.
//
// On RTP (RFC 3551 §4.5.2) the clock rate is 8000 although the audio is
// sampled at 16 kHz (an error in RFC 1890 kept for compatibility), so a byte
// is one RTP timestamp unit: a 20 ms packet is 160 bytes and 160 ticks, and
// carries 320 samples.
//
// Only the 64 kbit/s mode is implemented (what SDP's G722/8000 means); the
// 56 and 48 kbit/s modes drop low-band bits that RTP peers never leave out.
// Encoder and Decoder hold the ADPCM and QMF state of one direction of one
// call; they are not safe for concurrent use. No allocation after New.
package g722

// Tables of G.722 §3 and §4, by the names of the standard's blocks.
var (
	// QMF coefficients h0..h11 (h23..h12 are the same mirrored), Table 11.
	qmf = [12]int32{3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11}

	// QUANTL: decision levels of the 6-bit lower-band quantiser (Table 6,
	// scaled), and the codes for positive and negative differences.
	q6  = [32]int32{0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940, 1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0}
	iln = [32]int32{0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 0}
	ilp = [32]int32{0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 0}

	// INVQAL: the 4-bit inverse quantiser of the lower band (Table 7).
	qm4 = [16]int32{0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584, 1200, 0}
	// INVQBL: the 6-bit inverse quantiser of the decoder's lower band (Table 8).
	qm6 = [64]int32{
		-136, -136, -136, -136, -24808, -21904, -19008, -16704,
		-14984, -13512, -12280, -11192, -10232, -9360, -8576, -7856,
		-7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576,
		-3168, -2776, -2400, -2032, -1688, -1360, -1040, -728,
		24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192,
		10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456,
		4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032,
		1688, 1360, 1040, 728, 432, 136, -432, -136,
	}
	// LOGSCL: log-domain scale factor multipliers and the map from the
	// 4-bit code to them (Table 9).
	wl   = [8]int32{-60, -30, 58, 172, 334, 538, 1198, 3042}
	rl42 = [16]int32{0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0}
	// SCALEL/SCALEH: the log-to-linear table (Table 10).
	ilb = [32]int32{2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834, 2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008}

	// Higher band: QUANTH codes, INVQAH, LOGSCH (Tables 12-14).
	ihn = [3]int32{0, 1, 0}
	ihp = [3]int32{0, 3, 2}
	qm2 = [4]int32{-7408, -1616, 7408, 1616}
	wh  = [3]int32{0, -214, 798}
	rh2 = [4]int32{2, 1, 2, 1}
)

// sat limits to the 16-bit two's complement range, as the standard's
// arithmetic does after each addition.
func sat(v int32) int32 {
	if v > 32767 {
		return 32767
	}
	if v < -32768 {
		return -32768
	}
	return v
}

// band is the ADPCM state of one sub-band.
type band struct {
	s   int32 // predictor output: the signal estimate
	sp  int32 // pole section's contribution
	sz  int32 // zero section's contribution
	r   [3]int32
	a   [3]int32 // pole coefficients a1, a2 (a[0] unused)
	ap  [3]int32
	p   [3]int32 // partially reconstructed signal
	d   [7]int32 // quantised differences
	b   [7]int32 // zero coefficients b1..b6
	bp  [7]int32
	sg  [7]int32
	nb  int32 // log scale factor
	det int32 // linear scale factor
}

// adapt is block 4: reconstruct the signal, adapt the pole (UPPOL1, UPPOL2)
// and zero (UPZERO) coefficients, shift the delay lines and predict the next
// sample (FILTEP, FILTEZ, PREDIC).
func (s *band) adapt(d int32) {
	// RECONS, PARREC
	s.d[0] = d
	s.r[0] = sat(s.s + d)
	s.p[0] = sat(s.sz + d)

	// UPPOL2
	for i := range 3 {
		s.sg[i] = s.p[i] >> 15
	}
	wd1 := sat(s.a[1] << 2)
	wd2 := wd1
	if s.sg[0] == s.sg[1] {
		wd2 = -wd1
	}
	if wd2 > 32767 {
		wd2 = 32767
	}
	wd3 := int32(-128)
	if s.sg[0] == s.sg[2] {
		wd3 = 128
	}
	wd3 += wd2 >> 7
	wd3 += (s.a[2] * 32512) >> 15
	wd3 = min(max(wd3, -12288), 12288)
	s.ap[2] = wd3

	// UPPOL1
	s.sg[0] = s.p[0] >> 15
	s.sg[1] = s.p[1] >> 15
	wd1 = -192
	if s.sg[0] == s.sg[1] {
		wd1 = 192
	}
	wd2 = (s.a[1] * 32640) >> 15
	s.ap[1] = sat(wd1 + wd2)
	wd3 = sat(15360 - s.ap[2])
	s.ap[1] = min(max(s.ap[1], -wd3), wd3)

	// UPZERO
	wd1 = 128
	if d == 0 {
		wd1 = 0
	}
	s.sg[0] = d >> 15
	for i := 1; i < 7; i++ {
		s.sg[i] = s.d[i] >> 15
		wd2 = -wd1
		if s.sg[i] == s.sg[0] {
			wd2 = wd1
		}
		wd3 = (s.b[i] * 32640) >> 15
		s.bp[i] = sat(wd2 + wd3)
	}

	// DELAYA
	for i := 6; i > 0; i-- {
		s.d[i] = s.d[i-1]
		s.b[i] = s.bp[i]
	}
	for i := 2; i > 0; i-- {
		s.r[i] = s.r[i-1]
		s.p[i] = s.p[i-1]
		s.a[i] = s.ap[i]
	}

	// FILTEP
	wd1 = sat(s.r[1] + s.r[1])
	wd1 = (s.a[1] * wd1) >> 15
	wd2 = sat(s.r[2] + s.r[2])
	wd2 = (s.a[2] * wd2) >> 15
	s.sp = sat(wd1 + wd2)

	// FILTEZ
	sz := int32(0)
	for i := 6; i > 0; i-- {
		wd1 = sat(s.d[i] + s.d[i])
		sz += (s.b[i] * wd1) >> 15
	}
	s.sz = sat(sz)

	// PREDIC
	s.s = sat(s.sp + s.sz)
}

// scale is blocks 3L/3H: the log scale factor nb from its multiplier w
// (LOGSCL, LOGSCH), limited to max, and the linear det from it (SCALEL,
// SCALEH); shift is 8 for the lower band and 10 for the higher.
func (s *band) scale(w, limit, shift int32) {
	nb := (s.nb*127)>>7 + w
	s.nb = min(max(nb, 0), limit)
	wd1 := (s.nb >> 6) & 31
	wd2 := shift - (s.nb >> 11)
	var wd3 int32
	if wd2 < 0 {
		wd3 = ilb[wd1] << -wd2
	} else {
		wd3 = ilb[wd1] >> wd2
	}
	s.det = wd3 << 2
}

// Encoder codes 16 kHz PCM to G.722 at 64 kbit/s.
type Encoder struct {
	x    [24]int32 // QMF input history
	low  band
	high band
}

// NewEncoder returns an encoder in the reset state of G.722 §3.
func NewEncoder() *Encoder {
	e := &Encoder{}
	e.Reset()
	return e
}

// Reset returns the encoder to its initial state.
func (e *Encoder) Reset() {
	*e = Encoder{}
	e.low.det = 32
	e.high.det = 8
}

// Encode codes pcm (an even number of 16 kHz samples; an odd last sample is
// ignored) into dst, one byte per two samples, and returns the bytes written.
// dst must hold len(pcm)/2 bytes.
func (e *Encoder) Encode(dst []byte, pcm []int16) int {
	n := len(pcm) / 2
	dst = dst[:n]
	for k := range dst {
		// Transmit QMF: shift in two samples, keep one output per band.
		copy(e.x[:22], e.x[2:])
		e.x[22] = int32(pcm[2*k])
		e.x[23] = int32(pcm[2*k+1])
		var even, odd int32
		for i := range 12 {
			odd += e.x[2*i] * qmf[i]
			even += e.x[2*i+1] * qmf[11-i]
		}
		xlow := (even + odd) >> 14
		xhigh := (even - odd) >> 14

		// Lower band. SUBTRA, QUANTL
		el := sat(xlow - e.low.s)
		wd := el
		if el < 0 {
			wd = -(el + 1)
		}
		i := 1
		for ; i < 30; i++ {
			if wd < (q6[i]*e.low.det)>>12 {
				break
			}
		}
		var ilow int32
		if el < 0 {
			ilow = iln[i]
		} else {
			ilow = ilp[i]
		}
		// INVQAL, LOGSCL, SCALEL, block 4
		ril := ilow >> 2
		dlow := (e.low.det * qm4[ril]) >> 15
		e.low.scale(wl[rl42[ril]], 18432, 8)
		e.low.adapt(dlow)

		// Higher band. SUBTRA, QUANTH
		eh := sat(xhigh - e.high.s)
		wd = eh
		if eh < 0 {
			wd = -(eh + 1)
		}
		mih := int32(1)
		if wd >= (564*e.high.det)>>12 {
			mih = 2
		}
		var ihigh int32
		if eh < 0 {
			ihigh = ihn[mih]
		} else {
			ihigh = ihp[mih]
		}
		// INVQAH, LOGSCH, SCALEH, block 4
		dhigh := (e.high.det * qm2[ihigh]) >> 15
		e.high.scale(wh[rh2[ihigh]], 22528, 10)
		e.high.adapt(dhigh)

		dst[k] = byte(ihigh<<6 | ilow)
	}
	return n
}

// Decoder decodes G.722 at 64 kbit/s to 16 kHz PCM.
type Decoder struct {
	x    [24]int32 // QMF history
	low  band
	high band
}

// NewDecoder returns a decoder in the reset state of G.722 §4.
func NewDecoder() *Decoder {
	d := &Decoder{}
	d.Reset()
	return d
}

// Reset returns the decoder to its initial state.
func (d *Decoder) Reset() {
	*d = Decoder{}
	d.low.det = 32
	d.high.det = 8
}

// Decode decodes src into dst, two samples per byte, and returns the samples
// written. dst must hold 2*len(src) samples.
func (d *Decoder) Decode(dst []int16, src []byte) int {
	dst = dst[:2*len(src)]
	for k, code := range src {
		ilow := int32(code & 0x3f)
		ihigh := int32(code>>6) & 3

		// Lower band. INVQBL, RECONS, LIMIT
		rlow := d.low.s + (d.low.det*qm6[ilow])>>15
		rlow = min(max(rlow, -16384), 16383)
		// INVQAL, LOGSCL, SCALEL, block 4
		ril := ilow >> 2
		dlow := (d.low.det * qm4[ril]) >> 15
		d.low.scale(wl[rl42[ril]], 18432, 8)
		d.low.adapt(dlow)

		// Higher band. INVQAH, RECONS, LIMIT
		dhigh := (d.high.det * qm2[ihigh]) >> 15
		rhigh := dhigh + d.high.s
		rhigh = min(max(rhigh, -16384), 16383)
		// LOGSCH, SCALEH, block 4
		d.high.scale(wh[rh2[ihigh]], 22528, 10)
		d.high.adapt(dhigh)

		// Receive QMF.
		copy(d.x[:22], d.x[2:])
		d.x[22] = rlow + rhigh
		d.x[23] = rlow - rhigh
		var out1, out2 int32
		for i := range 12 {
			out2 += d.x[2*i] * qmf[i]
			out1 += d.x[2*i+1] * qmf[11-i]
		}
		dst[2*k] = int16(sat(out1 >> 11))
		dst[2*k+1] = int16(sat(out2 >> 11))
	}
	return len(dst)
}
