package sip

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cxco/gateway/store"
)

func options(i int, host string) string {
	return fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKt%d\r\n"+
		"From: <sip:t@127.0.0.1>;tag=t%d\r\nTo: <sip:%s>\r\nCall-ID: tcp-%d\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		host, i, i, host, i)
}

func withBody(method, body string) string {
	return method + " sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKb\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\n" +
		"Call-ID: b\r\nCSeq: 1 " + method + "\r\nContent-Type: application/sdp\r\nl: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body
}

type countingObs struct {
	nopObserver
	mu      sync.Mutex
	dropped map[string]int
}

func (o *countingObs) Dropped(why string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dropped == nil {
		o.dropped = map[string]int{}
	}
	o.dropped[why]++
}

func (o *countingObs) count(why string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped[why]
}

// TestTCPFramedStream feeds a stream of messages split at every possible point and checks
// that what comes out is the kept messages, byte for byte.
func TestTCPFramedStream(t *testing.T) {
	stream := options(1, "a") + "\r\n\r\n" + withBody("INFO", "v=0\r\nhello") + "SIP/2.0 200 OK\r\nVia: x\r\nContent-Length: 3\r\n\r\nabc" +
		withBody("INVITE", "v=0\r\n") + "\r\n"
	for split := 1; split < len(stream); split += 7 {
		obs := &countingObs{}
		s := &Server{obs: obs, flood: newFloodLimiter(limiterOptions{}), tcp: &tcpState{}}
		c := &framedConn{s: s}
		var out []byte
		for i := 0; i < len(stream); i += split {
			o, err := c.feed(time.Now(), []byte(stream[i:min(i+split, len(stream))]), nil)
			if err != nil {
				t.Fatalf("split %d: %v", split, err)
			}
			out = append(out, o...)
		}
		if string(out) != stream {
			t.Fatalf("split %d: out differs:\n%q\nwant\n%q", split, out, stream)
		}
		if c.state != fsBetween {
			t.Fatalf("split %d: state %d at the end", split, c.state)
		}
	}
}

func TestTCPFramedDropsOverBudget(t *testing.T) {
	obs := &countingObs{}
	s := &Server{obs: obs, flood: newFloodLimiter(limiterOptions{rate: 1, burst: 5}), tcp: &tcpState{}}
	c := &framedConn{s: s, src: netip.MustParseAddr("127.0.0.1")}
	var in strings.Builder
	for i := range 3000 {
		in.WriteString(options(i, "a"))
	}
	in.WriteString("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n") // a response passes
	out, err := c.feed(time.Now(), []byte(in.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "OPTIONS sip:"); n != 5 {
		t.Fatalf("%d OPTIONS passed, want the burst of 5", n)
	}
	if !strings.HasSuffix(string(out), "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n") {
		t.Fatal("the response did not pass")
	}
	if d := obs.count("flood"); d != 2995 {
		t.Fatalf("dropped %d, want 2995", d)
	}
}

func TestTCPFramedErrors(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"start line too long", strings.Repeat("A", maxLine+1)},
		{"bad content length", "OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n"},
		{"negative content length", "OPTIONS sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n"},
		{"body too large", fmt.Sprintf("INFO sip:a SIP/2.0\r\nContent-Length: %d\r\n\r\n", maxBody+1)},
		{"header line too long", "OPTIONS sip:a SIP/2.0\r\nX: " + strings.Repeat("b", maxLine) + "\r\n"},
	} {
		s := &Server{obs: nopObserver{}, flood: newFloodLimiter(limiterOptions{}), tcp: &tcpState{}}
		c := &framedConn{s: s}
		if _, err := c.feed(time.Now(), []byte(tc.in), nil); !errors.Is(err, errFraming) {
			t.Errorf("%s: %v, want a framing error", tc.name, err)
		}
	}
}

// FuzzTCPFramed: any byte stream, cut anywhere, frames without panic, and with no
// limiter what comes out is what went in.
func FuzzTCPFramed(f *testing.F) {
	f.Add([]byte(options(1, "a")+withBody("INFO", "xyz")), 3)
	f.Add([]byte("\r\n\r\nSIP/2.0 200 OK\r\nl: 2\r\n\r\nab"), 1)
	f.Add([]byte("INVITE sip:a SIP/2.0\r\nContent-Length:\r\n 4\r\n\r\nabcd"), 5)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		split = max(1, split%64)
		s := &Server{obs: nopObserver{}, flood: newFloodLimiter(limiterOptions{}), tcp: &tcpState{}}
		c := &framedConn{s: s}
		var out []byte
		for i := 0; i < len(data); i += split {
			o, err := c.feed(time.Now(), data[i:min(i+split, len(data))], nil)
			out = append(out, o...)
			if err != nil {
				return
			}
		}
		withheld := []byte(nil)
		if c.state == fsStart {
			withheld = c.line
		}
		if !bytes.Equal(append(out, withheld...), data) {
			t.Fatalf("out %q + withheld %q != in %q", out, withheld, data)
		}
	})
}

// testServer is a Server listening on 127.0.0.1 (UDP and TCP), without a store:
// enough for OPTIONS, which is all these tests send.
func testServer(t *testing.T, opt Options) (*Server, *countingObs) {
	t.Helper()
	obs := &countingObs{}
	opt.Addr = "127.0.0.1:0"
	opt.Observer = obs
	if opt.DefaultTrunk.Allow == nil {
		opt.DefaultTrunk.Allow = []string{"127.0.0.1/32"}
	}
	s, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, obs
}

// dialFrom connects from an address; the connection stays open until the test
// ends. (A connection nothing refers to any more is closed by its finalizer at
// the next garbage collection: TestTCPConnectionCaps dropped the two it used
// from 127.0.0.3, and a busy machine's slower run gave the collector time to
// close them under the per-source and total caps it counts.)
func dialFrom(t *testing.T, from string, port int) *net.TCPConn {
	t.Helper()
	c, err := dial(from, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(from string, port int) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// refused dials from an address and waits for the server to close the
// connection (a reset may come as early as the connect).
func refused(t *testing.T, from string, port int, what string) {
	t.Helper()
	c, err := dial(from, port)
	if err != nil {
		if errors.Is(err, syscall.ECONNRESET) {
			return
		}
		t.Fatal(err)
	}
	defer c.Close()
	closedWithin(t, c, 10*time.Second, what)
}

// closedWithin waits for the gateway to close c (EOF or reset) and fails after d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: still open after %s", what, d)
		}
		return time.Since(start)
	}
}

var optionsSeq atomic.Int64

// optionsOver sends an OPTIONS (a new transaction) on c and waits for its 200.
func optionsOver(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte(options(int(100000+optionsSeq.Add(1)), "127.0.0.1"))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("OPTIONS over TCP: %q %v", line, err)
	}
}

// TestTCPOutsideAllowListClosedAtAccept: a connection from an address outside
// the allow-list is reset as it is accepted, before it sends anything; the read
// deadline is long here, so only the accept check can close it.
func TestTCPOutsideAllowListClosedAtAccept(t *testing.T) {
	s, obs := testServer(t, Options{TCPReadTimeout: time.Minute})
	refused(t, "127.0.0.2", s.Port(), "a connection from outside --trunk-allow")
	if obs.count("trunk_allow") != 1 {
		t.Fatalf("trunk_allow drops: %d", obs.count("trunk_allow"))
	}
	if n := s.TCPStats().Open; n != 0 {
		t.Fatalf("%d connections open", n)
	}
	optionsOver(t, dialFrom(t, "127.0.0.1", s.Port()))
}

// TestTCPIdleAndSlowClosed: a connection that sends nothing, one that sends a
// message a byte at a time too slowly, and one silent after its first message
// are closed by their read deadlines; a connection that keeps talking is not.
func TestTCPIdleAndSlowClosed(t *testing.T) {
	s, obs := testServer(t, Options{TCPReadTimeout: 300 * time.Millisecond, TCPIdleTimeout: 600 * time.Millisecond})
	idle := dialFrom(t, "127.0.0.1", s.Port())
	slow := dialFrom(t, "127.0.0.1", s.Port())
	quiet := dialFrom(t, "127.0.0.1", s.Port())
	optionsOver(t, quiet)

	stop := make(chan struct{})
	defer close(stop)
	go func() { // one byte every 100 ms: the message is not whole after 300 ms
		msg := []byte(options(2, "127.0.0.1"))
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; i < len(msg); i++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if _, err := slow.Write(msg[i : i+1]); err != nil {
				return
			}
		}
	}()
	closedWithin(t, idle, 20*time.Second, "an idle connection")
	closedWithin(t, slow, 20*time.Second, "a slow connection")
	closedWithin(t, quiet, 20*time.Second, "a connection silent after its first message")
	if n := obs.count("tcp_timeout"); n != 3 {
		t.Fatalf("tcp_timeout: %d, want 3", n)
	}
	waitUntil(t, 5*time.Second, "connections released", func() bool { return s.TCPStats().Open == 0 })
}

// TestTCPConnectionCaps: connections over the per-source cap are reset; another
// source still gets in, and so does the first once it closes some.
func TestTCPConnectionCaps(t *testing.T) {
	s, obs := testServer(t, Options{TCPMaxConnsPerSource: 3, TCPMaxConns: 5, TCPReadTimeout: time.Minute,
		DefaultTrunk: store.Trunk{Allow: []string{"127.0.0.0/8"}}})
	var held []net.Conn
	for range 3 {
		c := dialFrom(t, "127.0.0.1", s.Port())
		optionsOver(t, c)
		held = append(held, c)
	}
	refused(t, "127.0.0.1", s.Port(), "a 4th connection from one source")
	for range 2 {
		optionsOver(t, dialFrom(t, "127.0.0.3", s.Port()))
	}
	refused(t, "127.0.0.4", s.Port(), "a 6th connection in total")
	if n := obs.count("tcp_conn_limit"); n != 2 {
		t.Fatalf("tcp_conn_limit: %d", n)
	}
	_ = held[0].Close()
	waitUntil(t, 5*time.Second, "a slot freed", func() bool { return s.TCPStats().Open == 4 })
	optionsOver(t, dialFrom(t, "127.0.0.1", s.Port()))
}

// TestTCPPipelinedFlood: 3,000 OPTIONS in one write are 3,000 requests to the
// flood limiter: only the burst is answered, and the connection still works.
func TestTCPPipelinedFlood(t *testing.T) {
	s, obs := testServer(t, Options{FloodRate: 1, FloodBurst: 20})
	var clk atomic.Int64 // the limiter's clock, moved by hand
	clk.Store(time.Now().UnixNano())
	s.flood.mu.Lock()
	s.flood.now = func() time.Time { return time.Unix(0, clk.Load()) }
	s.flood.mu.Unlock()
	c := dialFrom(t, "127.0.0.1", s.Port())
	var b strings.Builder
	for i := range 3000 {
		b.WriteString(options(i, "127.0.0.1"))
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the flood dropped", func() bool { return obs.count("flood") == 2980 })
	// Count the answers: exactly the burst.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	answers := 0
	for answers < 20 {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d answers: %v", answers, err)
		}
		if strings.HasPrefix(l, "SIP/2.0 200") {
			answers++
		}
	}
	// Nothing more comes: a request after a refill (a second on the limiter's
	// clock) is the next answer.
	clk.Add(int64(time.Second))
	if _, err := c.Write([]byte(options(99999, "127.0.0.1"))); err != nil {
		t.Fatal(err)
	}
	// The answers come in any order (sipgo handles each request on its own
	// goroutine): every Call-ID read is one of the first 20 requests' until the last one's.
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if id, ok := strings.CutPrefix(strings.TrimSpace(l), "Call-ID: tcp-"); ok {
			if id == "99999" {
				break
			}
			if n, _ := strconv.Atoi(id); n >= 20 {
				t.Fatalf("an answer to a dropped request: %q", l)
			}
		}
	}
}

// TestTCPListenerRestarts: when the listening socket is closed under the server
// (not by Close), it listens again on the same port and Health says so meanwhile.
func TestTCPListenerRestarts(t *testing.T) {
	s, _ := testServer(t, Options{})
	s.lnMu.Lock()
	g := s.listeners[0].(*guardedListener)
	s.lnMu.Unlock()
	g.Listener.Close() // the raw socket, as a fault would
	waitUntil(t, 10*time.Second, "listening again", func() bool {
		s.lnMu.Lock()
		defer s.lnMu.Unlock()
		return s.listeners[0] != net.Listener(g) && len(s.Health()) == 0
	})
	optionsOver(t, dialFrom(t, "127.0.0.1", s.Port()))
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition
	}
}
