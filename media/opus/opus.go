// Package opus is the Opus codec (RFC 6716) for calls, through libopus, which
// is loaded at run time (libopus.so.0, Debian's libopus0) rather than linked:
// the gateway builds and runs without it, and offers Opus only where the
// library loads. Load says whether it did; the banner prints the answer.
//
// A call uses one Encoder and one Decoder at 16 kHz mono (the widest the
// voice-AI providers take): SDP always says opus/48000/2 (RFC 7587 §7), but
// the decoder converts whatever the far end sends (any bandwidth, mono or
// stereo) to 16 kHz mono, and the encoder's 16 kHz input needs no wider
// bandwidth. Encoder and Decoder are not safe for concurrent use and must be
// closed: their state lives in C memory.
//
// Build with -tags noopus for a binary that never loads a shared library (a
// fully static one: with libopus loaded at run time the binary is linked
// against the C library's dynamic loader).
package opus

import (
	"errors"
	"fmt"
)

// Errors.
var (
	// ErrUnavailable means libopus could not be loaded.
	ErrUnavailable = errors.New("opus: libopus is not available")
	// ErrClosed means the encoder or decoder was closed.
	ErrClosed = errors.New("opus: closed")
)

// Error is an error code of libopus.
type Error int32

func (e Error) Error() string {
	names := map[Error]string{-1: "bad argument", -2: "buffer too small", -3: "internal error",
		-4: "invalid packet", -5: "unimplemented", -6: "invalid state", -7: "allocation failed"}
	if n, ok := names[e]; ok {
		return "opus: " + n
	}
	return fmt.Sprintf("opus: error %d", int32(e))
}

// Options of an encoder. Zero values take the defaults.
type Options struct {
	// Bitrate in bit/s; default 32000 (wideband speech with room for FEC).
	// The far end's maxaveragebitrate (RFC 7587 §6.1) caps it.
	Bitrate int
	// Complexity 0..10; default 5: for speech at 16 kHz the quality
	// difference to 10 is small and the encoder costs about half.
	Complexity int
	// FEC turns on in-band forward error correction (the far end said
	// useinbandfec=1); LossPercent is the loss it is tuned for (default 5
	// with FEC).
	FEC         bool
	LossPercent int
}

func (o *Options) defaults() {
	if o.Bitrate <= 0 {
		o.Bitrate = 32000
	}
	o.Bitrate = min(max(o.Bitrate, 6000), 510000)
	if o.Complexity <= 0 || o.Complexity > 10 {
		o.Complexity = 5
	}
	if o.FEC && o.LossPercent <= 0 {
		o.LossPercent = 5
	}
	o.LossPercent = min(max(o.LossPercent, 0), 100)
}

// libopus constants (opus_defines.h).
const (
	applicationVoIP    = 2048
	signalVoice        = 3001
	setBitrate         = 4002
	setComplexity      = 4010
	setInbandFEC       = 4012
	setPacketLossPerc  = 4014
	setSignal          = 4024
	setMaxBandwidth    = 4004
	bandwidthWideband  = 1103
	MaxPacket          = 1275     // the largest Opus frame (RFC 6716 §3.2.1)
	maxFrameSamples16k = 120 * 16 // 120 ms at 16 kHz: the longest packet
	SampleRate         = 16000
)

// MaxFrameSamples is the most samples one packet decodes to at 16 kHz.
const MaxFrameSamples = maxFrameSamples16k
