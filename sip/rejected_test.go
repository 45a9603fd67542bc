package sip

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestRejectedINVITEsHeldBounded: INVITEs that are refused and never ACKed (a
// flood) keep at most max transactions; the oldest end early, so their final
// response is no longer retransmitted, while the ones kept still retransmit theirs
// (Timer G) until the ACK or Timer H. Before, each was held 32 s, 6,400 at the
// default call rate.
func TestRejectedINVITEsHeldBounded(t *testing.T) {
	s, obs := testServer(t, Options{FloodRate: -1, CallRate: -1})
	const keep, n, step = 64, 200, 50
	s.rejected.mu.Lock()
	s.rejected.max = keep
	s.rejected.mu.Unlock()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gw := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.Port()}
	for i := range n {
		msg := fmt.Sprintf("INVITE sip:+15559990000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKrj%d\r\n"+
			"From: <sip:flood@127.0.0.1>;tag=f%d\r\nTo: <sip:+15559990000@127.0.0.1>\r\nCall-ID: rej-%d\r\nCSeq: 1 INVITE\r\n"+
			"Contact: <sip:flood@%s>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", c.LocalAddr(), i, i, i, c.LocalAddr())
		if _, err := c.WriteToUDP([]byte(msg), gw); err != nil {
			t.Fatal(err)
		}
		if i%step == step-1 {
			// Step by step, so that the first steps are the oldest refusals.
			want := i + 1
			waitUntil(t, 30*time.Second, fmt.Sprintf("%d INVITEs refused", want), func() bool {
				return s.rejected.len()+obs.count("rejection_held") == want
			})
		}
	}
	if got := s.rejected.len(); got != keep {
		t.Fatalf("%d refused INVITE transactions kept, want %d", got, keep)
	}
	if got := obs.count("rejection_held"); got != n-keep {
		t.Fatalf("%d ended early, want %d", got, n-keep)
	}
	// For the next 3 s (Timer G retransmits after 0.5, 1, 2 and every 4 s), the
	// ones ended early send nothing more; the last step's still do.
	buf := make([]byte, 9000)
	for { // what the socket holds from before: first responses and retransmissions
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			break
		}
	}
	ended, kept := 0, 0
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		m, _, err := c.ReadFromUDP(buf)
		if err != nil {
			break
		}
		msg := string(buf[:m])
		if !strings.HasPrefix(msg, "SIP/2.0 ") || strings.HasPrefix(msg, "SIP/2.0 100") {
			continue
		}
		var i int
		if _, err := fmt.Sscanf(sipHeader(buf[:m], "call-id", "i"), "rej-%d", &i); err != nil {
			t.Fatalf("a response to no INVITE of ours: %q", msg)
		}
		switch {
		case i < n-keep-step: // steps ended before the read began
			ended++
		case i >= n-step:
			kept++
		}
	}
	// The socket was emptied after the last step was counted, so a response to one
	// of the first steps now is a retransmission sent after it ended (those of the
	// step before the last may have had a retransmission under way as they ended:
	// not counted).
	if ended > 0 {
		t.Fatalf("%d responses retransmitted by transactions ended early", ended)
	}
	if kept == 0 {
		t.Fatal("the transactions kept retransmitted nothing in 3 s")
	}
	t.Logf("%d refused INVITEs: %d kept, %d ended early; the last %d retransmitted %d responses in 3 s", n, keep, n-keep, step, kept)
}
