package media

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func newPhoneAt(t testing.TB, ip string) *phone {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &phone{conn: c, buf: make([]byte, 2048)}
}

func pcmu(ssrc uint32, seq uint16) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: ssrc},
		Payload: make([]byte, 160)}
}

// sent reports whether p gets a packet from the stream within d.
func (p *phone) gets(d time.Duration) bool {
	_, ok := p.recv(d)
	return ok
}

// TestRTPSourceHijackRefused: an attacker that sprays a call's port before the
// caller's first packet does not take the call's audio: media is accepted only
// from the address the SDP names (and never from outside the allowed networks),
// so the caller latches, the attacker is refused and counted, and nothing is sent
// to it.
func TestRTPSourceHijackRefused(t *testing.T) {
	w, m := manualWheel(t)
	defer leakCheck(t)()
	var counters SourceCounters
	caller := newPhoneAt(t, "127.0.0.1")
	attacker := newPhoneAt(t, "127.0.0.2")
	outsider := newPhoneAt(t, "127.0.0.9")
	s, err := NewStream(testPool(t), loopback, Options{Wheel: w, Sources: SourcePolicy{
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/29")}, Counters: &counters}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(negotiated("PCMU", caller.addr()), Consumer{Format: FormatULaw8k}); err != nil {
		t.Fatal(err)
	}
	// The attacker is first, from inside the allowed networks and from outside.
	for i := range 5 {
		attacker.send(t, s.LocalAddr(), pcmu(7, uint16(i)))
		outsider.send(t, s.LocalAddr(), pcmu(7, uint16(i)))
	}
	waitFor(t, 5*time.Second, "10 refused", func() bool { return s.Stats().RefusedSource == 10 })
	caller.send(t, s.LocalAddr(), pcmu(1, 100))
	waitFor(t, 5*time.Second, "the caller latched", func() bool { return s.Stats().PacketsReceived == 1 })
	attacker.send(t, s.LocalAddr(), pcmu(7, 6))
	waitFor(t, 5*time.Second, "the attacker refused after the latch too", func() bool { return s.Stats().RefusedSource == 11 })
	m.Advance(40 * time.Millisecond)
	if !caller.gets(time.Second) {
		t.Fatal("nothing sent to the caller")
	}
	if attacker.gets(100*time.Millisecond) || outsider.gets(10*time.Millisecond) {
		t.Fatal("the attacker got the call's audio")
	}
	if s.Remote() != caller.addr() {
		t.Fatalf("remote %v", s.Remote())
	}
	if counters.Refused.Load() != 11 || counters.Ignored.Load() != 0 {
		t.Fatalf("counters: refused %d, ignored %d", counters.Refused.Load(), counters.Ignored.Load())
	}
}

// TestRTPSourceNATLatching: with latching allowed, media from the signalling
// source's address is accepted (a trunk behind NAT whose SDP names a private
// address); without it, it is refused.
func TestRTPSourceNATLatching(t *testing.T) {
	for _, latch := range []bool{false, true} {
		w, m := manualWheel(t)
		nat := newPhoneAt(t, "127.0.0.3") // where the media really comes from
		private := netip.MustParseAddrPort("10.1.2.3:4000")
		s, err := NewStream(testPool(t), loopback, Options{Wheel: w, Sources: SourcePolicy{
			Signalling: netip.MustParseAddr("127.0.0.3"), Latch: latch}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(negotiated("PCMU", private), Consumer{Format: FormatULaw8k}); err != nil {
			t.Fatal(err)
		}
		nat.send(t, s.LocalAddr(), pcmu(3, 1))
		if latch {
			waitFor(t, 5*time.Second, "latched to the NAT", func() bool { return s.Stats().PacketsReceived == 1 })
			m.Advance(40 * time.Millisecond)
			if !nat.gets(time.Second) {
				t.Fatal("nothing sent back through the NAT")
			}
		} else {
			waitFor(t, 5*time.Second, "refused", func() bool { return s.Stats().RefusedSource == 1 })
		}
		s.Close()
	}
}

// TestRTPSourceRelatch: once latched, the source moves only when the current
// one has stopped, the newcomer is inside what the policy accepts, and its
// packet continues the stream (same SSRC, next sequence numbers) — what a NAT
// rebinding looks like, and what an off-path attacker cannot produce.
func TestRTPSourceRelatch(t *testing.T) {
	w, m := manualWheel(t)
	var counters SourceCounters
	first := newPhoneAt(t, "127.0.0.1")
	moved := newPhoneAt(t, "127.0.0.1") // same address, new port: a NAT rebinding
	outsider := newPhoneAt(t, "127.0.0.2")
	s, err := NewStream(testPool(t), loopback, Options{Wheel: w, Sources: SourcePolicy{
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Counters: &counters}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(negotiated("PCMU", first.addr()), Consumer{Format: FormatULaw8k}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		first.send(t, s.LocalAddr(), pcmu(5, uint16(1000+i)))
	}
	waitFor(t, 5*time.Second, "latched", func() bool { return s.Stats().PacketsReceived == 10 })
	ignored := func(n uint64, what string) {
		t.Helper()
		waitFor(t, 5*time.Second, what, func() bool { return s.Stats().IgnoredSource+s.Stats().RefusedSource == n })
		if s.Remote() != first.addr() {
			t.Fatalf("%s: the source moved to %v", what, s.Remote())
		}
	}
	moved.send(t, s.LocalAddr(), pcmu(5, 1010)) // the first source has not stopped
	ignored(1, "a continuation while the source is alive")
	m.Advance(2 * time.Second) // the first source stops
	moved.send(t, s.LocalAddr(), pcmu(6, 1011))
	ignored(2, "another SSRC")
	moved.send(t, s.LocalAddr(), pcmu(5, 9000))
	ignored(3, "a sequence number far ahead")
	moved.send(t, s.LocalAddr(), pcmu(5, 1005))
	ignored(4, "a sequence number behind")
	outsider.send(t, s.LocalAddr(), pcmu(5, 1012))
	ignored(5, "a continuation from outside the allowed networks")
	moved.send(t, s.LocalAddr(), pcmu(5, 1013))
	waitFor(t, 5*time.Second, "relatched", func() bool { return s.Remote() == moved.addr() })
	if st := s.Stats(); st.Relatched != 1 || counters.Relatched.Load() != 1 {
		t.Fatalf("relatched %d / %d", st.Relatched, counters.Relatched.Load())
	}
	m.Advance(40 * time.Millisecond)
	if !moved.gets(time.Second) {
		t.Fatal("nothing sent to the new source")
	}
	// A re-INVITE that moves the media: the new SDP address latches at once.
	fresh := newPhoneAt(t, "127.0.0.1")
	s.SetRemote(fresh.addr(), netipZero)
	fresh.send(t, s.LocalAddr(), pcmu(77, 1))
	waitFor(t, 5*time.Second, "latched to the re-INVITE's address", func() bool { return s.Remote() == fresh.addr() })
}

// TestPortsRandom: port pairs come in no predictable order.
func TestPortsRandom(t *testing.T) {
	p, err := NewPortPool(40000, 40999)
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for range 20 {
		a, b, port, err := p.allocate(loopback)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		defer b.Close()
		if port%2 != 0 || port < 40000 || port > 40998 {
			t.Fatalf("port %d", port)
		}
		ports = append(ports, port)
	}
	sequential := 0
	for i := 1; i < len(ports); i++ {
		if ports[i] == ports[i-1]+2 {
			sequential++
		}
	}
	// 500 pairs: the chance that a random pick is the next pair is 1/500.
	if sequential > 3 {
		t.Fatalf("ports handed out in order: %v", ports)
	}
}
