package media

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/jitter"
	"github.com/cxco/gateway/media/resample"
)

// Frame is one 20 ms frame of inbound audio handed to the consumer.
type Frame struct {
	// Audio is the frame in the consumer's format: 160 bytes of µ-law for
	// FormatULaw8k, 640 bytes of 16-bit little-endian PCM for FormatPCM16k.
	// It is only valid during the Sink call.
	Audio []byte
	// PCM is the same audio as samples for FormatPCM16k (nil otherwise),
	// also only valid during the call.
	PCM []int16
	// Timestamp is the RTP timestamp of the frame's first sample.
	Timestamp uint32
	// Arrival is when the newest RTP packet with audio in this frame was
	// read; zero for a frame that is entirely concealment.
	Arrival time.Time
	// Due is when the jitter buffer released the frame (its playout time):
	// Due - Arrival is the time the newest audio in it spent in the buffer.
	Due time.Time
	// Concealed is set when part of the frame was lost and concealed.
	Concealed bool
	// Shard is the wheel shard whose goroutine runs the Sink call: work the
	// frame calls for that can wait until the end of the tick (a write to
	// the provider) goes to Shard.Defer, so that the tick's other playouts
	// do not wait for it. Nil when the frame is not handed over on a shard.
	Shard *clock.Shard
}

// Consumer is what a call does with its inbound audio and digits.
type Consumer struct {
	// Format of the frames handed to Sink and of the audio given to Play.
	Format Format
	// Sink receives every inbound 20 ms frame at its playout time. It runs
	// on the wheel's shard goroutine: it must not block (copy into your own
	// bounded queue) and must not call Close.
	Sink func(Frame)
	// OnDigit receives each RFC 4733 digit once. It runs on the reader
	// goroutine, which on Linux reads other calls' packets too: it must not
	// block, nor call the stream's Close.
	OnDigit func(Digit)
}

// work holds the buffers one frame passes through; the playout callback owns
// it (callbacks of one shard never run concurrently). Only those the call's
// chain uses are allocated (buildInbound): a µ-law call to a µ-law consumer
// needs wire alone, 160 bytes of the 2.5 KiB a 16 kHz chain needs.
type work struct {
	cur   []byte  // current µ-law/A-law bytes
	wire  []byte  // G.711: the jitter buffer's frame (160)
	law2  []byte  // transcode, encode (160)
	pcm8  []int16 // decode, downsample, encode (160)
	pcm16 []int16 // wideband: the jitter buffer's frame; upsample, downsample (320)
	le    []byte  // a pcm_16000 consumer's bytes (640)
	frame Frame
}

// stage is one step of a media chain.
type stage interface {
	process(w *work)
	String() string
}

// transcode converts between the laws by table.
type transcode struct{ from, to law }

func (t transcode) process(w *work) {
	if t.from == alaw {
		g711.ALawToULaw(w.law2, w.cur)
	} else {
		g711.ULawToALaw(w.law2, w.cur)
	}
	w.cur = w.law2
}
func (t transcode) String() string { return t.from.String() + "->" + t.to.String() }

// decode converts G.711 to 8 kHz PCM.
type decode struct{ l law }

func (d decode) process(w *work) { d.l.decode(w.pcm8, w.cur) }
func (d decode) String() string  { return d.l.String() + "(decode)" }

// upsample converts 8 kHz PCM to 16 kHz.
type upsample struct{ r *resample.Up2 }

func (u upsample) process(w *work) { u.r.Process(w.pcm16, w.pcm8) }
func (u upsample) String() string  { return u.r.String() }

// downsample converts 16 kHz PCM to 8 kHz (a wideband call to a ulaw_8000
// consumer).
type downsample struct{ r *resample.Down2 }

func (d downsample) process(w *work) { d.r.Process(w.pcm8, w.pcm16) }
func (d downsample) String() string  { return d.r.String() }

// encode converts 8 kHz PCM to G.711.
type encode struct{ l law }

func (e encode) process(w *work) {
	e.l.encode(w.law2, w.pcm8)
	w.cur = w.law2
}
func (e encode) String() string { return e.l.String() + "(encode)" }

// sink hands the frame to the consumer.
type sink struct {
	format Format
	fn     func(Frame)
}

func (s sink) process(w *work) {
	f := &w.frame
	if s.format == FormatPCM16k {
		for i, v := range w.pcm16 {
			binary.LittleEndian.PutUint16(w.le[2*i:], uint16(v))
		}
		f.Audio = w.le
		f.PCM = w.pcm16
	} else {
		f.Audio = w.cur
		f.PCM = nil
	}
	if s.fn != nil {
		s.fn(*f)
	}
}
func (s sink) String() string { return "Sink" }

// inboundChain is the path of a popped jitter-buffer frame to the consumer:
// G.711 bytes in w.wire, or for a wideband codec 16 kHz PCM in w.pcm16.
type inboundChain struct {
	codec   wireCodec
	conceal jitter.Concealment
	stages  []stage
}

// buildInbound builds the inbound chain: the wire codec, then whatever the
// consumer's format needs, then the sink. A wideband codec was decoded before
// the jitter buffer; its 16 kHz PCM goes to a pcm_16000 consumer as it is. It
// allocates the buffers of w that the chain uses.
func buildInbound(codec wireCodec, conceal jitter.Concealment, c Consumer, w *work) inboundChain {
	const n = jitter.FrameSamples
	var st []stage
	*w = work{}
	if codec.wideband() {
		w.pcm16 = make([]int16, 2*n)
	} else {
		w.wire = make([]byte, n)
	}
	switch {
	case codec.wideband() && c.Format != FormatPCM16k:
		st = append(st, downsample{resample.NewDown2()}, encode{ulaw})
		w.pcm8, w.law2 = make([]int16, n), make([]byte, n)
	case codec.wideband():
	case c.Format == FormatPCM16k:
		st = append(st, decode{codec.law()}, upsample{resample.NewUp2()})
		w.pcm8, w.pcm16 = make([]int16, n), make([]int16, 2*n)
	case codec == wirePCMA:
		st = append(st, transcode{alaw, ulaw})
		w.law2 = make([]byte, n)
	}
	if c.Format == FormatPCM16k {
		w.le = make([]byte, 4*n)
	}
	st = append(st, sink{c.Format, c.Sink})
	return inboundChain{codec: codec, conceal: conceal, stages: st}
}

func (c inboundChain) run(w *work) {
	w.cur = w.wire
	for _, s := range c.stages {
		s.process(w)
	}
}

func (c inboundChain) String() string {
	var b strings.Builder
	if c.codec.wideband() {
		b.WriteString("RTP(" + c.codec.String() + ") -> " + c.codec.String() + "(decode) -> Jitter(16kHz)+PLC(" + c.conceal.String() + ")")
	} else {
		b.WriteString("RTP(" + c.codec.String() + ") -> Jitter+PLC(" + c.conceal.String() + ")")
	}
	for _, s := range c.stages {
		b.WriteString(" -> " + s.String())
	}
	return b.String()
}

// outbound stages: Play input is cut into 20 ms frames, converted to the wire
// codec (G.711) or to 16 kHz PCM (a wideband codec, which the pacer encodes)
// and queued for the pacer.
type outboundChain struct {
	format Format
	codec  wireCodec
	wire   law
	down   *resample.Down2
	up     *resample.Up2
	// reframing buffer (input format), partial frame
	part  []byte
	npart int
	// conversion buffers, allocated only for the conversions the call needs
	// (none for a µ-law agent on a PCMU call; a pcm_16000 agent on G.711
	// converts a frame downStep samples at a time)
	pcm16 []int16
	pcm8  []int16
	wireF []byte
}

// downStep is how many 8 kHz samples of a pcm_16000 frame are converted to
// G.711 at a time (a fifth of a frame): 192 bytes of buffers, not 960.
const downStep = jitter.FrameSamples / 5

func buildOutbound(format Format, codec wireCodec) *outboundChain {
	const n = jitter.FrameSamples
	c := &outboundChain{format: format, codec: codec, wire: codec.law(), part: make([]byte, format.frameBytes())}
	switch {
	case codec.wideband() && format != FormatPCM16k:
		c.up = resample.NewUp2()
		c.pcm8, c.pcm16, c.wireF = make([]int16, n), make([]int16, 2*n), make([]byte, 4*n)
	case codec.wideband():
	case format == FormatPCM16k:
		c.down = resample.NewDown2()
		c.pcm8, c.pcm16, c.wireF = make([]int16, downStep), make([]int16, 2*downStep), make([]byte, n)
	case c.wire == alaw:
		c.wireF = make([]byte, n)
	}
	return c
}

// queuedBytes is the size of a queued frame: G.711 bytes, or 16 kHz
// little-endian PCM for a wideband codec.
func (c *outboundChain) queuedBytes() int {
	if c.codec.wideband() {
		return 4 * jitter.FrameSamples
	}
	return jitter.FrameSamples
}

// frame converts one whole frame in the input format to what is queued.
func (c *outboundChain) frame(in []byte) []byte {
	if c.codec.wideband() {
		if c.format == FormatPCM16k {
			return in
		}
		g711.ULawToPCM(c.pcm8, in)
		c.up.Process(c.pcm16, c.pcm8)
		for i, v := range c.pcm16 {
			binary.LittleEndian.PutUint16(c.wireF[2*i:], uint16(v))
		}
		return c.wireF[:4*jitter.FrameSamples]
	}
	if c.format == FormatPCM16k {
		// The converter streams (its output does not depend on how its
		// input is cut), and G.711 encodes sample by sample.
		for k := 0; k < jitter.FrameSamples; k += downStep {
			for i := range c.pcm16 {
				c.pcm16[i] = int16(binary.LittleEndian.Uint16(in[4*k+2*i:]))
			}
			c.down.Process(c.pcm8, c.pcm16)
			c.wire.encode(c.wireF[k:k+downStep], c.pcm8)
		}
		return c.wireF[:jitter.FrameSamples]
	}
	if c.wire == alaw {
		g711.ULawToALaw(c.wireF, in)
		return c.wireF[:jitter.FrameSamples]
	}
	return in
}

// pad completes a partial frame with silence and converts it; nil if there
// is no partial frame.
func (c *outboundChain) pad() []byte {
	if c.npart == 0 {
		return nil
	}
	fill := byte(g711.ULawSilence)
	if c.format == FormatPCM16k {
		fill = 0
	}
	n := c.format.frameBytes()
	for i := c.npart; i < n; i++ {
		c.part[i] = fill
	}
	c.npart = 0
	return c.frame(c.part[:n])
}

func (c *outboundChain) reset() {
	c.npart = 0
	if c.down != nil {
		c.down.Reset()
	}
	if c.up != nil {
		c.up.Reset()
	}
}

func (c *outboundChain) String() string {
	var b strings.Builder
	b.WriteString("Play(" + c.format.String() + ") -> Frame(20ms)")
	if c.codec.wideband() {
		if c.up != nil {
			b.WriteString(" -> PCMU(decode) -> " + c.up.String())
		}
		b.WriteString(" -> Queue -> Pacer -> " + c.codec.String() + "(encode) -> RTP(" + c.codec.String() + ")")
		return b.String()
	}
	switch {
	case c.format == FormatPCM16k:
		b.WriteString(" -> " + c.down.String() + " -> " + c.wire.String() + "(encode)")
	case c.wire == alaw:
		b.WriteString(" -> PCMU->PCMA")
	}
	b.WriteString(" -> Queue -> Pacer -> RTP(" + c.wire.String() + ")")
	return b.String()
}
