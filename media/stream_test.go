package media

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/cxco/gateway/media/jitter"
	"github.com/cxco/gateway/media/sdp"
	"github.com/pion/rtp"
)

func TestPortPool(t *testing.T) {
	defer leakCheck(t)()
	// Find a free block of 6 ports (3 pairs) by binding in a high range.
	p, err := NewPortPool(41001, 41007) // odd bounds: pairs 41002/3, 41004/5, 41006/7
	if err != nil {
		t.Fatal(err)
	}
	if p.Pairs() != 3 {
		t.Fatalf("%d pairs, want 3", p.Pairs())
	}
	// Another process holds 41004.
	hog, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41004})
	if err != nil {
		t.Skipf("port 41004 busy: %v", err)
	}
	defer hog.Close()
	w, _ := manualWheel(t)
	var streams []*Stream
	for {
		s, err := NewStream(p, loopback, Options{Wheel: w})
		if err != nil {
			if !errors.Is(err, ErrNoPorts) {
				t.Fatalf("err %v, want ErrNoPorts", err)
			}
			break
		}
		if s.LocalPort()%2 != 0 || s.LocalPort() == 41004 {
			t.Fatalf("port %d", s.LocalPort())
		}
		streams = append(streams, s)
	}
	if len(streams) != 2 || p.InUse() != 2 {
		t.Fatalf("%d streams, %d in use; want 2 (41004 is taken)", len(streams), p.InUse())
	}
	port := streams[0].LocalPort()
	streams[0].Close()
	if p.InUse() != 1 {
		t.Fatal("Close did not release the ports")
	}
	s, err := NewStream(p, loopback, Options{Wheel: w})
	if err != nil || s.LocalPort() != port {
		t.Fatalf("reallocation: %v, port %d want %d", err, s.LocalPort(), port)
	}
	s.Close()
	streams[1].Close()

	for _, bad := range []string{"", "20000", "a-b", "30000-20000", "0-10", "5-5"} {
		lo, hi, err := ParsePortRange(bad)
		if err == nil {
			_, err = NewPortPool(lo, hi)
		}
		if !errors.Is(err, ErrPortRange) {
			t.Errorf("range %q: %v, want ErrPortRange", bad, err)
		}
	}
	if lo, hi, err := ParsePortRange("20000-29999"); err != nil || lo != 20000 || hi != 29999 {
		t.Fatalf("parse: %d %d %v", lo, hi, err)
	}
}

func TestChains(t *testing.T) {
	tests := []struct {
		codec   string
		format  Format
		conceal jitter.Concealment
		in, out string
	}{
		{"PCMU", FormatULaw8k, jitter.ConcealPitch, "RTP(PCMU) -> Jitter+PLC(pitch) -> Sink",
			"Play(ulaw_8000) -> Frame(20ms) -> Queue -> Pacer -> RTP(PCMU)"},
		{"PCMA", FormatULaw8k, jitter.ConcealFade, "RTP(PCMA) -> Jitter+PLC(fade) -> PCMA->PCMU -> Sink",
			"Play(ulaw_8000) -> Frame(20ms) -> PCMU->PCMA -> Queue -> Pacer -> RTP(PCMA)"},
		{"PCMU", FormatPCM16k, jitter.ConcealSilence, "RTP(PCMU) -> Jitter+PLC(silence) -> PCMU(decode) -> Resample(8000->16000) -> Sink",
			"Play(pcm_16000) -> Frame(20ms) -> Resample(16000->8000) -> PCMU(encode) -> Queue -> Pacer -> RTP(PCMU)"},
		{"PCMA", FormatPCM16k, jitter.ConcealPitch, "RTP(PCMA) -> Jitter+PLC(pitch) -> PCMA(decode) -> Resample(8000->16000) -> Sink",
			"Play(pcm_16000) -> Frame(20ms) -> Resample(16000->8000) -> PCMA(encode) -> Queue -> Pacer -> RTP(PCMA)"},
	}
	for _, tc := range tests {
		t.Run(tc.codec+" "+tc.format.String(), func(t *testing.T) {
			w, _ := manualWheel(t)
			s, err := NewStream(testPool(t), loopback, Options{Wheel: w, Concealment: tc.conceal})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Start(negotiated(tc.codec, netip_ap("127.0.0.1:9")), Consumer{Format: tc.format}); err != nil {
				t.Fatal(err)
			}
			if got := s.InboundChain(); got != tc.in {
				t.Errorf("inbound %q, want %q", got, tc.in)
			}
			if got := s.OutboundChain(); got != tc.out {
				t.Errorf("outbound %q, want %q", got, tc.out)
			}
		})
	}
	w, _ := manualWheel(t)
	s, _ := NewStream(testPool(t), loopback, Options{Wheel: w})
	defer s.Close()
	bad := negotiated("PCMU", netip_ap("127.0.0.1:9"))
	bad.Codec = sdp.Codec{Name: "G729", ClockRate: 8000, PayloadType: 18}
	if err := s.Start(bad, Consumer{}); !errors.Is(err, ErrCodec) {
		t.Fatalf("G729: %v", err)
	}
	if err := s.Play([]byte{1}); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Play before Start: %v", err)
	}
}

// pcapRTP reads the RTP packets of a classic pcap file of Ethernet/IPv4/UDP.
func pcapRTP(t *testing.T, path string) []*rtp.Packet {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("%v (install sip-tester)", err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Fatalf("%s: not a little-endian Ethernet pcap", path)
	}
	var out []*rtp.Packet
	for off := 24; off+16 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[off+8:]))
		frame := b[off+16 : off+16+n]
		off += 16 + n
		ip := frame[14:]
		udp := ip[int(ip[0]&15)*4:]
		var p rtp.Packet
		if err := p.Unmarshal(append([]byte(nil), udp[8:]...)); err != nil {
			t.Fatal(err)
		}
		out = append(out, &p)
	}
	return out
}

func TestDTMFFromSIPpCaptures(t *testing.T) {
	names := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "star", "pound"}
	want := "1234567890*#"
	w := realWheel(t)
	defer leakCheck(t)() // the wheel's goroutines are counted before
	ph := newPhone(t)
	digits := make(chan Digit, 32)
	s, err := NewStream(testPool(t), loopback, Options{Wheel: w})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(negotiated("PCMU", ph.addr()), Consumer{OnDigit: func(d Digit) { digits <- d }}); err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, n := range names {
		for _, p := range pcapRTP(t, filepath.Join("/usr/share/sip-tester", "dtmf_2833_"+n+".pcap")) {
			ph.send(t, s.LocalAddr(), p)
			sent++
		}
	}
	// A repeat of the last event (same timestamp) must not be reported again.
	last := pcapRTP(t, "/usr/share/sip-tester/dtmf_2833_pound.pcap")
	ph.send(t, s.LocalAddr(), last[len(last)-1])
	got := ""
	for range want {
		select {
		case d := <-digits:
			got += string(d.Digit)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if got != want {
		t.Fatalf("digits %q, want %q", got, want)
	}
	// Wait until the stream has read every packet, then check nothing more
	// was reported.
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().PacketsReceived < uint64(sent+1) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling a counter
	}
	select {
	case d := <-digits:
		t.Fatalf("extra digit %q", d.Digit)
	default:
	}
	st := s.Stats()
	if st.Digits != 12 {
		t.Fatalf("stats digits %d", st.Digits)
	}
	s.Close()
}

// TestPacketPathDoesNotAllocate drives the whole per-packet path (RTP in,
// jitter buffer, playout, echo Play, pacer, RTP out) on a manual clock and
// counts allocations.
func TestPacketPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, format := range []Format{FormatULaw8k, FormatPCM16k} {
		t.Run(format.String(), func(t *testing.T) {
			w, m := manualWheel(t)
			ph := newPhone(t)
			s, err := NewStream(testPool(t), loopback, Options{Wheel: w, RTCPInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Start(negotiated("PCMA", ph.addr()), Echo(s, format)); err != nil {
				t.Fatal(err)
			}
			go func() { // drain the phone without allocating
				buf := make([]byte, 1500)
				for {
					_ = ph.conn.SetReadDeadline(time.Now().Add(time.Second))
					if _, _, err := ph.conn.ReadFromUDPAddrPort(buf); err != nil {
						return
					}
				}
			}()
			packetPathAllocFree(t, s, w, m, ph.addr(), 8)
			if st := s.Stats(); st.Frames < 500 || st.PacketsSent < 500 {
				t.Fatalf("frames %d sent %d", st.Frames, st.PacketsSent)
			}
		})
	}
}

// TestPlayDuringStart: Play, PlayPCM, Stats and the chains may be called from
// another goroutine while Start runs; they see either a stream not started yet
// or a started one, never one half set up (run with -race).
func TestPlayDuringStart(t *testing.T) {
	for range 20 {
		w, _ := manualWheel(t)
		s, err := NewStream(testPool(t), loopback, Options{Wheel: w})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			for {
				err := s.Play(make([]byte, 160))
				_ = s.PlayPCM(nil)
				_ = s.Stats()
				_ = s.InboundChain() + s.OutboundChain()
				if !errors.Is(err, ErrNotStarted) {
					done <- err
					return
				}
				runtime.Gosched()
			}
		}()
		if err := s.Start(negotiated("PCMU", netip_ap("127.0.0.1:9")), Consumer{Format: FormatPCM16k}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Play after Start: %v", err)
		}
		s.Close()
	}
}

// TestReorderedStartIsNotNegativeLoss: the first packets of a stream arrive out
// of order (102, 100, 101, 103, then 105): six expected (100-105), 104 lost.
// Near the wrap-around the base does not move back over it.
func TestReorderedStartIsNotNegativeLoss(t *testing.T) {
	var in inbound
	for _, seq := range []uint16{102, 100, 101, 103, 105} {
		in.updateSeq(7, seq)
		in.received++
	}
	if e, l := in.expected(), in.cumulativeLost(); e != 6 || l != 1 {
		t.Fatalf("expected %d lost %d, want 6 and 1 (104)", e, l)
	}
	in = inbound{}
	for _, seq := range []uint16{1, 65535, 0, 2} {
		in.updateSeq(7, seq)
		in.received++
	}
	if e := in.expected(); e != 3 {
		t.Fatalf("expected %d, want 3 (0-2: 0 moved the base back, 65535 did not)", e)
	}
}
