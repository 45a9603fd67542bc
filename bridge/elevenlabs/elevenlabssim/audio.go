package elevenlabssim

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

// format is one of the protocol's audio formats, <ulaw|pcm>_<rate>: µ-law bytes, or
// 16-bit little-endian mono PCM.
type format struct {
	name string
	ulaw bool
	rate int
}

var ulaw8000 = format{name: "ulaw_8000", ulaw: true, rate: 8000}

// parseFormat reads an agent's audio format; empty is ulaw_8000 (what a phone
// gateway wants, and the simulator's default).
func parseFormat(s string) (format, bool) {
	switch s {
	case "", "ulaw_8000":
		return ulaw8000, true
	case "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000":
		rate, _ := strconv.Atoi(s[len("pcm_"):])
		return format{name: s, rate: rate}, true
	}
	return format{}, false
}

func (f format) bytesPerSample() int {
	if f.ulaw {
		return 1
	}
	return 2
}

// samples is how many samples d holds.
func (f format) samples(d time.Duration) int {
	return int(int64(d) * int64(f.rate) / int64(time.Second))
}

// duration is how long n bytes of audio play.
func (f format) duration(n int) time.Duration {
	return time.Duration(int64(n/f.bytesPerSample()) * int64(time.Second) / int64(f.rate))
}

// sampleTime is how long n samples play.
func (f format) sampleTime(n int64) time.Duration {
	return time.Duration(n * int64(time.Second) / int64(f.rate))
}

// decode converts src to PCM in dst (grown as needed) and returns it. An odd
// trailing byte of PCM is dropped.
func (f format) decode(dst []int16, src []byte) []int16 {
	n := len(src) / f.bytesPerSample()
	if cap(dst) < n {
		dst = make([]int16, n, n+n/2)
	}
	dst = dst[:n]
	if f.ulaw {
		g711.ULawToPCM(dst, src)
		return dst
	}
	for i := range dst {
		dst[i] = int16(binary.LittleEndian.Uint16(src[2*i:]))
	}
	return dst
}

// encode converts PCM at this format's rate to a new slice in this format.
func (f format) encode(pcm []int16) []byte {
	out := make([]byte, len(pcm)*f.bytesPerSample())
	if f.ulaw {
		g711.PCMToULaw(out, pcm)
		return out
	}
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
	}
	return out
}

// transcode converts PCM at rate from to a new slice in f: the echo of an utterance.
func (f format) transcode(pcm []int16, from int) []byte {
	return f.encode(resample(pcm, from, f.rate))
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
	voiceFreq     = 440.0                 // Hz
	voiceLevelDB  = -12.0                 // dBFS, RMS convention (audiotest's)
	voicePerRune  = 60 * time.Millisecond // speaking rate
	voiceMin      = 800 * time.Millisecond
	voiceMax      = 4 * time.Second
	maxEchoLength = 10 * time.Second
)

var voices sync.Map // format name -> []byte: voiceMax of the voice tone

// voice returns the agent's audio for text: the tone for 60 ms per character,
// at least 0.8 s and at most 4 s. The slice is shared: do not modify it.
func voice(f format, text string) []byte {
	d := time.Duration(utf8.RuneCountInString(text)) * voicePerRune
	d = min(max(d, voiceMin), voiceMax)
	return voiceTone(f)[:f.samples(d)*f.bytesPerSample()]
}

func voiceTone(f format) []byte {
	if v, ok := voices.Load(f.name); ok {
		return v.([]byte)
	}
	pcm := make([]int16, f.samples(voiceMax))
	amp := math.Pow(10, voiceLevelDB/20) * math.Sqrt2 // peak of a sine with that RMS
	t := audiotest.Tone{Rate: float64(f.rate), Freq: voiceFreq, Amplitude: amp}
	t.Fill(pcm)
	v, _ := voices.LoadOrStore(f.name, f.encode(pcm))
	return v.([]byte)
}
