package media

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/g722"
	"github.com/cxco/gateway/media/opus"
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

// wireCodec is a call's codec on the wire.
type wireCodec uint8

const (
	wirePCMU wireCodec = iota
	wirePCMA
	wireG722
	wireOpus
)

var wireNames = [...]string{"PCMU", "PCMA", "G722", "opus"}

func (w wireCodec) String() string { return wireNames[w] }

// wideband codecs carry 16 kHz audio: they are decoded as packets arrive,
// buffered as 16 kHz PCM, and encoded by the pacer.
func (w wireCodec) wideband() bool { return w >= wireG722 }

// law is the G.711 law of a narrowband codec.
func (w wireCodec) law() law {
	if w == wirePCMA {
		return alaw
	}
	return ulaw
}

// clockRate is the RTP clock: 8000, also for G.722 (RFC 3551 §4.5.2), and
// 48000 for Opus (RFC 7587 §4.1).
func (w wireCodec) clockRate() int {
	if w == wireOpus {
		return 48000
	}
	return 8000
}

// tsPerFrame is the RTP timestamp step of a 20 ms packet.
func (w wireCodec) tsPerFrame() uint32 { return uint32(w.clockRate() / 50) }

// wireOf maps a negotiated codec to ours; Opus only when libopus is loaded.
func wireOf(c sdp.Codec) (wireCodec, error) {
	switch {
	case strings.EqualFold(c.Name, "G722") && c.ClockRate == 8000:
		return wireG722, nil
	case strings.EqualFold(c.Name, "opus") && c.ClockRate == 48000:
		if err := opus.Load(); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrCodec, err)
		}
		return wireOpus, nil
	}
	l, err := lawOf(c)
	if err != nil {
		return 0, err
	}
	if l == alaw {
		return wirePCMA, nil
	}
	return wirePCMU, nil
}

// Codecs returns the codecs this build can carry: G.722 and G.711 always,
// Opus when libopus loads.
func Codecs() []string {
	if opus.Load() == nil {
		return []string{"G722", "opus", "PCMU", "PCMA"}
	}
	return []string{"G722", "PCMU", "PCMA"}
}

// wbDecoder decodes a wideband codec's payloads to 16 kHz PCM as they
// arrive (on the RTP reader goroutine).
type wbDecoder interface {
	// decode returns the payload's samples, valid until the next call.
	decode(payload []byte) ([]int16, error)
	close()
}

// wbEncoder encodes one 20 ms frame of 16 kHz PCM (320 samples) for the
// pacer, audio and silence alike, so its state follows the stream.
type wbEncoder interface {
	encode(pcm []int16) ([]byte, error)
	close()
}

type g722Dec struct {
	d   *g722.Decoder
	out [2 * 120 * 8]int16 // 120 ms: the longest packet the jitter buffer takes
}

func (g *g722Dec) decode(p []byte) ([]int16, error) {
	if len(p) > len(g.out)/2 {
		return nil, fmt.Errorf("%w: G.722 payload of %d bytes", ErrPayload, len(p))
	}
	return g.out[:g.d.Decode(g.out[:], p)], nil
}
func (g *g722Dec) close() {}

type g722Enc struct {
	e   *g722.Encoder
	out [frameSamples]byte
}

func (g *g722Enc) encode(pcm []int16) ([]byte, error) { return g.out[:g.e.Encode(g.out[:], pcm)], nil }
func (g *g722Enc) close()                             {}

type opusDec struct{ d *opus.Decoder }

func (o opusDec) decode(p []byte) ([]int16, error) { return o.d.Decode(p, false, 0) }
func (o opusDec) close()                           { o.d.Close() }

type opusEnc struct{ e *opus.Encoder }

func (o opusEnc) encode(pcm []int16) ([]byte, error) { return o.e.Encode(pcm) }
func (o opusEnc) close()                             { o.e.Close() }

// opusOptions reads what the far end asks of our Opus stream from its fmtp
// (RFC 7587 §6.1): maxaveragebitrate caps the bitrate, useinbandfec=1 turns
// on FEC.
func opusOptions(fmtp string) opus.Options {
	var o opus.Options
	for _, p := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(k) {
		case "maxaveragebitrate":
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
				o.Bitrate = min(n, 32000)
			}
		case "useinbandfec":
			o.FEC = strings.TrimSpace(v) == "1"
		}
	}
	return o
}

// newWideband returns the decoder and encoder of a wideband codec.
func newWideband(w wireCodec, c sdp.Codec) (wbDecoder, wbEncoder, error) {
	if w == wireG722 {
		return &g722Dec{d: g722.NewDecoder()}, &g722Enc{e: g722.NewEncoder()}, nil
	}
	d, err := opus.NewDecoder()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCodec, err)
	}
	e, err := opus.NewEncoder(opusOptions(c.Fmtp))
	if err != nil {
		d.Close()
		return nil, nil, fmt.Errorf("%w: %w", ErrCodec, err)
	}
	return opusDec{d}, opusEnc{e}, nil
}
