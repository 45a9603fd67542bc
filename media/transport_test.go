package media

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/sdp"
	"github.com/pion/rtp"
)

// chanTransport is a Transport over channels: the test writes the far end's
// packets into in and reads what the stream sent from out.
type chanTransport struct {
	in        chan []byte
	out       chan []byte
	keep      bool // copy written packets into out (off: count only, for the allocation test)
	closed    chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex
	writes    int
}

func newChanTransport(keep bool) *chanTransport {
	return &chanTransport{in: make(chan []byte, 64), out: make(chan []byte, 4096), keep: keep, closed: make(chan struct{})}
}

func (c *chanTransport) ReadRTP(buf []byte) (int, error) {
	select {
	case p := <-c.in:
		return copy(buf, p), nil
	case <-c.closed:
		return 0, io.EOF
	}
}

func (c *chanTransport) WriteRTP(pkt []byte) error {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	if c.keep {
		select {
		case c.out <- append([]byte(nil), pkt...):
		default:
		}
	}
	return nil
}

func (c *chanTransport) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *chanTransport) sent() []*rtp.Packet {
	var out []*rtp.Packet
	for {
		select {
		case b := <-c.out:
			var p rtp.Packet
			if err := p.Unmarshal(b); err != nil {
				panic(err)
			}
			out = append(out, &p)
		default:
			return out
		}
	}
}

// webrtcNegotiated is what a WebRTC call settles: PCMU with the browser's
// payload type, no address (the transport knows where the far end is).
func webrtcNegotiated() sdp.Negotiated {
	return sdp.Negotiated{Codec: sdp.PCMU, Direction: sdp.SendRecv}
}

// TestStreamOnTransport: a stream on a Transport runs the phone call's media
// path — jitter buffer, chain, queue, pacer — with packets in and out through
// the transport, no ports and no RTCP; Close closes the transport and stops
// the reader.
func TestStreamOnTransport(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		in     string
	}{
		{"ulaw consumer", FormatULaw8k, "RTP(PCMU) -> Jitter+PLC(pitch) -> Sink"},
		{"pcm16k consumer", FormatPCM16k, "RTP(PCMU) -> Jitter+PLC(pitch) -> PCMU(decode) -> Resample(8000->16000) -> Sink"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer leakCheck(t)()
			w, m := manualWheel(t)
			tr := newChanTransport(true)
			s, err := NewStreamOn(tr, Options{Wheel: w})
			if err != nil {
				t.Fatal(err)
			}
			if s.LocalPort() != 0 || s.LocalAddr().IsValid() {
				t.Fatalf("a transport stream has no port: %d %v", s.LocalPort(), s.LocalAddr())
			}
			frames := make(chan Frame, 256)
			c := Consumer{Format: tc.format, Sink: func(f Frame) {
				f.Audio, f.PCM = append([]byte(nil), f.Audio...), nil
				select {
				case frames <- f:
				default:
				}
			}}
			if err := s.Start(webrtcNegotiated(), c); err != nil {
				t.Fatal(err)
			}
			if got := s.InboundChain(); got != tc.in {
				t.Fatalf("inbound chain %q, want %q", got, tc.in)
			}

			// The far end: 25 packets (0.5 s) of a 1 kHz tone, one per 20 ms.
			pcm := make([]int16, 25*160)
			(&audiotest.Tone{Rate: 8000, Freq: 1000, Amplitude: 0.3}).Fill(pcm)
			wire := make([]byte, len(pcm))
			g711.PCMToULaw(wire, pcm)
			for i := range 25 {
				p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(1000 + i),
					Timestamp: uint32(5000 + 160*i), SSRC: 0xbeef}, Payload: wire[160*i : 160*(i+1)]}
				b, _ := p.Marshal()
				tr.in <- b
				// The reader goroutine takes the packet; wait until the stream counted it.
				deadline := time.Now().Add(5 * time.Second)
				for s.Stats().PacketsReceived != uint64(i+1) {
					if time.Now().After(deadline) {
						t.Fatalf("packet %d not received", i)
					}
					time.Sleep(time.Millisecond) // polling a counter another goroutine sets
				}
				m.Advance(20 * time.Millisecond)
			}
			m.Advance(200 * time.Millisecond) // play out what the jitter buffer holds

			var got []Frame
			for len(frames) > 0 {
				got = append(got, <-frames)
			}
			if len(got) < 24 {
				t.Fatalf("%d frames reached the consumer, want about 25", len(got))
			}
			var mono []int16
			for _, f := range got {
				if f.Concealed {
					continue
				}
				switch tc.format {
				case FormatPCM16k:
					for i := 0; i+1 < len(f.Audio); i += 2 {
						mono = append(mono, int16(binary.LittleEndian.Uint16(f.Audio[i:])))
					}
				default:
					p := make([]int16, len(f.Audio))
					g711.ULawToPCM(p, f.Audio)
					mono = append(mono, p...)
				}
			}
			rate := 8000
			if tc.format == FormatPCM16k {
				rate = 16000
			}
			if f := audiotest.DominantFrequency(mono, float64(rate)); f < 950 || f > 1050 {
				t.Fatalf("the tone came through at %.0f Hz, want 1000", f)
			}

			// Outbound: the pacer sent a packet every 20 ms through the transport.
			if err := s.Play(tone(10*160, 440)); err != nil && tc.format == FormatULaw8k {
				t.Fatal(err)
			}
			m.Advance(400 * time.Millisecond)
			out := tr.sent()
			if len(out) < 40 {
				t.Fatalf("%d packets sent over the transport, want one per 20 ms", len(out))
			}
			checkContinuity(t, out)
			for _, p := range out {
				if p.PayloadType != 0 || len(p.Payload) != 160 {
					t.Fatalf("sent pt %d len %d", p.PayloadType, len(p.Payload))
				}
			}

			st := s.Stats()
			if st.PacketsReceived != 25 || st.CumulativeLost != 0 || st.PacketsSent != uint64(len(out)) || st.RTCPSent != 0 {
				t.Fatalf("stats: received %d lost %d sent %d (transport %d) rtcp %d",
					st.PacketsReceived, st.CumulativeLost, st.PacketsSent, len(out), st.RTCPSent)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-tr.closed:
			default:
				t.Fatal("Close did not close the transport")
			}
			if err := s.Play([]byte{1}); !errors.Is(err, ErrClosed) {
				t.Fatalf("Play after Close: %v", err)
			}
		})
	}
}

// TestStreamOnTransportCloseBeforeStart: a stream that never started closes
// its transport too.
func TestStreamOnTransportCloseBeforeStart(t *testing.T) {
	defer leakCheck(t)()
	w, _ := manualWheel(t)
	tr := newChanTransport(true)
	s, err := NewStreamOn(tr, Options{Wheel: w})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case <-tr.closed:
	default:
		t.Fatal("transport not closed")
	}
	if _, err := NewStreamOn(nil, Options{Wheel: w}); err == nil {
		t.Fatal("nil transport accepted")
	}
	if _, err := NewStreamOn(tr, Options{}); err == nil {
		t.Fatal("no wheel accepted")
	}
}

// TestTransportPacketPathDoesNotAllocate: the per-packet path of a transport
// stream (RTP in, jitter buffer, playout, echo Play, pacer, WriteRTP) does not
// allocate.
func TestTransportPacketPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, format := range []Format{FormatULaw8k, FormatPCM16k} {
		t.Run(format.String(), func(t *testing.T) {
			w, m := manualWheel(t)
			tr := newChanTransport(false)
			s, err := NewStreamOn(tr, Options{Wheel: w})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Start(webrtcNegotiated(), Echo(s, format)); err != nil {
				t.Fatal(err)
			}
			packetPathAllocFree(t, s, w, m, netipZero, 0)
			tr.mu.Lock()
			writes := tr.writes
			tr.mu.Unlock()
			if st := s.Stats(); st.Frames < 500 || writes < 500 {
				t.Fatalf("frames %d, transport writes %d", st.Frames, writes)
			}
		})
	}
}
