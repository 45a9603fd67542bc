package media

import (
	"fmt"
	"strings"

	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/sdp"
)

// Format is the audio format a consumer exchanges with a Stream.
type Format int

// Formats.
const (
	// FormatULaw8k is G.711 µ-law at 8 kHz, 160 bytes per 20 ms frame
	// (the provider's ulaw_8000).
	FormatULaw8k Format = iota + 1
	// FormatPCM16k is 16-bit little-endian linear PCM at 16 kHz, 640 bytes
	// (320 samples) per 20 ms frame (the provider's pcm_16000).
	FormatPCM16k
)

func (f Format) String() string {
	switch f {
	case FormatULaw8k:
		return "ulaw_8000"
	case FormatPCM16k:
		return "pcm_16000"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// frameBytes is the size of one 20 ms frame in the format.
func (f Format) frameBytes() int {
	if f == FormatPCM16k {
		return 640
	}
	return 160
}

// law is one of the two G.711 laws on the wire.
type law uint8

const (
	ulaw law = iota
	alaw
)

func (l law) String() string {
	if l == alaw {
		return "PCMA"
	}
	return "PCMU"
}

func lawOf(c sdp.Codec) (law, error) {
	if c.ClockRate != 0 && c.ClockRate != 8000 {
		return 0, fmt.Errorf("%w: %s/%d", ErrCodec, c.Name, c.ClockRate)
	}
	switch {
	case strings.EqualFold(c.Name, "PCMU"):
		return ulaw, nil
	case strings.EqualFold(c.Name, "PCMA"):
		return alaw, nil
	}
	return 0, fmt.Errorf("%w: %s", ErrCodec, c.Name)
}

func (l law) silence() byte {
	if l == alaw {
		return g711.ALawSilence
	}
	return g711.ULawSilence
}

func (l law) decode(dst []int16, src []byte) int {
	if l == alaw {
		return g711.ALawToPCM(dst, src)
	}
	return g711.ULawToPCM(dst, src)
}

func (l law) encode(dst []byte, src []int16) int {
	if l == alaw {
		return g711.PCMToALaw(dst, src)
	}
	return g711.PCMToULaw(dst, src)
}

// jitterCodec adapts a law to jitter.Codec.
type jitterCodec struct{ l law }

func (c jitterCodec) Decode(dst []int16, src []byte) int { return c.l.decode(dst, src) }
func (c jitterCodec) Encode(dst []byte, src []int16) int { return c.l.encode(dst, src) }
func (c jitterCodec) Silence() byte                      { return c.l.silence() }
