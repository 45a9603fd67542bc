package sip

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SIP over TCP is guarded in two layers, below sipgo:
//
//   - guardedListener, at accept: it never gives up on an accept error (sipgo's
//     accept loop returns on the first one, and a burst of connections that runs
//     the process out of descriptors would end SIP over TCP for good); it backs off
//     as net/http does (5 ms doubling to 1 s) and reports the failure in Health. It
//     closes a connection from outside the trunk allow-list at once (with a reset:
//     nothing is held), and one over the connection caps (per source, total).
//   - framedConn, on each connection: it frames the byte stream into SIP messages
//     (Content-Length), so every request counts against the flood limiter before
//     sipgo parses it (3,000 pipelined OPTIONS in one write are 3,000 requests),
//     drops those over budget, answers INVITEs over the call rate with 503, and
//     enforces read deadlines: the first message within ReadTimeout of the
//     connect, each message whole within ReadTimeout of its first byte (one byte
//     every 10 s does not hold a connection), and at most IdleTimeout of silence
//     between messages (RFC 5626 CRLF keep-alives count as traffic).
//
// A TLS listener (sips) composes the same way: the guard on the raw TCP
// listener, TLS on it, and framedListener on top, where the bytes are SIP.

// tcpOptions tune the TCP guard.
type tcpOptions struct {
	maxConns, maxPerSource int
	readTimeout            time.Duration
	idleTimeout            time.Duration
}

// guardedListener wraps a TCP listener; see above.
type guardedListener struct {
	net.Listener
	s    *Server
	raw  bool          // hand out the connections unframed (TLS goes on them first)
	done chan struct{} // closed by Close: ends a back-off wait

	closeOnce sync.Once
}

func (s *Server) guardListener(l net.Listener) *guardedListener {
	return &guardedListener{Listener: l, s: s, done: make(chan struct{})}
}

// guardRawListener guards a listener whose connections get TLS before framing.
func (s *Server) guardRawListener(l net.Listener) *guardedListener {
	return &guardedListener{Listener: l, s: s, raw: true, done: make(chan struct{})}
}

// countedConn gives its connection slot back when closed.
type countedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func (g *guardedListener) Close() error {
	g.closeOnce.Do(func() { close(g.done) })
	return g.Listener.Close()
}

// Accept returns the next acceptable connection, framed. It returns an error only
// once the listener is closed.
func (g *guardedListener) Accept() (net.Conn, error) {
	s := g.s
	var delay time.Duration
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			// EMFILE, ENFILE, ECONNABORTED, ENOBUFS...: all pass; keep accepting.
			s.tcp.acceptFailed(err)
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else {
				delay = min(2*delay, time.Second)
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-g.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		src, _ := addrOf(c.RemoteAddr())
		if !s.allowed(src) {
			s.obs.Dropped("trunk_allow")
			s.dropWarn.warnSource(s.log, src, "tcp", "connect")
			reset(c)
			continue
		}
		if !s.tcp.reserve(src) {
			s.obs.Dropped("tcp_conn_limit")
			reset(c)
			continue
		}
		release := func() { s.tcp.release(src) }
		if g.raw {
			return &countedConn{Conn: c, release: release}, nil
		}
		return s.frame(c, src, release), nil
	}
}

// reset closes a connection with a RST: no FIN_WAIT or TIME_WAIT state kept for a
// peer we refuse.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// tcpState is the server's TCP bookkeeping: open connections per source and the
// accept loop's health.
type tcpState struct {
	opt tcpOptions

	mu        sync.Mutex
	perSource map[netip.Addr]int
	total     int

	lastErrAt atomic.Int64 // unix nanos of the last accept error
	lastErr   atomic.Pointer[string]
	errors    atomic.Uint64
	stopped   atomic.Int32 // listeners stopped and being restarted
	onError   func(error)
}

func (t *tcpState) reserve(src netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.total >= t.opt.maxConns || t.perSource[src] >= t.opt.maxPerSource {
		return false
	}
	t.total++
	t.perSource[src]++
	return true
}

func (t *tcpState) release(src netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total--
	if t.perSource[src]--; t.perSource[src] <= 0 {
		delete(t.perSource, src)
	}
}

// open is how many SIP TCP connections are open now.
func (t *tcpState) open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

func (t *tcpState) acceptFailed(err error) {
	first := time.Since(time.Unix(0, t.lastErrAt.Load())) > acceptErrorWindow
	t.lastErrAt.Store(time.Now().UnixNano())
	msg := err.Error()
	t.lastErr.Store(&msg)
	t.errors.Add(1)
	if first && t.onError != nil {
		t.onError(err)
	}
}

// acceptErrorWindow: the accept loop counts as failing while its last error is at
// most this old. During an outage errors repeat at least every second (the back-off
// ceiling); once accept works again the next attempt waits for a connection
// without error, so the window passes.
const acceptErrorWindow = 2 * time.Second

// problem describes the TCP listeners' trouble now ("" when none).
func (t *tcpState) problem() string {
	if n := t.stopped.Load(); n > 0 {
		return "sip tcp listener stopped (restarting)"
	}
	if at := t.lastErrAt.Load(); at != 0 && time.Since(time.Unix(0, at)) <= acceptErrorWindow {
		msg := ""
		if p := t.lastErr.Load(); p != nil {
			msg = *p
		}
		return "sip tcp accept failing: " + msg
	}
	return ""
}

// framedListener frames the connections of an already guarded listener (TLS).
type framedListener struct {
	net.Listener
	s *Server
}

func (f framedListener) Accept() (net.Conn, error) {
	c, err := f.Listener.Accept()
	if err != nil {
		return nil, err
	}
	src, _ := addrOf(c.RemoteAddr())
	return f.s.frame(c, src, nil), nil
}

// Limits of one message on a stream: a longer start or header line, a longer
// header block or a larger body closes the connection (sipgo would not frame it
// either).
const (
	maxLine   = 8 << 10
	maxHeader = 64 << 10
	maxBody   = 256 << 10
)

type frameState uint8

const (
	fsBetween frameState = iota // between messages (CRLF keep-alives pass)
	fsStart                     // in the start line (withheld until we decide)
	fsHeaders
	fsBody
)

type frameMode uint8

const (
	fmKeep   frameMode = iota // pass the message to sipgo
	fmDrop                    // over budget: swallow it
	fmReject                  // an INVITE over the call rate: answer 503 once its headers are in
)

// framedConn: see the top of the file. Read runs on sipgo's one reader goroutine
// per connection; Close may run anywhere.
type framedConn struct {
	net.Conn
	s       *Server
	src     netip.Addr
	release func()
	once    sync.Once

	raw      []byte
	state    frameState
	mode     frameMode
	line     []byte // the current line (start line: withheld)
	head     []byte // the header block, kept only to build a 503
	headLen  int
	clValue  []byte // Content-Length's value
	inCL     bool   // the current header line is Content-Length (for folded values)
	body     int    // body bytes left
	opened   time.Time
	msgStart time.Time
	lastSeen time.Time // last message or keep-alive (zero: none yet)
}

func (s *Server) frame(c net.Conn, src netip.Addr, release func()) *framedConn {
	return &framedConn{Conn: c, s: s, src: src, release: release, opened: time.Now()}
}

func (c *framedConn) Close() error {
	c.once.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return c.Conn.Close()
}

var errFraming = errors.New("sip: TCP framing")

func (c *framedConn) deadline() time.Time {
	o := c.s.tcp.opt
	switch {
	case c.state != fsBetween:
		return c.msgStart.Add(o.readTimeout)
	case c.lastSeen.IsZero():
		return c.opened.Add(o.readTimeout)
	}
	return c.lastSeen.Add(o.idleTimeout)
}

// Read returns the bytes of the messages we keep. It reads into its own buffer,
// never more than p can take back.
func (c *framedConn) Read(p []byte) (int, error) {
	for {
		room := len(p) // withheld start-line bytes come out with the next ones
		if c.state == fsStart {
			room -= len(c.line)
		}
		if room <= 0 {
			return 0, errFraming
		}
		if cap(c.raw) < room {
			c.raw = make([]byte, min(room, 32<<10))
		}
		_ = c.Conn.SetReadDeadline(c.deadline())
		n, err := c.Conn.Read(c.raw[:min(room, cap(c.raw))])
		if n > 0 {
			out, ferr := c.feed(time.Now(), c.raw[:n], p[:0])
			if ferr != nil {
				c.s.obs.Dropped("tcp_framing")
				return 0, io.EOF
			}
			if len(out) > 0 {
				return len(out), nil
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.s.obs.Dropped("tcp_timeout")
				return 0, io.EOF // sipgo closes the connection quietly
			}
			return 0, err
		}
	}
}

// feed frames b and appends the bytes to pass on to out.
func (c *framedConn) feed(now time.Time, b []byte, out []byte) ([]byte, error) {
	for len(b) > 0 {
		switch c.state {
		case fsBetween:
			i := 0
			for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
				i++
			}
			if i > 0 {
				out = append(out, b[:i]...)
				c.lastSeen = now
				b = b[i:]
				continue
			}
			c.state, c.msgStart, c.mode = fsStart, now, fmKeep
			c.line, c.head, c.headLen, c.clValue, c.inCL, c.body = c.line[:0], c.head[:0], 0, c.clValue[:0], false, 0
		case fsStart:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				if len(c.line)+len(b) > maxLine {
					return out, errFraming
				}
				c.line = append(c.line, b...)
				return out, nil
			}
			c.line = append(c.line, b[:i+1]...)
			b = b[i+1:]
			c.decide()
			c.headLen = len(c.line)
			switch c.mode {
			case fmKeep:
				out = append(out, c.line...)
			case fmReject:
				c.head = append(c.head, c.line...)
			}
			c.line = c.line[:0]
			c.state = fsHeaders
		case fsHeaders:
			i := bytes.IndexByte(b, '\n')
			chunk := b
			if i >= 0 {
				chunk = b[:i+1]
			}
			if len(c.line)+len(chunk) > maxLine || c.headLen+len(chunk) > maxHeader {
				return out, errFraming
			}
			c.line = append(c.line, chunk...)
			c.headLen += len(chunk)
			switch c.mode {
			case fmKeep:
				out = append(out, chunk...)
			case fmReject:
				c.head = append(c.head, chunk...)
			}
			b = b[len(chunk):]
			if i < 0 {
				continue
			}
			if err := c.headerLine(); err != nil {
				return out, err
			}
			c.line = c.line[:0]
		case fsBody:
			n := min(c.body, len(b))
			if c.mode == fmKeep {
				out = append(out, b[:n]...)
			}
			c.body -= n
			b = b[n:]
			if c.body == 0 {
				c.endMessage(now)
			}
		}
	}
	return out, nil
}

// decide runs at the end of the start line: a response passes; a request takes
// a token from the limiter.
func (c *framedConn) decide() {
	line := c.line
	if bytes.HasPrefix(line, []byte("SIP/")) {
		c.mode = fmKeep
		return
	}
	invite := bytes.HasPrefix(line, []byte("INVITE "))
	switch v := c.s.flood.allow(c.src, invite); v {
	case admit:
		c.mode = fmKeep
	case overCalls:
		c.s.obs.Dropped(v.dropCause())
		c.mode = fmReject
	default:
		c.s.obs.Dropped(v.dropCause())
		c.mode = fmDrop
	}
}

// headerLine handles one complete header line (in c.line).
func (c *framedConn) headerLine() error {
	l := bytes.TrimRight(c.line, "\r\n")
	if len(l) == 0 { // the end of the headers
		n := 0
		if v := bytes.TrimSpace(c.clValue); len(v) > 0 {
			var err error
			if n, err = strconv.Atoi(string(v)); err != nil || n < 0 || n > maxBody {
				return errFraming
			}
		}
		if c.mode == fmReject {
			if res := statelessReject(c.head, 503, "Service Unavailable", "Retry-After: 5"); res != nil {
				_, _ = c.Conn.Write(res)
			}
			c.head = c.head[:0]
		}
		c.body = n
		if n == 0 {
			c.endMessage(time.Now())
		} else {
			c.state = fsBody
		}
		return nil
	}
	if l[0] == ' ' || l[0] == '\t' { // a folded continuation
		if c.inCL {
			c.clValue = append(c.clValue, l...)
		}
		return nil
	}
	name, val, ok := bytes.Cut(l, []byte(":"))
	if !ok {
		c.inCL = false
		return nil // sipgo decides what a line without a colon means
	}
	name = bytes.TrimSpace(name)
	c.inCL = strings.EqualFold(string(name), "content-length") || strings.EqualFold(string(name), "l")
	if c.inCL {
		c.clValue = append(c.clValue[:0], val...)
	}
	return nil
}

func (c *framedConn) endMessage(now time.Time) {
	c.state = fsBetween
	c.lastSeen = now
	if cap(c.head) > maxLine {
		c.head = nil // do not keep a large buffer per connection
	}
}

// serveTCP serves listener i until the server closes. If the listener stops for
// any other reason (its socket closed under it), it listens again on the same
// address, backing off up to 5 s between attempts, and Health reports it
// meanwhile.
func (s *Server) serveTCP(i int) {
	for {
		s.lnMu.Lock()
		l := s.listeners[i]
		s.lnMu.Unlock()
		err := s.srv.ServeTCP(tracedListener{Listener: l, s: s})
		if s.closed.Load() {
			return
		}
		addr := l.Addr()
		s.tcp.stopped.Add(1)
		s.log.Error("SIP TCP listener stopped; listening again", "addr", addr.String(), "err", err)
		for delay := 10 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
			nl, err := net.Listen(addr.Network(), addr.String())
			if err == nil {
				s.lnMu.Lock()
				if s.closed.Load() {
					s.lnMu.Unlock()
					nl.Close()
					s.tcp.stopped.Add(-1)
					return
				}
				s.listeners[i] = s.guardListener(nl)
				s.lnMu.Unlock()
				s.tcp.stopped.Add(-1)
				s.log.Info("SIP TCP listening again", "addr", addr.String())
				break
			}
			s.log.Warn("SIP TCP listen failed; retrying", "addr", addr.String(), "err", err)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.killAll:
				t.Stop()
				s.tcp.stopped.Add(-1)
				return
			}
		}
	}
}

// Health lists what keeps the SIP side from taking calls now (empty: nothing):
// not listening, closed, draining, or a TCP listener failing to accept or being
// restarted. /readyz reports it.
func (s *Server) Health() []string {
	var problems []string
	if s.port == 0 || s.closed.Load() {
		problems = append(problems, "sip not listening")
	}
	if s.draining.Load() {
		problems = append(problems, "draining")
	}
	if p := s.tcp.problem(); p != "" {
		problems = append(problems, p)
	}
	return problems
}

// TCPStats are the SIP TCP listeners' counters, for metrics.
type TCPStats struct {
	Open         int    // connections open now
	AcceptErrors uint64 // accept calls that failed (descriptors exhausted, ...)
}

// TCPStats returns the TCP counters.
func (s *Server) TCPStats() TCPStats {
	return TCPStats{Open: s.tcp.open(), AcceptErrors: s.tcp.errors.Load()}
}
