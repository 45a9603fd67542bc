package media

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/cxco/gateway/media/g711"
)

// Tone is d of the sum of sines at freqs (each at level, a fraction of full scale)
// in format f, ready for Stream.Play: ringback while a transfer rings, the short
// apology when the provider is gone.
func Tone(f Format, freqs []float64, level float64, d time.Duration) []byte {
	rate := 8000.0
	if f == FormatPCM16k {
		rate = 16000
	}
	n := int(rate * d.Seconds())
	out := make([]byte, 0, n*2)
	for i := 0; i < n; i++ {
		var v float64
		for _, fr := range freqs {
			v += math.Sin(2 * math.Pi * fr * float64(i) / rate)
		}
		s := int16(max(-32767, min(32767, level*32767*v)))
		if f == FormatPCM16k {
			out = binary.LittleEndian.AppendUint16(out, uint16(s))
		} else {
			out = append(out, g711.EncodeULaw(s))
		}
	}
	return out
}

// Silence is d of silence in format f.
func Silence(f Format, d time.Duration) []byte {
	if f == FormatPCM16k {
		return make([]byte, int(32000*d.Seconds()))
	}
	b := make([]byte, int(8000*d.Seconds()))
	for i := range b {
		b[i] = g711.ULawSilence
	}
	return b
}

// Ringback is one cycle of the ITU-T E.180 ringing tone: 425 Hz for 1 s, then 4 s of silence.
func Ringback(f Format) []byte {
	return append(Tone(f, []float64{425}, 0.2, time.Second), Silence(f, 4*time.Second)...)
}
