package media

import (
	"encoding/binary"
	"strings"
	"time"

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
}

// Consumer is what a call does with its inbound audio and digits.
type Consumer struct {
	// Format of the frames handed to Sink and of the audio given to Play.
	Format Format
	// Sink receives every inbound 20 ms frame at its playout time. It runs
	// on the wheel's shard goroutine: it must not block (copy into your own
	// bounded queue) and must not call Close.
	Sink func(Frame)
	// OnDigit receives each RFC 4733 digit once. It runs on the stream's
	// reader goroutine and must not block.
	OnDigit func(Digit)
}

// work holds the buffers one frame passes through; the playout callback owns
// it (callbacks of one shard never run concurrently).
type work struct {
	cur   []byte // current µ-law/A-law bytes
	wire  [jitter.FrameSamples]byte
	law2  [jitter.FrameSamples]byte
	pcm8  [jitter.FrameSamples]int16
	pcm16 [2 * jitter.FrameSamples]int16
	le    [4 * jitter.FrameSamples]byte
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
		g711.ALawToULaw(w.law2[:], w.cur)
	} else {
		g711.ULawToALaw(w.law2[:], w.cur)
	}
	w.cur = w.law2[:]
}
func (t transcode) String() string { return t.from.String() + "->" + t.to.String() }

// decode converts G.711 to 8 kHz PCM.
type decode struct{ l law }

func (d decode) process(w *work) { d.l.decode(w.pcm8[:], w.cur) }
func (d decode) String() string  { return d.l.String() + "(decode)" }

// upsample converts 8 kHz PCM to 16 kHz.
type upsample struct{ r *resample.Up2 }

func (u upsample) process(w *work) { u.r.Process(w.pcm16[:], w.pcm8[:]) }
func (u upsample) String() string  { return u.r.String() }

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
		f.Audio = w.le[:]
		f.PCM = w.pcm16[:]
	} else {
		f.Audio = w.cur
		f.PCM = nil
	}
	if s.fn != nil {
		s.fn(*f)
	}
}
func (s sink) String() string { return "Sink" }

// inboundChain is the path of a popped jitter-buffer frame to the consumer.
type inboundChain struct {
	wire   law
	stages []stage
}

// buildInbound builds the inbound chain: the wire codec, then whatever the
// consumer's format needs, then the sink.
func buildInbound(wire law, c Consumer) inboundChain {
	var st []stage
	switch c.Format {
	case FormatPCM16k:
		st = append(st, decode{wire}, upsample{resample.NewUp2()})
	default:
		if wire == alaw {
			st = append(st, transcode{alaw, ulaw})
		}
	}
	st = append(st, sink{c.Format, c.Sink})
	return inboundChain{wire: wire, stages: st}
}

func (c inboundChain) run(w *work) {
	w.cur = w.wire[:]
	for _, s := range c.stages {
		s.process(w)
	}
}

func (c inboundChain) String() string {
	var b strings.Builder
	b.WriteString("RTP(" + c.wire.String() + ") -> Jitter")
	for _, s := range c.stages {
		b.WriteString(" -> " + s.String())
	}
	return b.String()
}

// outbound stages: Play input is cut into 20 ms frames, converted to the wire
// codec and queued for the pacer.
type outboundChain struct {
	format Format
	wire   law
	down   *resample.Down2
	// reframing buffer (input format), partial frame
	part  [4 * jitter.FrameSamples]byte
	npart int
	pcm16 [2 * jitter.FrameSamples]int16
	pcm8  [jitter.FrameSamples]int16
	wireF [jitter.FrameSamples]byte
}

func buildOutbound(format Format, wire law) *outboundChain {
	c := &outboundChain{format: format, wire: wire}
	if format == FormatPCM16k {
		c.down = resample.NewDown2()
	}
	return c
}

// frame converts one whole frame in the input format to the wire codec.
func (c *outboundChain) frame(in []byte) []byte {
	if c.format == FormatPCM16k {
		for i := range c.pcm16 {
			c.pcm16[i] = int16(binary.LittleEndian.Uint16(in[2*i:]))
		}
		c.down.Process(c.pcm8[:], c.pcm16[:])
		c.wire.encode(c.wireF[:], c.pcm8[:])
		return c.wireF[:]
	}
	if c.wire == alaw {
		g711.ULawToALaw(c.wireF[:], in)
		return c.wireF[:]
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
}

func (c *outboundChain) String() string {
	var b strings.Builder
	b.WriteString("Play(" + c.format.String() + ") -> Frame(20ms)")
	switch {
	case c.format == FormatPCM16k:
		b.WriteString(" -> " + c.down.String() + " -> " + c.wire.String() + "(encode)")
	case c.wire == alaw:
		b.WriteString(" -> PCMU->PCMA")
	}
	b.WriteString(" -> Queue -> Pacer -> RTP(" + c.wire.String() + ")")
	return b.String()
}
