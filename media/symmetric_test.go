package media

import (
	"testing"
	"time"

	"github.com/cxco/gateway/media/sdp"
	"github.com/pion/rtp"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling a counter
	}
}

func TestSymmetricRTPLatchAndFilters(t *testing.T) {
	w, m := manualWheel(t)
	defer leakCheck(t)()
	sdpTarget := newPhone(t) // the address in the offer
	real := newPhone(t)      // where the caller's RTP really comes from (NAT)
	intruder := newPhone(t)
	s, err := NewStream(testPool(t), loopback, Options{Wheel: w})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(negotiated("PCMU", sdpTarget.addr()), Consumer{Format: FormatULaw8k}); err != nil {
		t.Fatal(err)
	}
	m.Advance(5 * time.Millisecond)
	if _, ok := sdpTarget.recv(time.Second); !ok {
		t.Fatal("nothing sent to the SDP address before latching")
	}
	pkt := func(seq uint16, pt uint8) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 9},
			Payload: make([]byte, 160)}
	}
	intruderPT := pkt(1, 18) // G.729 is not negotiated: ignored, and does not latch
	intruder.send(t, s.LocalAddr(), intruderPT)
	waitFor(t, 5*time.Second, "ignored payload type", func() bool { return s.Stats().IgnoredPayloadType == 1 })
	real.send(t, s.LocalAddr(), pkt(1, 0))
	waitFor(t, 5*time.Second, "latch", func() bool { return s.Stats().PacketsReceived == 1 })
	intruder.send(t, s.LocalAddr(), pkt(2, 0))
	waitFor(t, 5*time.Second, "ignored source", func() bool { return s.Stats().IgnoredSource == 1 })
	if s.Remote() != real.addr() {
		t.Fatalf("remote %v after latching, want %v", s.Remote(), real.addr())
	}
	m.Advance(20 * time.Millisecond)
	if _, ok := real.recv(time.Second); !ok {
		t.Fatal("nothing sent to the latched source")
	}
	// A re-INVITE moves the media: latch again to the new source.
	s.SetRemote(intruder.addr(), netipZero)
	intruder.send(t, s.LocalAddr(), pkt(3, 0))
	waitFor(t, 5*time.Second, "relatch", func() bool { return s.Stats().PacketsReceived == 2 })
	m.Advance(20 * time.Millisecond)
	if _, ok := intruder.recv(time.Second); !ok {
		t.Fatal("nothing sent after SetRemote")
	}
	s.Close()
}

func TestLastReceivedIgnoresHold(t *testing.T) {
	w, m := manualWheel(t)
	ph := newPhone(t)
	s, err := NewStream(testPool(t), loopback, Options{Wheel: w})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := w.Now()
	if err := s.Start(negotiated("PCMU", ph.addr()), Consumer{}); err != nil {
		t.Fatal(err)
	}
	if !s.LastReceived().Equal(start) {
		t.Fatal("Start does not count as activity")
	}
	m.Advance(10 * time.Second)
	if got := w.Now().Sub(s.LastReceived()); got != 10*time.Second {
		t.Fatalf("inactive for %v, want 10s", got)
	}
	s.SetDirection(sdp.SendOnly) // the far end went recvonly: it sends nothing
	m.Advance(60 * time.Second)
	if !s.LastReceived().Equal(w.Now()) {
		t.Fatal("hold counted as inactivity")
	}
	s.SetDirection(sdp.SendRecv)
	m.Advance(time.Second)
	if got := w.Now().Sub(s.LastReceived()); got != time.Second {
		t.Fatalf("inactive for %v after resume, want 1s", got)
	}
}

// TestRTCPBetweenTwoStreams connects two streams to each other: each
// reports on the other's RTP and reads the other's reports; Close sends BYE.
func TestRTCPBetweenTwoStreams(t *testing.T) {
	w := realWheel(t)
	defer leakCheck(t)()
	opts := Options{Wheel: w, RTCPInterval: 100 * time.Millisecond}
	a, err := NewStream(testPool(t), loopback, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewStream(testPool(t), loopback, opts)
	if err != nil {
		t.Fatal(err)
	}
	at := func(s *Stream) sdp.Negotiated { return negotiated("PCMA", s.LocalAddr()) }
	if err := a.Start(at(b), Consumer{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(at(a), Consumer{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "reports both ways", func() bool {
		sa, sb := a.Stats(), b.Stats()
		return sa.Remote.Valid && sb.Remote.Valid && sa.Remote.RTT > 0 && sb.Remote.RTT > 0 && sa.PacketsReceived > 20
	})
	sa := a.Stats()
	if sa.Remote.FractionLost != 0 || sa.Remote.CumulativeLost != 0 || sa.CumulativeLost != 0 || sa.RTCPSent == 0 || sa.RTCPReceived == 0 {
		t.Fatalf("stats %+v", sa)
	}
	if sa.Remote.RTT > 50*time.Millisecond {
		t.Fatalf("RTT %v over loopback", sa.Remote.RTT)
	}
	a.Close()
	waitFor(t, 5*time.Second, "BYE", func() bool { return b.Stats().RemoteBye })
	b.Close()
}
