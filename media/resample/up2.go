package resample

// Up2 interpolates 8 kHz audio to 16 kHz. The zero value is not ready for use;
// create one with NewUp2.
type Up2 struct {
	// buf holds the last halfLen input samples (history) followed by the block
	// being processed.
	buf [halfLen + block]int32
	// acc is scratch for the odd-phase sums of one block.
	acc [block]int64
}

// NewUp2 returns an 8 kHz → 16 kHz converter with silent history.
func NewUp2() *Up2 { return &Up2{} }

// Process interpolates src (8 kHz) into dst (16 kHz) and returns the number of
// samples written, always 2·len(src). It panics if len(dst) < 2·len(src).
// The output lags the input by Delay() samples at 16 kHz; history carries over
// to the next call.
func (u *Up2) Process(dst, src []int16) int {
	n := len(src)
	if len(dst) < 2*n {
		panic("resample: Up2.Process: len(dst) < 2*len(src)")
	}
	for len(src) > 0 {
		c := min(len(src), block)
		b := u.buf[:halfLen+c]
		for i, v := range src[:c] {
			b[halfLen+i] = int32(v)
		}
		// acc[i] is the sinc phase for input x[m] = src[i], whose window
		// b[i : i+phaseLen] is x[m-M..m]; it falls halfway between x[m-18]
		// and x[m-17].
		acc := u.acc[:c]
		oddPhase(acc, b)
		out := dst[:2*c]
		delayed := b[(halfLen-1)/2:] // delayed[i] = x[m-(M+1)/2]
		delayed = delayed[:c]
		for i, a := range acc {
			out[2*i] = int16(delayed[i])
			out[2*i+1] = saturate(a, coefShift)
		}
		copy(u.buf[:halfLen], b[c:])
		src, dst = src[c:], dst[2*c:]
	}
	return 2 * n
}

// Reset clears the history, as if the converter were new.
func (u *Up2) Reset() { clear(u.buf[:]) }

// Delay returns the converter's group delay in output (16 kHz) samples.
func (u *Up2) Delay() int { return delay16k }

// String names the stage for pipeline descriptions.
func (u *Up2) String() string { return "Resample(8000->16000)" }
