//go:build !noopus

package opus

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// lib holds libopus's entry points once loaded.
var lib struct {
	once    sync.Once
	err     error
	version string

	encoderCreate, encoderDestroy, encode, encoderCtl uintptr
	decoderCreate, decoderDestroy, decode             uintptr
}

// names of the shared library to try, the versioned one first (the
// unversioned name exists only with the -dev package).
var libNames = []string{"libopus.so.0", "libopus.so"}

// Load loads libopus once and reports whether Opus is available.
func Load() error {
	lib.once.Do(func() {
		var h uintptr
		var err error
		for _, n := range libNames {
			if h, err = purego.Dlopen(n, purego.RTLD_NOW|purego.RTLD_LOCAL); err == nil {
				break
			}
		}
		if err != nil {
			lib.err = fmt.Errorf("%w: %v (install libopus0)", ErrUnavailable, err)
			return
		}
		for _, f := range []struct {
			p    *uintptr
			name string
		}{
			{&lib.encoderCreate, "opus_encoder_create"}, {&lib.encoderDestroy, "opus_encoder_destroy"},
			{&lib.encode, "opus_encode"}, {&lib.encoderCtl, "opus_encoder_ctl"},
			{&lib.decoderCreate, "opus_decoder_create"}, {&lib.decoderDestroy, "opus_decoder_destroy"},
			{&lib.decode, "opus_decode"},
		} {
			if *f.p, err = purego.Dlsym(h, f.name); err != nil {
				lib.err = fmt.Errorf("%w: %s: %v", ErrUnavailable, f.name, err)
				return
			}
		}
		var version func() string
		purego.RegisterLibFunc(&version, h, "opus_get_version_string")
		lib.version = version()
	})
	return lib.err
}

// Version returns libopus's version string ("libopus 1.3.1"), or "" when it
// is not loaded.
func Version() string {
	if Load() != nil {
		return ""
	}
	return lib.version
}

// Encoder is one direction's Opus encoder: 16 kHz mono PCM in.
//
// The buffers libopus reads and writes are the encoder's own, allocated with
// it on the heap (which does not move), so a call passes their addresses in a
// prepared argument list: no allocation per frame.
type Encoder struct {
	st   uintptr
	in   []int16
	out  []byte
	args [5]uintptr
}

// NewEncoder returns a VoIP encoder for 16 kHz mono speech.
func NewEncoder(o Options) (*Encoder, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	o.defaults()
	e := new(int32)
	st, _, _ := purego.SyscallN(lib.encoderCreate, SampleRate, 1, applicationVoIP, uintptr(unsafe.Pointer(e)))
	if *e != 0 || st == 0 {
		return nil, fmt.Errorf("opus_encoder_create: %w", Error(*e))
	}
	enc := &Encoder{st: st, in: make([]int16, MaxFrameSamples), out: make([]byte, MaxPacket)}
	for _, c := range [][2]int{
		{setBitrate, o.Bitrate}, {setComplexity, o.Complexity}, {setSignal, signalVoice},
		{setMaxBandwidth, bandwidthWideband}, {setInbandFEC, b2i(o.FEC)}, {setPacketLossPerc, o.LossPercent},
	} {
		if r, _, _ := purego.SyscallN(lib.encoderCtl, st, uintptr(c[0]), uintptr(c[1])); int32(r) != 0 {
			enc.Close()
			return nil, fmt.Errorf("opus_encoder_ctl(%d, %d): %w", c[0], c[1], Error(int32(r)))
		}
	}
	return enc, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Encode codes one frame of pcm (2.5, 5, 10, 20, 40 or 60 ms at 16 kHz: 320
// samples for 20 ms) and returns the packet, valid until the next Encode.
func (e *Encoder) Encode(pcm []int16) ([]byte, error) {
	if e.st == 0 {
		return nil, ErrClosed
	}
	if len(pcm) == 0 || len(pcm) > len(e.in) {
		return nil, Error(-1)
	}
	n := copy(e.in, pcm)
	e.args = [5]uintptr{e.st, uintptr(unsafe.Pointer(&e.in[0])), uintptr(n), uintptr(unsafe.Pointer(&e.out[0])), uintptr(len(e.out))}
	r, _, _ := purego.SyscallN(lib.encode, e.args[:]...)
	runtime.KeepAlive(e)
	if k := int32(r); k < 0 {
		return nil, Error(k)
	}
	return e.out[:int32(r)], nil
}

// Close frees the encoder; it is safe to call twice.
func (e *Encoder) Close() {
	if e.st != 0 {
		purego.SyscallN(lib.encoderDestroy, e.st)
		e.st = 0
	}
}

// Decoder is one direction's Opus decoder: 16 kHz mono PCM out. Like the
// Encoder, it owns the buffers libopus uses.
type Decoder struct {
	st   uintptr
	in   []byte
	out  []int16
	args [6]uintptr
}

// NewDecoder returns a decoder to 16 kHz mono.
func NewDecoder() (*Decoder, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	e := new(int32)
	st, _, _ := purego.SyscallN(lib.decoderCreate, SampleRate, 1, uintptr(unsafe.Pointer(e)))
	if *e != 0 || st == 0 {
		return nil, fmt.Errorf("opus_decoder_create: %w", Error(*e))
	}
	return &Decoder{st: st, in: make([]byte, MaxPacket*6), out: make([]int16, MaxFrameSamples)}, nil
}

// Decode decodes one packet and returns its samples, valid until the next
// Decode. With fec, it decodes the packet's in-band FEC data instead: the
// frame before it, which was lost, samples long. A nil packet conceals one
// lost frame of samples. samples is ignored otherwise (0 will do).
func (d *Decoder) Decode(packet []byte, fec bool, samples int) ([]int16, error) {
	if d.st == 0 {
		return nil, ErrClosed
	}
	if len(packet) > len(d.in) {
		return nil, Error(-4)
	}
	want := len(d.out)
	if fec || len(packet) == 0 {
		if samples <= 0 || samples > len(d.out) {
			return nil, Error(-1)
		}
		want = samples
	}
	var data uintptr
	n := copy(d.in, packet)
	if n > 0 {
		data = uintptr(unsafe.Pointer(&d.in[0]))
	}
	d.args = [6]uintptr{d.st, data, uintptr(n), uintptr(unsafe.Pointer(&d.out[0])), uintptr(want), uintptr(b2i(fec))}
	r, _, _ := purego.SyscallN(lib.decode, d.args[:]...)
	runtime.KeepAlive(d)
	if k := int32(r); k < 0 {
		return nil, Error(k)
	}
	return d.out[:int32(r)], nil
}

// Close frees the decoder; it is safe to call twice.
func (d *Decoder) Close() {
	if d.st != 0 {
		purego.SyscallN(lib.decoderDestroy, d.st)
		d.st = 0
	}
}
