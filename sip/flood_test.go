package sip

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestUDPFloodEveryMethod: INFO, BYE, CANCEL and OPTIONS floods over UDP all count
// against the source's budget (before, only requests that start something did):
// one source sending 500 of each gets its burst answered and the rest dropped,
// while another source is answered.
func TestUDPFloodEveryMethod(t *testing.T) {
	for _, method := range []string{"INFO", "BYE", "CANCEL", "OPTIONS"} {
		t.Run(method, func(t *testing.T) {
			_, obs, c, gw := frozenFloodServer(t, Options{FloodRate: 1, FloodBurst: 10})
			for i := range 500 {
				tag := ""
				if method != "OPTIONS" && method != "CANCEL" {
					tag = ";tag=gw1" // in a dialog that does not exist: 481
				}
				msg := fmt.Sprintf("%s sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKu%d\r\nFrom: <sip:a@127.0.0.1>;tag=a%d\r\n"+
					"To: <sip:x@127.0.0.1>%s\r\nCall-ID: udp-%d\r\nCSeq: 2 %s\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
					method, c.LocalAddr(), i, i, tag, i, method)
				if _, err := c.WriteToUDP([]byte(msg), gw); err != nil {
					t.Fatal(err)
				}
				if i%50 == 49 { // in steps the socket buffer takes whole
					want := i + 1 - 10
					waitUntil(t, 20*time.Second, fmt.Sprintf("%d dropped", want), func() bool { return obs.count("flood") == want })
				}
			}
			answers := 0
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 9000)
			for {
				n, _, err := c.ReadFromUDP(buf)
				if err != nil {
					break
				}
				if strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
					answers++
				}
			}
			if answers > 10 {
				t.Fatalf("%d answers to a source with a burst of 10", answers)
			}
		})
	}
}

// TestShedINVITEsStartNoTrace: INVITEs the flood limiter drops cost no SIP trace.
// Before, every INVITE read started one (kept 60 s unattached), so a flood filled
// the trace table (4*MaxCalls+100) and the calls let in meanwhile got no ladder.
func TestShedINVITEsStartNoTrace(t *testing.T) {
	s, obs, c, gw := frozenFloodServer(t, Options{FloodRate: 1, FloodBurst: 10, CallRate: -1})
	const n, burst = 100, 10
	for i := range n {
		msg := fmt.Sprintf("INVITE sip:+15559990000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKst%d\r\n"+
			"From: <sip:flood@127.0.0.1>;tag=f%d\r\nTo: <sip:+15559990000@127.0.0.1>\r\nCall-ID: shed-%d\r\nCSeq: 1 INVITE\r\n"+
			"Contact: <sip:flood@%s>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", c.LocalAddr(), i, i, i, c.LocalAddr())
		if _, err := c.WriteToUDP([]byte(msg), gw); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 30*time.Second, fmt.Sprintf("%d INVITEs dropped", n-burst), func() bool { return obs.count("flood") == n-burst })
	s.trace.mu.Lock()
	traces := len(s.trace.all)
	s.trace.mu.Unlock()
	if traces > burst {
		t.Fatalf("%d SIP traces started by %d INVITEs of which %d were let in", traces, n, burst)
	}
	if traces == 0 {
		t.Fatal("no trace for the INVITEs let in")
	}
}

// frozenFloodServer is a test server whose flood limiter's clock stands still (no
// refill during the test), a UDP socket on loopback to flood it from, and its
// SIP address.
func frozenFloodServer(t *testing.T, opt Options) (*Server, *countingObs, *net.UDPConn, *net.UDPAddr) {
	t.Helper()
	s, obs := testServer(t, opt)
	frozen := time.Now()
	s.flood.mu.Lock()
	s.flood.now = func() time.Time { return frozen }
	s.flood.mu.Unlock()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return s, obs, c, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.Port()}
}
