package resample

// Down2 decimates 16 kHz audio to 8 kHz. The zero value is not ready for use;
// create one with NewDown2.
//
// In polyphase form the input splits into its even samples e[m] = x[2m] and
// odd samples o[m] = x[2m+1]; output m is e[m-(M+1)/2]/2 plus the sinc phase
// over o[m-1-M..m-1], divided by two.
type Down2 struct {
	// odd holds the last phaseLen odd input samples, then the current block's.
	odd [phaseLen + block]int32
	// even holds the last evenDelay even input samples, then the current
	// block's.
	even [evenDelay + block]int32
	// acc is scratch for the odd-phase sums of one block.
	acc [block]int64
}

// evenDelay is the delay of the centre tap in 8 kHz samples.
const evenDelay = (halfLen + 1) / 2

// NewDown2 returns a 16 kHz → 8 kHz converter with silent history.
func NewDown2() *Down2 { return &Down2{} }

// Process decimates src (16 kHz) into dst (8 kHz) and returns the number of
// samples written, always len(src)/2. src must hold whole sample pairs: it
// panics if len(src) is odd or len(dst) < len(src)/2. The output lags the
// input by Delay()/2 samples at 8 kHz; history carries over to the next call.
func (d *Down2) Process(dst, src []int16) int {
	if len(src)%2 != 0 {
		panic("resample: Down2.Process: len(src) is odd")
	}
	n := len(src) / 2
	if len(dst) < n {
		panic("resample: Down2.Process: len(dst) < len(src)/2")
	}
	for len(src) > 0 {
		c := min(len(src)/2, block)
		od := d.odd[:phaseLen+c]
		ev := d.even[:evenDelay+c]
		in := src[:2*c]
		for i := range c {
			ev[evenDelay+i] = int32(in[2*i])
			od[phaseLen+i] = int32(in[2*i+1])
		}
		// acc[i] is the sinc phase over o[m-1-M..m-1] = od[i : i+phaseLen];
		// ev[i] is e[m-evenDelay].
		acc := d.acc[:c]
		oddPhase(acc, od[:c+halfLen])
		out := dst[:c]
		centre := ev[:c]
		for i, a := range acc {
			out[i] = saturate(a+int64(centre[i])<<coefShift, coefShift+1)
		}
		copy(d.odd[:phaseLen], od[c:])
		copy(d.even[:evenDelay], ev[c:])
		src, dst = src[2*c:], dst[c:]
	}
	return n
}

// Reset clears the history, as if the converter were new.
func (d *Down2) Reset() {
	clear(d.odd[:])
	clear(d.even[:])
}

// Delay returns the converter's group delay in output (8 kHz) samples.
func (d *Down2) Delay() int { return delay16k / 2 }

// String names the stage for pipeline descriptions.
func (d *Down2) String() string { return "Resample(16000->8000)" }
