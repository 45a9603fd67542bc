package g711

import (
	"testing"

	"github.com/cxco/gateway/media/audiotest"
)

// frameSamples is one 20 ms RTP frame at 8 kHz.
const frameSamples = 160

// benchFrame returns one frame of a speech-level signal (two tones, peaks
// around -10 dBFS) and its µ-law and A-law encodings.
func benchFrame() (pcm []int16, ulaw, alaw []byte) {
	pcm = make([]int16, frameSamples)
	other := make([]int16, frameSamples)
	(&audiotest.Tone{Rate: 8000, Freq: 437, Amplitude: 0.2}).Fill(pcm)
	(&audiotest.Tone{Rate: 8000, Freq: 1913, Amplitude: 0.1}).Fill(other)
	for i := range pcm {
		pcm[i] += other[i]
	}
	ulaw = make([]byte, frameSamples)
	alaw = make([]byte, frameSamples)
	PCMToULaw(ulaw, pcm)
	PCMToALaw(alaw, pcm)
	return pcm, ulaw, alaw
}

func reportPerFrame(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

// BenchmarkFrame measures each conversion on one 20 ms frame (160 samples).
func BenchmarkFrame(b *testing.B) {
	pcm, ulaw, alaw := benchFrame()
	outPCM := make([]int16, frameSamples)
	outCodes := make([]byte, frameSamples)
	benches := []struct {
		name string
		run  func()
	}{
		{"DecodeULaw", func() { ULawToPCM(outPCM, ulaw) }},
		{"EncodeULaw", func() { PCMToULaw(outCodes, pcm) }},
		{"DecodeALaw", func() { ALawToPCM(outPCM, alaw) }},
		{"EncodeALaw", func() { PCMToALaw(outCodes, pcm) }},
		{"ULawToALaw", func() { ULawToALaw(outCodes, ulaw) }},
		{"ALawToULaw", func() { ALawToULaw(outCodes, alaw) }},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(frameSamples)
			for b.Loop() {
				bb.run()
			}
			reportPerFrame(b)
		})
	}
}
