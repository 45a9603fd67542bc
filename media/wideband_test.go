package media

import (
	"bytes"
	"encoding/binary"
	"math"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/g722"
	"github.com/cxco/gateway/media/opus"
	"github.com/cxco/gateway/media/sdp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// farCodec is the far end's encoder and decoder of a wideband codec: our
// G.722, libopus for Opus.
type farCodec struct {
	enc func(pcm []int16) []byte
	dec func(p []byte) []int16
	ts  uint32 // RTP timestamp step of 20 ms
}

func newFarCodec(t *testing.T, name string) farCodec {
	switch name {
	case "G722":
		e, d := g722.NewEncoder(), g722.NewDecoder()
		return farCodec{
			enc: func(pcm []int16) []byte { b := make([]byte, len(pcm)/2); e.Encode(b, pcm); return b },
			dec: func(p []byte) []int16 { o := make([]int16, 2*len(p)); d.Decode(o, p); return o },
			ts:  160,
		}
	case "opus":
		e, err := opus.NewEncoder(opus.Options{})
		if err != nil {
			t.Fatal(err)
		}
		d, err := opus.NewDecoder()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close(); d.Close() })
		return farCodec{
			enc: func(pcm []int16) []byte { p, _ := e.Encode(pcm); return append([]byte(nil), p...) },
			dec: func(p []byte) []int16 { o, _ := d.Decode(p, false, 0); return append([]int16(nil), o...) },
			ts:  960,
		}
	}
	t.Fatalf("codec %s", name)
	return farCodec{}
}

// collector keeps what a Sink receives, as 16 kHz or 8 kHz PCM, leaving out
// concealed frames: a busy machine delays the test's sender, and what the
// jitter buffer makes up for it is not the codec's audio.
type collector struct {
	mu     sync.Mutex
	pcm    []int16
	frames int // frames seen, concealed ones too
	want   int // frames
	full   chan struct{}
}

// newCollector waits for want frames (20 ms each).
func newCollector(want int) *collector { return &collector{want: want, full: make(chan struct{})} }

func (c *collector) sink(f Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frames >= c.want {
		return
	}
	c.frames++
	if c.frames == c.want {
		defer close(c.full)
	}
	if f.Concealed {
		return
	}
	if f.PCM != nil {
		c.pcm = append(c.pcm, f.PCM...)
	} else {
		var x [160]int16
		g711.ULawToPCM(x[:], f.Audio)
		c.pcm = append(c.pcm, x[:]...)
	}
}

// TestWidebandCall runs a G.722 and an Opus call both ways between a far end
// on a UDP socket and a stream, for a pcm_16000 consumer and a ulaw_8000 one.
// The 16 kHz consumer hears a 5 kHz tone the caller sends and the caller
// hears a 6 kHz tone the consumer plays: neither could pass an 8 kHz stage,
// so the audio never went through one. The 8 kHz consumer gets 1 kHz both
// ways. Frequencies and levels are measured on each far side.
func TestWidebandCall(t *testing.T) {
	defer leakCheck(t)()
	if err := opus.Load(); err != nil {
		t.Fatalf("%v: the tests need libopus0", err)
	}
	cases := []struct {
		codec          sdp.Codec
		format         Format
		in, out        float64 // tone from the caller, tone to the caller
		inChain, chain string
	}{
		{sdp.G722, FormatPCM16k, 5000, 6000, "RTP(G722) -> G722(decode) -> Jitter(16kHz)+PLC(pitch) -> Sink",
			"Play(pcm_16000) -> Frame(20ms) -> Queue -> Pacer -> G722(encode) -> RTP(G722)"},
		{sdp.Opus, FormatPCM16k, 5000, 6000, "RTP(opus) -> opus(decode) -> Jitter(16kHz)+PLC(pitch) -> Sink",
			"Play(pcm_16000) -> Frame(20ms) -> Queue -> Pacer -> opus(encode) -> RTP(opus)"},
		{sdp.G722, FormatULaw8k, 1000, 1000, "RTP(G722) -> G722(decode) -> Jitter(16kHz)+PLC(pitch) -> Resample(16000->8000) -> PCMU(encode) -> Sink",
			"Play(ulaw_8000) -> Frame(20ms) -> PCMU(decode) -> Resample(8000->16000) -> Queue -> Pacer -> G722(encode) -> RTP(G722)"},
		{sdp.Opus, FormatULaw8k, 1000, 1000, "RTP(opus) -> opus(decode) -> Jitter(16kHz)+PLC(pitch) -> Resample(16000->8000) -> PCMU(encode) -> Sink",
			"Play(ulaw_8000) -> Frame(20ms) -> PCMU(decode) -> Resample(8000->16000) -> Queue -> Pacer -> opus(encode) -> RTP(opus)"},
	}
	for _, tc := range cases {
		t.Run(tc.codec.Name+" "+tc.format.String(), func(t *testing.T) {
			far := newFarCodec(t, tc.codec.Name)
			ph := newPhone(t)
			s, err := NewStream(testPool(t), loopback, Options{Wheel: realWheel(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			rate := 16000
			if tc.format == FormatULaw8k {
				rate = 8000
			}
			got := newCollector(70) // of the 75 frames sent
			n := sdp.Negotiated{Codec: tc.codec, Remote: ph.addr(), Direction: sdp.SendRecv}
			if err := s.Start(n, Consumer{Format: tc.format, Sink: got.sink}); err != nil {
				t.Fatal(err)
			}
			if s.InboundChain() != tc.inChain || s.OutboundChain() != tc.chain {
				t.Errorf("chains\n%s\n%s", s.InboundChain(), s.OutboundChain())
			}
			// The consumer plays 1.5 s at once; the pacer sends it.
			play := audiotest.Sine(rate, tc.out, -12, 1500*time.Millisecond)
			if tc.format == FormatPCM16k {
				if err := s.PlayPCM(play); err != nil {
					t.Fatal(err)
				}
			} else {
				b := make([]byte, len(play))
				g711.PCMToULaw(b, play)
				if err := s.Play(b); err != nil {
					t.Fatal(err)
				}
			}
			// The caller sends 1.5 s on real time (audiotest.Pace) and reads
			// what comes until it has sent it all and heard 1 s with 0.5 s of
			// tone in it.
			send := audiotest.Sine(16000, tc.in, -12, 1500*time.Millisecond)
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				audiotest.Pace(len(send)/320, 20*time.Millisecond, func(i int) {
					p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: tc.codec.PayloadType, SequenceNumber: uint16(i),
						Timestamp: uint32(i) * far.ts, SSRC: 77}, Payload: far.enc(send[i*320 : (i+1)*320])}
					b, _ := p.Marshal()
					if _, err := ph.conn.WriteToUDPAddrPort(b, s.LocalAddr()); err != nil {
						t.Errorf("packet %d: %v", i, err)
					}
				})
			}()
			defer func() { <-sent }() // before the test ends: the sender may call t.Errorf
			var heard []int16
			heardTone := func() bool {
				lo, _ := audiotest.LoudSpan(heard, 320, -40)
				return len(heard) >= 16000 && lo >= 0 && lo+8000 <= len(heard)
			}
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				if chanClosed(sent) && heardTone() {
					break
				}
				pkt, ok := ph.recv(20 * time.Millisecond)
				if !ok {
					continue
				}
				if pkt.PayloadType != tc.codec.PayloadType {
					t.Fatalf("payload type %d", pkt.PayloadType)
				}
				heard = append(heard, far.dec(pkt.Payload)...)
			}
			<-sent
			select {
			case <-got.full:
			case <-time.After(5 * time.Second):
				got.mu.Lock()
				n := got.frames
				got.mu.Unlock()
				t.Fatalf("the consumer got %d frames", n)
			}
			got.mu.Lock()
			check(t, "consumer", loud(t, got.pcm, rate/50), float64(rate), tc.in)
			got.mu.Unlock()
			if len(heard) < 16000 {
				t.Fatalf("the caller heard %d samples", len(heard))
			}
			lo, _ := audiotest.LoudSpan(heard, 320, -40)
			if lo < 0 || lo+8000 > len(heard) {
				t.Fatalf("the caller heard %d samples, loud from %d", len(heard), lo)
			}
			check(t, "caller", heard[lo:lo+8000], 16000, tc.out)
			// The consumer's 70 frames can be out before the shard has read the
			// last of the 75 packets the caller sent: wait for the read.
			waitFor(t, 5*time.Second, "all 75 packets read", func() bool { return s.Stats().PacketsReceived >= 75 })
			st := s.Stats()
			if st.Codec != tc.codec.Name || st.Malformed != 0 || st.PacketsReceived != 75 {
				t.Errorf("stats: %+v", st)
			}
		})
	}
}

// loud is the part of x from its first to its last loud frame, less the first
// 100 ms of it (where codecs and the jitter buffer settle).
func loud(t *testing.T, x []int16, frame int) []int16 {
	t.Helper()
	lo, hi := audiotest.LoudSpan(x, frame, -40)
	if lo < 0 || hi-lo < 20*frame {
		t.Fatalf("%d samples, loud from %d to %d", len(x), lo, hi)
	}
	return x[lo+5*frame : hi]
}

// check measures a -12 dBFS (peak) tone: its frequency, and its RMS level
// within 1.5 dB (RMS, not the tone's Goertzel level: the collector's audio
// may skip concealed frames, which breaks the tone's phase but not its power).
func check(t *testing.T, who string, x []int16, rate, freq float64) {
	t.Helper()
	if f := audiotest.DominantFrequency(x, rate); math.Abs(f-freq) > 25 {
		t.Errorf("%s: %.0f Hz, want %.0f", who, f, freq)
	}
	want := -12 - 3.01
	if l := audiotest.RMSDBFS(x); math.Abs(l-want) > 1.5 {
		t.Errorf("%s: tone at %.1f dBFS, want %.1f", who, l, want)
	}
}

// srtpPhone is a far end speaking SRTP with pion's contexts.
type srtpPhone struct {
	*phone
	enc, dec *srtp.Context
}

func newSRTPPhone(t *testing.T, suite string, send, recv sdp.Key) *srtpPhone {
	p, err := profileOf(suite)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := srtp.CreateContext(send.MasterKey(), send.MasterSalt(), p)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := srtp.CreateContext(recv.MasterKey(), recv.MasterSalt(), p)
	if err != nil {
		t.Fatal(err)
	}
	return &srtpPhone{phone: newPhone(t), enc: enc, dec: dec}
}

func key(b byte) sdp.Key {
	var k sdp.Key
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// TestSRTP runs a PCMU call with SRTP both ways, each suite. What the stream
// sends is not RTP a listener could play (the payload is not the µ-law sent,
// and it carries the suite's tag); it decrypts with the stream's key to the
// tone played. What the far end encrypts reaches the consumer. Plain RTP, and
// SRTP under a wrong key, from another address before the caller's first
// packet neither reach the consumer nor take the stream's latch: they are
// counted as SRTP failures.
func TestSRTP(t *testing.T) {
	defer leakCheck(t)()
	for _, suite := range []string{sdp.SuiteAES80, sdp.SuiteAES32} {
		t.Run(suite, func(t *testing.T) {
			ours, theirs := key(1), key(100)
			ph := newSRTPPhone(t, suite, theirs, ours)
			s, err := NewStream(testPool(t), loopback, Options{Wheel: realWheel(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got := newCollector(70)
			n := sdp.Negotiated{Codec: sdp.PCMU, Remote: ph.addr(), Direction: sdp.SendRecv,
				SRTP: &sdp.SRTP{Suite: suite, Local: ours, Remote: theirs}}
			if err := s.Start(n, Consumer{Format: FormatULaw8k, Sink: got.sink}); err != nil {
				t.Fatal(err)
			}
			// An attacker first: plain RTP and SRTP under its own key.
			attacker := newSRTPPhone(t, suite, key(200), key(200))
			for i := range 5 {
				p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), SSRC: 5}, Payload: bytes.Repeat([]byte{0x55}, 160)}
				attacker.send(t, s.LocalAddr(), &p)
				raw, _ := p.Marshal()
				sealed, err := attacker.enc.EncryptRTP(nil, raw, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = attacker.conn.WriteToUDPAddrPort(sealed, s.LocalAddr())
			}
			tone := audiotest.Sine(8000, 1000, -12, 1500*time.Millisecond)
			ulawTone := make([]byte, len(tone))
			g711.PCMToULaw(ulawTone, tone)
			if err := s.Play(ulawTone); err != nil {
				t.Fatal(err)
			}
			tag := 10
			if suite == sdp.SuiteAES32 {
				tag = 4
			}
			// The caller sends the tone on real time (audiotest.Pace) and reads
			// what comes until it has sent it all and heard 0.5 s of tone.
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				audiotest.Pace(len(ulawTone)/160, 20*time.Millisecond, func(i int) {
					p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(1000 + i),
						Timestamp: uint32(i * 160), SSRC: 99}, Payload: ulawTone[i*160 : (i+1)*160]}
					raw, _ := p.Marshal()
					sealed, err := ph.enc.EncryptRTP(nil, raw, nil)
					if err != nil {
						t.Errorf("packet %d: %v", i, err)
						return
					}
					if _, err := ph.conn.WriteToUDPAddrPort(sealed, s.LocalAddr()); err != nil {
						t.Errorf("packet %d: %v", i, err)
					}
				})
			}()
			defer func() { <-sent }() // before the test ends: the sender may call t.Errorf
			var heard []int16
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				if lo, _ := audiotest.LoudSpan(heard, 160, -40); chanClosed(sent) && lo >= 0 && lo+4000 <= len(heard) {
					break
				}
				_ = ph.conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				k, _, err := ph.conn.ReadFromUDPAddrPort(ph.buf)
				if err != nil {
					continue
				}
				wire := append([]byte(nil), ph.buf[:k]...)
				if len(wire) != 12+160+tag {
					t.Fatalf("a packet of %d bytes, want %d (RTP, 160 bytes, %d-byte tag)", len(wire), 12+160+tag, tag)
				}
				plain, err := ph.dec.DecryptRTP(nil, wire, nil)
				if err != nil {
					t.Fatalf("our packet does not decrypt with our key: %v", err)
				}
				if bytes.Equal(wire[12:172], plain[12:172]) {
					t.Fatal("the payload went out in the clear")
				}
				var x [160]int16
				g711.ULawToPCM(x[:], plain[12:])
				heard = append(heard, x[:]...)
			}
			<-sent
			select {
			case <-got.full:
			case <-time.After(5 * time.Second):
				got.mu.Lock()
				n := got.frames
				got.mu.Unlock()
				t.Fatalf("the consumer got %d frames", n)
			}
			got.mu.Lock()
			check(t, "consumer", loud(t, got.pcm, 160), 8000, 1000)
			got.mu.Unlock()
			lo, _ := audiotest.LoudSpan(heard, 160, -40)
			if lo < 0 || lo+4000 > len(heard) {
				t.Fatalf("the caller heard %d samples, loud from %d", len(heard), lo)
			}
			check(t, "caller", heard[lo:lo+4000], 8000, 1000)
			st := s.Stats()
			if st.SRTP != suite || st.SRTPFailed != 10 || st.IgnoredSource != 0 {
				t.Errorf("SRTP %q, %d failed (want 10), %d from other sources (want 0: the attacker never latched)", st.SRTP, st.SRTPFailed, st.IgnoredSource)
			}
			if s.Remote() != ph.addr() {
				t.Errorf("sending to %v, not the caller %v", s.Remote(), ph.addr())
			}
		})
	}
}

// TestSRTPRekey: a re-INVITE's new remote key replaces the inbound context;
// the outbound one, unchanged, keeps its state.
func TestSRTPRekey(t *testing.T) {
	s, err := NewStream(testPool(t), loopback, Options{Wheel: realWheel(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := sdp.Negotiated{Codec: sdp.PCMU, Remote: netip.MustParseAddrPort("127.0.0.1:9"), Direction: sdp.SendRecv,
		SRTP: &sdp.SRTP{Suite: sdp.SuiteAES80, Local: key(1), Remote: key(2)}}
	if err := s.Start(n, Consumer{}); err != nil {
		t.Fatal(err)
	}
	in, out := s.srtpIn.Load(), s.srtpOut.Load()
	n.SRTP = &sdp.SRTP{Suite: sdp.SuiteAES80, Local: key(1), Remote: key(3)}
	s.Update(n)
	if s.srtpIn.Load() == in || s.srtpOut.Load() != out {
		t.Error("rekeying replaced the wrong context")
	}
	n.SRTP = &sdp.SRTP{Suite: "NULL", Local: key(1), Remote: key(4)}
	s.Update(n)
	if s.srtpIn.Load().key != key(3) {
		t.Error("a bad suite replaced the keys")
	}
}

// TestWidebandNoAllocs: a G.722 packet's way through the stream (decode,
// jitter buffer, playout, pacer encode, SRTP encryption) allocates nothing.
func TestWidebandNoAllocs(t *testing.T) {
	w, m := manualWheel(t)
	s, err := NewStream(testPool(t), loopback, Options{Wheel: w})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(sdp.Negotiated{Codec: sdp.G722, Remote: netip.MustParseAddrPort("127.0.0.1:9"), Direction: sdp.SendRecv,
		SRTP: &sdp.SRTP{Suite: sdp.SuiteAES80, Local: key(1), Remote: key(2)}},
		Consumer{Format: FormatPCM16k, Sink: func(Frame) {}}); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 12+160)
	raw[0], raw[1] = 0x80, 9
	var pkt rtp.Packet
	i := 0
	step := func() {
		binary.BigEndian.PutUint16(raw[2:], uint16(i))
		binary.BigEndian.PutUint32(raw[4:], uint32(i*160))
		binary.BigEndian.PutUint32(raw[8:], 42)
		s.handleRTP(w.Now(), netip.MustParseAddrPort("127.0.0.1:9"), raw, &pkt)
		m.Advance(20 * time.Millisecond)
		i++
	}
	for range 50 {
		step()
	}
	if n := testing.AllocsPerRun(300, step); n != 0 {
		t.Fatalf("%.2f allocations per packet", n)
	}
}
