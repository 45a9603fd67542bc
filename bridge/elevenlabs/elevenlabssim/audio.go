package elevenlabssim

import (
	"strconv"

	"github.com/cxco/gateway/bridge/internal/simaudio"
)

// format is one of the protocol's audio formats, <ulaw|pcm>_<rate>: µ-law bytes, or
// 16-bit little-endian mono PCM.
type format = simaudio.Format

var ulaw8000 = simaudio.ULaw8000

// parseFormat reads an agent's audio format; empty is ulaw_8000 (what a phone
// gateway wants, and the simulator's default).
func parseFormat(s string) (format, bool) {
	switch s {
	case "", "ulaw_8000":
		return ulaw8000, true
	case "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000":
		rate, _ := strconv.Atoi(s[len("pcm_"):])
		return simaudio.PCM(rate), true
	}
	return format{}, false
}

// The agent's own voice is the shared simulated voice (a 440 Hz tone).
func voice(f format, text string) []byte { return simaudio.Voice(f, text) }

var newDetector = simaudio.NewDetector

// How long the voice of a text is: 60 ms a character, 0.8 s to 4 s.
const (
	voicePerRune = simaudio.VoicePerRune
	voiceMin     = simaudio.VoiceMin
	voiceMax     = simaudio.VoiceMax
)
