package media

import (
	"fmt"
	"net"
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
