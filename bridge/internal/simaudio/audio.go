// Package simaudio is what the provider simulators share of audio: their
// formats, the simulated agent's voice (a tone tests recognise), and the
// detector that finds a caller's utterances by energy. It is a test stand-in's
// toolbox, never the gateway's: the gateway's media path is package media.
package simaudio

import (
	"encoding/binary"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
)

// Format is an audio format: µ-law bytes, or 16-bit little-endian mono PCM, at
// Rate samples a second. Name keys the voice cache.
type Format struct {
	Name string
	ULaw bool
	Rate int
}

// ULaw8000 is G.711 µ-law at 8 kHz.
var ULaw8000 = Format{Name: "ulaw_8000", ULaw: true, Rate: 8000}

// PCM is 16-bit PCM at rate.
func PCM(rate int) Format { return Format{Name: "pcm_" + strconv.Itoa(rate), Rate: rate} }

// BytesPerSample is 1 for µ-law, 2 for PCM.
func (f Format) BytesPerSample() int {
	if f.ULaw {
		return 1
	}
	return 2
}

// Samples is how many samples d holds.
func (f Format) Samples(d time.Duration) int {
	return int(int64(d) * int64(f.Rate) / int64(time.Second))
}

// Duration is how long n bytes of audio play.
func (f Format) Duration(n int) time.Duration {
	return time.Duration(int64(n/f.BytesPerSample()) * int64(time.Second) / int64(f.Rate))
}

// SampleTime is how long n samples play.
func (f Format) SampleTime(n int64) time.Duration {
	return time.Duration(n * int64(time.Second) / int64(f.Rate))
}

// Decode converts src to PCM in dst (grown as needed) and returns it. An odd
// trailing byte of PCM is dropped.
func (f Format) Decode(dst []int16, src []byte) []int16 {
	n := len(src) / f.BytesPerSample()
	if cap(dst) < n {
		dst = make([]int16, n, n+n/2)
	}
	dst = dst[:n]
	if f.ULaw {
		g711.ULawToPCM(dst, src)
		return dst
	}
	for i := range dst {
		dst[i] = int16(binary.LittleEndian.Uint16(src[2*i:]))
	}
	return dst
}

// Encode converts PCM at this format's rate to a new slice in this format.
func (f Format) Encode(pcm []int16) []byte {
	out := make([]byte, len(pcm)*f.BytesPerSample())
	if f.ULaw {
		g711.PCMToULaw(out, pcm)
		return out
	}
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
	}
	return out
}

// Transcode converts PCM at rate from to a new slice in f: the echo of an utterance.
func (f Format) Transcode(pcm []int16, from int) []byte {
	return f.Encode(resample(pcm, from, f.Rate))
}

// resample converts between rates by linear interpolation. That is no studio
// converter, but a tone stays the same tone, which is what the echo is for.
func resample(pcm []int16, from, to int) []int16 {
	if from == to || len(pcm) == 0 {
		return pcm
	}
	n := int(int64(len(pcm)) * int64(to) / int64(from))
	out := make([]int16, n)
	step := float64(from) / float64(to)
	last := len(pcm) - 1
	for i := range out {
		x := float64(i) * step
		j := int(x)
		if j >= last {
			out[i] = pcm[last]
			continue
		}
		frac := x - float64(j)
		out[i] = int16(math.Round(float64(pcm[j])*(1-frac) + float64(pcm[j+1])*frac))
	}
	return out
}

// The agent's own voice is a sine at a known frequency and level, so tests
// recognise it and tell it from an echo of the caller.
const (
	VoiceFreq     = 440.0                 // Hz
	VoiceLevelDB  = -12.0                 // dBFS, RMS convention (audiotest's)
	VoicePerRune  = 60 * time.Millisecond // speaking rate
	VoiceMin      = 800 * time.Millisecond
	VoiceMax      = 4 * time.Second
	MaxEchoLength = 10 * time.Second // the longest utterance kept for an echo
)

var voices sync.Map // format name -> []byte: voiceMax of the voice tone

// Voice returns the agent's audio for text: the tone for 60 ms per character,
// at least 0.8 s and at most 4 s. The slice is shared: do not modify it.
func Voice(f Format, text string) []byte {
	d := time.Duration(utf8.RuneCountInString(text)) * VoicePerRune
	d = min(max(d, VoiceMin), VoiceMax)
	return VoiceTone(f)[:f.Samples(d)*f.BytesPerSample()]
}

// VoiceTone is the longest voice there is (4 s) in f; shared, do not modify.
func VoiceTone(f Format) []byte {
	if v, ok := voices.Load(f.Name); ok {
		return v.([]byte)
	}
	pcm := make([]int16, f.Samples(VoiceMax))
	amp := math.Pow(10, VoiceLevelDB/20) * math.Sqrt2 // peak of a sine with that RMS
	t := audiotest.Tone{Rate: float64(f.Rate), Freq: VoiceFreq, Amplitude: amp}
	t.Fill(pcm)
	v, _ := voices.LoadOrStore(f.Name, f.Encode(pcm))
	return v.([]byte)
}
