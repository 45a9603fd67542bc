package resample

import (
	"testing"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
)

// frame8k is one 20 ms RTP frame at 8 kHz; the same 20 ms is 320 samples at
// 16 kHz.
const frame8k = 160

func reportPerFrame(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

func speech8k() []int16 {
	x := make([]int16, frame8k)
	(&audiotest.Tone{Rate: 8000, Freq: 437, Amplitude: 0.3}).Fill(x)
	return x
}

// BenchmarkUp2 converts one 20 ms frame: 160 samples in, 320 out.
func BenchmarkUp2(b *testing.B) {
	u := NewUp2()
	in, out := speech8k(), make([]int16, 2*frame8k)
	b.ReportAllocs()
	for b.Loop() {
		u.Process(out, in)
	}
	reportPerFrame(b)
}

// BenchmarkDown2 converts one 20 ms frame: 320 samples in, 160 out.
func BenchmarkDown2(b *testing.B) {
	d := NewDown2()
	in, out := make([]int16, 2*frame8k), make([]int16, frame8k)
	NewUp2().Process(in, speech8k())
	b.ReportAllocs()
	for b.Loop() {
		d.Process(out, in)
	}
	reportPerFrame(b)
}

// BenchmarkDecodeResampleEncode runs one 20 ms PCMU frame through the whole
// chain a call uses: µ-law → PCM → 16 kHz → 8 kHz → µ-law.
func BenchmarkDecodeResampleEncode(b *testing.B) {
	u, d := NewUp2(), NewDown2()
	ulaw := make([]byte, frame8k)
	g711.PCMToULaw(ulaw, speech8k())
	pcm8, pcm16, back := make([]int16, frame8k), make([]int16, 2*frame8k), make([]int16, frame8k)
	out := make([]byte, frame8k)
	b.ReportAllocs()
	for b.Loop() {
		g711.ULawToPCM(pcm8, ulaw)
		u.Process(pcm16, pcm8)
		d.Process(back, pcm16)
		g711.PCMToULaw(out, back)
	}
	reportPerFrame(b)
}
