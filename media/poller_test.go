package media

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Many streams' sockets are read by the shared readers (on Linux: no reader
// goroutine per stream): every stream gets its own packets, RTP and RTCP,
// streams closed while the others' packets flow stop cleanly, and the last
// Close stops the readers (leakCheck).
func TestSharedReaders(t *testing.T) {
	for _, tick := range []bool{true, false} {
		name := map[bool]string{true: "shards read", false: "reader goroutines"}[tick]
		t.Run(name, func(t *testing.T) {
			defer setTickReads(tick)()
			testSharedReaders(t)
		})
	}
}

func testSharedReaders(t *testing.T) {
	const n = 24
	w := realWheel(t)
	defer leakCheck(t)()
	before := runtime.NumGoroutine()
	digits := make(chan int, 4*n)
	streams := make([]*Stream, n)
	phones := make([]*phone, n)
	for i := range streams {
		s, err := NewStream(testPool(t), loopback, Options{Wheel: w})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		phones[i] = newPhone(t)
		if err := s.Start(negotiated("PCMU", phones[i].addr()), Consumer{OnDigit: func(Digit) { digits <- i }}); err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	if runtime.GOOS == "linux" {
		if extra := runtime.NumGoroutine() - before; extra > len(pollSlots) {
			t.Fatalf("%d goroutines for %d streams, want at most the %d shared readers", extra, n, len(pollSlots))
		}
		for _, s := range streams {
			if s.polled == nil {
				t.Fatal("a stream on Linux reads its own sockets")
			}
		}
	}
	// send has every phone i in from..n-1 send 10 audio packets and a digit,
	// and waits for each of those streams' digits.
	seq := 0
	send := func(from int) {
		t.Helper()
		for i := from; i < n; i++ {
			for k := range 10 {
				phones[i].send(t, streams[i].LocalAddr(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0,
					SequenceNumber: uint16(seq + k), Timestamp: uint32((seq + k) * 160), SSRC: uint32(100 + i)}, Payload: make([]byte, 160)})
			}
			phones[i].send(t, streams[i].LocalAddr(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101,
				SequenceNumber: uint16(seq + 10), Timestamp: uint32((seq + 10) * 160), SSRC: uint32(100 + i)}, Payload: []byte{byte(i % 10), 0x0a, 0, 160}})
		}
		seq += 11
		got := make(map[int]bool)
		timeout := time.After(10 * time.Second)
		for len(got) < n-from {
			select {
			case i := <-digits:
				if i < from || got[i] {
					t.Fatalf("a digit for stream %d, which was not sent one now", i)
				}
				got[i] = true
			case <-timeout:
				t.Fatalf("%d of %d streams got their digit", len(got), n-from)
			}
		}
	}
	send(0)
	// RTCP from each phone's RTCP port reaches its own stream.
	for i, s := range streams {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b, _ := (&rtcp.ReceiverReport{SSRC: uint32(100 + i)}).Marshal()
		if _, err := c.WriteToUDPAddrPort(b, netip_ap(fmt.Sprintf("127.0.0.1:%d", s.LocalPort()+1))); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for i, s := range streams {
		for s.Stats().RTCPReceived != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("stream %d: %d RTCP packets received, want 1", i, s.Stats().RTCPReceived)
			}
			time.Sleep(time.Millisecond) // polling a counter, not synchronising
		}
	}
	// Half the streams end while the other half's packets flow.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, s := range streams[:n/2] {
			s.Close()
		}
	}()
	send(n / 2)
	<-done
	send(n / 2)
	for i, s := range streams[n/2:] {
		if st := s.Stats(); st.PacketsReceived != 33 || st.Digits != 3 {
			t.Fatalf("stream %d: %d packets and %d digits received, want 33 and 3", n/2+i, st.PacketsReceived, st.Digits)
		}
	}
}

// A stream's sockets on every address (one dual-stack socket), on an IPv4
// and on an IPv6 address: RTP comes in from and goes out to an IPv4 and an
// IPv6 phone (on Linux through the bare sockets and their sendto).
func TestSocketFamilies(t *testing.T) {
	w := realWheel(t)
	defer leakCheck(t)()
	v6 := true
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		v6 = false
	} else {
		c.Close()
	}
	for _, tc := range []struct {
		listen, phone string
	}{
		{"", "127.0.0.1"}, {"", "::1"}, {"0.0.0.0", "127.0.0.1"}, {"127.0.0.1", "127.0.0.1"}, {"::1", "::1"},
	} {
		if !v6 && (tc.phone == "::1" || tc.listen == "::1") {
			t.Logf("no IPv6 loopback: %s from %s not tested", tc.listen, tc.phone)
			continue
		}
		t.Run(tc.listen+" from "+tc.phone, func(t *testing.T) {
			var ip netip.Addr
			if tc.listen != "" {
				ip = netip.MustParseAddr(tc.listen)
			}
			s, err := NewStream(testPool(t), ip, Options{Wheel: w})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tc.phone), 0)))
			if err != nil {
				t.Fatal(err)
			}
			ph := &phone{conn: c, buf: make([]byte, 2048)}
			defer c.Close()
			digits := make(chan Digit, 1)
			if err := s.Start(negotiated("PCMU", ph.addr()), Consumer{OnDigit: func(d Digit) { digits <- d }}); err != nil {
				t.Fatal(err)
			}
			to := netip.AddrPortFrom(netip.MustParseAddr(tc.phone), uint16(s.LocalPort()))
			ph.send(t, to, digitEvent(5))
			select {
			case d := <-digits:
				if d.Digit != '5' {
					t.Fatalf("digit %q, want 5", d.Digit)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no digit")
			}
			if _, ok := ph.recv(10 * time.Second); !ok {
				t.Fatal("the phone got no RTP from the stream")
			}
			if la := s.LocalAddr(); la.Port() != uint16(s.LocalPort()) || (ip.IsValid() && !ip.IsUnspecified() && la.Addr() != ip) {
				t.Fatalf("LocalAddr %v, port %d, listening on %q", la, s.LocalPort(), tc.listen)
			}
		})
	}
}

// Where a stream's sockets cannot be read by the shared readers, it reads
// them itself, with the same results.
func TestOwnReadersFallback(t *testing.T) {
	w := realWheel(t)
	defer leakCheck(t)()
	s, err := NewStream(testPool(t), loopback, Options{Wheel: w})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ph := newPhone(t)
	digits := make(chan Digit, 1)
	sharedReaders = false // Start finds no shared reader for the sockets it has
	err = s.Start(negotiated("PCMU", ph.addr()), Consumer{OnDigit: func(d Digit) { digits <- d }})
	sharedReaders = runtime.GOOS == "linux"
	if err != nil {
		t.Fatal(err)
	}
	if s.polled != nil {
		t.Fatal("the stream is polled")
	}
	ph.send(t, s.LocalAddr(), digitEvent(7))
	select {
	case <-digits:
	case <-time.After(10 * time.Second):
		t.Fatal("no digit")
	}
	if _, ok := ph.recv(10 * time.Second); !ok {
		t.Fatal("the phone got no RTP from the stream")
	}
}

// setTickReads sets tickReads for a test and returns what restores it.
func setTickReads(on bool) func() {
	old := tickReads
	tickReads = on
	return func() { tickReads = old }
}
