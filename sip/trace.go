package sip

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/store"
)

// SIP message tracing: every SIP message in and out of a call, as it went over
// the wire, with the call's ids and its secrets redacted (the values of
// Authorization and Proxy-Authorization, SDES keys and other SDP key lines).
//
//   - Logged whole when Options.SIPTrace is set (at info level) or the logger
//     is at debug level: interop problems with a carrier no longer need a
//     packet capture.
//   - Kept as the conversation's SIP ladder (store.SIPMessage, at most
//     maxTraceMessages per call, each at most maxTraceBytes) for
//     Options.TraceKeep, written in one batch per second per node.
//
// The listeners' sockets are wrapped (tracedPacketConn, tracedConn): what they
// read is traced once read (a datagram once the allow-list and the flood limiter
// let it in: readFilter), what they write just before it is written, so the
// ladder has the order of the wire (a 200 before the ACK it caused). A call's
// trace starts with its first INVITE from an allowed source, and takes every
// later message with the same Call-ID (and the Call-IDs of its bridged
// transfer legs). Anything else (OPTIONS pings, strays, dropped sources) is not
// traced. Connections sipgo opens itself (a transfer leg to another host) are
// seen through sipgo's process-wide debug hook instead (traceHub), which skips
// our listeners' (UDP, TCP and TLS) traffic: the wrappers have it. That hook
// tells a write after it returned, so on such a socket (an outbound call's: it
// leaves from an ephemeral port, not our listener's) the first answer to a
// request can be recorded a few µs before the request itself.

const (
	maxTraceMessages = 200              // per call
	maxTraceBytes    = 16 << 10         // per message, after redaction
	traceLinger      = 5 * time.Second  // after the call ended: the last ACK or 200 to a BYE
	traceUnattached  = 60 * time.Second // a trace whose INVITE never became a call
	traceFlushEvery  = time.Second
)

// traceWire traces what one of our listeners' connections read or wrote: one
// datagram, or a piece of a stream that f frames into messages.
func (s *Server) traceWire(f *framer, in bool, transport, laddr, raddr string, data []byte) {
	if len(data) == 0 {
		return
	}
	now := time.Now()
	if f == nil {
		s.traceMessage(in, transport, laddr, raddr, data, now, true)
		return
	}
	for _, m := range f.push(data) {
		s.traceMessage(in, transport, laddr, raddr, m, now, true)
	}
}

// traceMessage gives one message to its call's trace; start allows a first
// INVITE to start one. It reports whether the message was a call's.
func (s *Server) traceMessage(in bool, transport, laddr, raddr string, msg []byte, now time.Time, start bool) bool {
	if isKeepalive(msg) {
		return false
	}
	callID := sipHeader(msg, "call-id", "i")
	if callID == "" {
		return false
	}
	ct := s.trace.owner(in && start, callID, laddr, raddr, msg, now)
	if ct == nil {
		return false
	}
	s.trace.record(ct, traceMessage(in, transport, laddr, raddr, callID, msg, now))
	return true
}

// tracedPacketConn is a UDP listener whose datagrams written are traced; those
// read are traced by Server.readFilter once the allow-list and the flood limiter
// let them in.
type tracedPacketConn struct {
	net.PacketConn
	s     *Server
	local string
}

func (c *tracedPacketConn) WriteTo(b []byte, a net.Addr) (int, error) {
	c.s.traceWire(nil, false, "UDP", c.local, a.String(), b)
	return c.PacketConn.WriteTo(b, a)
}

// tracedListener hands out TCP connections whose streams are traced.
type tracedListener struct {
	net.Listener
	s     *Server
	proto string // "TLS" for the --sip-tls listener; "" is TCP
}

func (l tracedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	proto := l.proto
	if proto == "" {
		proto = "TCP"
	}
	return &tracedConn{Conn: c, s: l.s, proto: proto, local: c.LocalAddr().String(), remote: c.RemoteAddr().String()}, nil
}

type tracedConn struct {
	net.Conn
	s             *Server
	proto         string
	local, remote string
	rmu, wmu      sync.Mutex // a reader and writers may overlap
	rf, wf        framer
}

func (c *tracedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.rmu.Lock()
		c.s.traceWire(&c.rf, true, c.proto, c.local, c.remote, b[:n])
		c.rmu.Unlock()
	}
	return n, err
}

func (c *tracedConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	c.s.traceWire(&c.wf, false, c.proto, c.local, c.remote, b)
	c.wmu.Unlock()
	return c.Conn.Write(b)
}

// traceHub is sipgo's debug tracer, for the connections sipgo opens itself:
// it frames their streams and gives each message to the server whose call it
// belongs to. Messages on our listeners' port are traced by the wrappers.
type traceHub struct {
	mu      sync.RWMutex
	servers []*Server // copied on write

	fmu     sync.Mutex
	framers map[string]*framer // stream transports, by direction and addresses
}

var (
	hub     = &traceHub{framers: map[string]*framer{}}
	hubOnce sync.Once
)

// add starts sending s the messages of its calls. sipgo reads its debug flag
// without a lock: it is set once, before any server of this process serves.
func (h *traceHub) add(s *Server) {
	hubOnce.Do(func() {
		gsip.SIPDebugTracer(h)
		gsip.SIPDebug = true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.servers = append(append([]*Server(nil), h.servers...), s)
}

func (h *traceHub) remove(s *Server) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var keep []*Server
	for _, x := range h.servers {
		if x != s {
			keep = append(keep, x)
		}
	}
	h.servers = keep
}

// SIPTraceRead and SIPTraceWrite implement sip.SIPTracer.
func (h *traceHub) SIPTraceRead(transport, laddr, raddr string, msg []byte) {
	h.handle(true, transport, laddr, raddr, msg)
}

func (h *traceHub) SIPTraceWrite(transport, laddr, raddr string, msg []byte) {
	h.handle(false, transport, laddr, raddr, msg)
}

func (h *traceHub) handle(in bool, transport, laddr, raddr string, data []byte) {
	if len(data) == 0 {
		return
	}
	h.mu.RLock()
	servers := h.servers
	h.mu.RUnlock()
	for _, s := range servers {
		if s.ownsListener(laddr) {
			return // one of our listeners (UDP, TCP, TLS): traced by its wrapper
		}
	}
	if len(servers) == 0 {
		return
	}
	now := time.Now()
	msgs := [][]byte{data}
	if !strings.EqualFold(transport, "UDP") {
		msgs = h.frame(in, transport, laddr, raddr, data, now)
	}
	for _, m := range msgs {
		for _, s := range servers {
			if s.traceMessage(in, transport, laddr, raddr, m, now, false) {
				break
			}
		}
	}
}

// framer splits one direction of a stream transport into SIP messages.
type framer struct {
	buf  []byte
	used time.Time
}

const (
	maxFrame   = 256 << 10
	maxFramers = 4096
)

func (h *traceHub) frame(in bool, transport, laddr, raddr string, data []byte, now time.Time) [][]byte {
	dir := "w"
	if in {
		dir = "r"
	}
	key := dir + " " + transport + " " + laddr + " " + raddr
	h.fmu.Lock()
	defer h.fmu.Unlock()
	f := h.framers[key]
	if f == nil {
		if len(h.framers) >= maxFramers {
			for k, x := range h.framers {
				if now.Sub(x.used) > time.Minute {
					delete(h.framers, k)
				}
			}
			if len(h.framers) >= maxFramers {
				clear(h.framers)
			}
		}
		f = &framer{}
		h.framers[key] = f
	}
	f.used = now
	return f.push(data)
}

// push adds bytes read or written and returns the messages now complete:
// headers up to the blank line, then Content-Length bytes of body.
func (f *framer) push(data []byte) [][]byte {
	f.buf = append(f.buf, data...)
	var out [][]byte
	for {
		i := 0
		for i < len(f.buf) && (f.buf[i] == '\r' || f.buf[i] == '\n') {
			i++ // keep-alives between messages
		}
		f.buf = f.buf[i:]
		end := bytes.Index(f.buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(f.buf) > maxFrame {
				f.buf = nil
			}
			break
		}
		n, _ := strconv.Atoi(sipHeader(f.buf[:end+2], "content-length", "l"))
		total := end + 4 + max(n, 0)
		if total > maxFrame {
			f.buf = nil
			break
		}
		if len(f.buf) < total {
			break
		}
		out = append(out, bytes.Clone(f.buf[:total]))
		f.buf = f.buf[total:]
	}
	if len(f.buf) == 0 {
		f.buf = nil
	}
	return out
}

// callTraces are one server's call traces.
type callTraces struct {
	s      *Server
	logOn  bool
	level  slog.Level
	keep   time.Duration // how long ladders are kept; 0: not stored
	max    int           // traces at once
	mu     sync.Mutex
	byID   map[string]*callTrace // by SIP Call-ID; a call's legs map to its trace
	all    map[*callTrace]struct{}
	stop   chan struct{}
	done   chan struct{}
	warned time.Time
}

type callTrace struct {
	id          string       // the call's call_id in logs
	log         *slog.Logger // the call's logger once it has one
	cid, convID int64        // its conversation, once there is one
	attached    bool         // a call owns it: it ends with the call
	pending     []store.SIPMessage
	count       int
	created     time.Time
	ended       time.Time
	callIDs     []string
}

func newCallTraces(s *Server) *callTraces {
	t := &callTraces{s: s, keep: s.opt.TraceKeep, byID: map[string]*callTrace{}, all: map[*callTrace]struct{}{},
		max: 4*s.opt.MaxCalls + 100, stop: make(chan struct{}), done: make(chan struct{})}
	switch {
	case s.opt.SIPTrace:
		t.logOn, t.level = true, slog.LevelInfo
	case s.log.Enabled(context.Background(), slog.LevelDebug):
		t.logOn, t.level = true, slog.LevelDebug
	}
	return t
}

// owner returns the trace a message belongs to; when start is set, it starts
// one for the first INVITE of a call that reached one of our listeners from an
// allowed source.
func (t *callTraces) owner(start bool, callID, laddr, raddr string, msg []byte, now time.Time) *callTrace {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ct := t.byID[callID]; ct != nil {
		return ct
	}
	if !start || !isInitialInvite(msg) || !t.s.ownsListener(laddr) || !t.s.allowedSource(raddr) || len(t.all) >= t.max {
		return nil
	}
	ct := &callTrace{id: gsip.GenerateTagN(10), created: now, callIDs: []string{callID}}
	ct.log = t.s.log.With("call_id", ct.id, "sip_call_id", callID)
	t.byID[callID] = ct
	t.all[ct] = struct{}{}
	return ct
}

// record keeps a message for the ladder and logs it.
func (t *callTraces) record(ct *callTrace, m store.SIPMessage) {
	t.mu.Lock()
	if ct.count < maxTraceMessages {
		ct.count++
		if t.keep > 0 {
			ct.pending = append(ct.pending, m)
		}
	}
	log, leg := ct.log, m.SIPCallID != ct.callIDs[0]
	t.mu.Unlock()
	if t.logOn {
		attrs := []any{"direction", m.Direction, "transport", m.Transport, "local", m.Local, "remote", m.Remote, "cseq", m.CSeq}
		if leg {
			attrs = append(attrs, "leg_sip_call_id", m.SIPCallID) // a bridged transfer's outbound call
		}
		log.Log(context.Background(), t.level, "SIP "+m.Direction+": "+m.FirstLine, append(attrs, "sip", m.Message)...)
	}
}

// callID is the call_id the trace of a SIP Call-ID already logs under, or a new one.
func (t *callTraces) callID(sipCallID string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ct := t.byID[sipCallID]; ct != nil {
		return ct.id
	}
	return gsip.GenerateTagN(10)
}

// attach ties a call's trace to the call: its logger from now on, and its
// conversation (nil: none, the ladder is not stored).
func (t *callTraces) attach(sipCallID string, log *slog.Logger, conv *store.Conversation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ct := t.byID[sipCallID]
	if ct == nil {
		return
	}
	ct.attached, ct.log = true, log
	if conv != nil {
		ct.cid, ct.convID = conv.CompanyID, conv.ID
	}
}

// begin starts the trace of a call we place, by its INVITE's Call-ID, before
// the INVITE is sent (owner starts traces only for INVITEs that arrive),
// attached to the call and its conversation: the outbound call's ladder.
func (t *callTraces) begin(sipCallID string, log *slog.Logger, conv *store.Conversation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[sipCallID] != nil || len(t.all) >= t.max {
		return
	}
	ct := &callTrace{id: gsip.GenerateTagN(10), created: time.Now(), callIDs: []string{sipCallID}, attached: true, log: log}
	if conv != nil {
		ct.cid, ct.convID = conv.CompanyID, conv.ID
	}
	t.byID[sipCallID] = ct
	t.all[ct] = struct{}{}
}

// alias adds a leg's Call-ID (a bridged transfer) to a call's trace.
func (t *callTraces) alias(legCallID, sipCallID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ct := t.byID[sipCallID]; ct != nil && t.byID[legCallID] == nil {
		t.byID[legCallID] = ct
		ct.callIDs = append(ct.callIDs, legCallID)
	}
}

// ended marks a call over: its trace takes the last messages for traceLinger.
func (t *callTraces) ended(sipCallID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ct := t.byID[sipCallID]; ct != nil && ct.ended.IsZero() {
		ct.ended = time.Now()
	}
}

// run writes the ladders once a second until Close, then a last time.
func (t *callTraces) run() {
	defer close(t.done)
	tick := time.NewTicker(traceFlushEvery)
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			t.flush(now, false)
		case <-t.stop:
			t.flush(time.Now(), true)
			return
		}
	}
}

func (t *callTraces) flush(now time.Time, final bool) {
	var batches []store.SIPTraceBatch
	t.mu.Lock()
	for ct := range t.all {
		if ct.convID != 0 && len(ct.pending) > 0 {
			batches = append(batches, store.SIPTraceBatch{CompanyID: ct.cid, ConversationID: ct.convID, Messages: ct.pending})
			ct.pending = nil
		}
		over := !ct.ended.IsZero() && now.Sub(ct.ended) > traceLinger
		stale := !ct.attached && now.Sub(ct.created) > traceUnattached
		if final || over || stale {
			for _, id := range ct.callIDs {
				delete(t.byID, id)
			}
			delete(t.all, ct)
		}
	}
	t.mu.Unlock()
	if len(batches) == 0 || t.keep <= 0 || t.s.opt.Traces == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.s.opt.Traces.AppendSIPTraces(ctx, batches, maxTraceMessages, t.keep); err != nil && now.Sub(t.warned) > time.Minute {
		t.warned = now
		t.s.log.Warn("could not store SIP traces (they are dropped)", "calls", len(batches), "err", err)
	}
}

func (t *callTraces) close() {
	close(t.stop)
	<-t.done
}

// ownsListener: laddr is one of our listeners (UDP and TCP share one port;
// TLS has its own), all of them wrapped and traced by the wrappers.
func (s *Server) ownsListener(laddr string) bool {
	ap, err := netip.ParseAddrPort(laddr)
	if err != nil {
		return false
	}
	if int(ap.Port()) == s.port {
		return true
	}
	for _, l := range s.tlsListeners {
		if a, ok := l.Addr().(*net.TCPAddr); ok && a.Port == int(ap.Port()) {
			return true
		}
	}
	return false
}

func (s *Server) allowedSource(raddr string) bool {
	ap, err := netip.ParseAddrPort(raddr)
	return err == nil && s.allowed(ap.Addr().Unmap())
}

// traceMessage is a message as the ladder keeps it: redacted, and cut at maxTraceBytes.
func traceMessage(in bool, transport, laddr, raddr, callID string, msg []byte, now time.Time) store.SIPMessage {
	dir := "out"
	if in {
		dir = "in"
	}
	first, _, _ := bytes.Cut(msg, []byte("\r\n"))
	text := redactSIP(msg)
	if len(text) > maxTraceBytes {
		text = text[:maxTraceBytes] + "\r\n[" + strconv.Itoa(len(text)-maxTraceBytes) + " more bytes not kept]"
	}
	return store.SIPMessage{At: now.UTC(), Direction: dir, Transport: strings.ToUpper(transport), Local: laddr, Remote: raddr,
		SIPCallID: callID, FirstLine: strings.TrimSpace(string(first)), CSeq: sipHeader(msg, "cseq", ""), Message: text}
}

// sipHeader is the value of the first header named name (or its compact form)
// in a raw message, "" when there is none.
func sipHeader(msg []byte, name, compact string) string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	for _, line := range bytes.Split(head, []byte("\r\n"))[1:] {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		k = bytes.TrimSpace(k)
		if bytes.EqualFold(k, []byte(name)) || (compact != "" && bytes.EqualFold(k, []byte(compact))) {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// isInitialInvite: an INVITE outside any dialog (no To-tag).
func isInitialInvite(msg []byte) bool {
	if !bytes.HasPrefix(msg, []byte("INVITE ")) {
		return false
	}
	to := sipHeader(msg, "to", "t")
	if i := strings.LastIndexByte(to, '>'); i >= 0 {
		to = to[i:]
	}
	return !strings.Contains(strings.ToLower(to), ";tag=")
}

var (
	authParamRe = regexp.MustCompile(`(?i)\b(username|realm)\s*=\s*("[^"]*"|[^,\s]+)`)
	inlineKeyRe = regexp.MustCompile(`(?i)inline:[^\s;]+`)
)

// redactSIP is a message with its secrets replaced by [redacted]: the
// credentials of Authorization and Proxy-Authorization (the scheme, username
// and realm stay, to tell who tried), SDES keys (a=crypto inline: key
// parameters), MIKEY and k= lines, wherever an SDP body carries them.
func redactSIP(msg []byte) string {
	text := string(msg)
	head, body, hasBody := strings.Cut(text, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	out := lines[:0]
	inCreds := false
	for i, l := range lines {
		if i > 0 && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) {
			if !inCreds {
				out = append(out, l) // a folded header goes on
			}
			continue
		}
		inCreds = false
		if name, val, ok := strings.Cut(l, ":"); ok && i > 0 {
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "authorization", "proxy-authorization":
				l = name + ": " + redactCredentials(val)
				inCreds = true
			}
		}
		out = append(out, l)
	}
	var b strings.Builder
	b.Grow(len(text))
	b.WriteString(strings.Join(out, "\r\n"))
	if hasBody {
		b.WriteString("\r\n\r\n")
		b.WriteString(redactSDPKeys(body))
	}
	return b.String()
}

func redactCredentials(val string) string {
	val = strings.TrimSpace(val)
	scheme, params, _ := strings.Cut(val, " ")
	keep := []string{scheme}
	for _, m := range authParamRe.FindAllString(params, 2) {
		keep = append(keep, m+",")
	}
	return strings.Join(keep, " ") + " [redacted]"
}

func redactSDPKeys(body string) string {
	if !strings.Contains(body, "a=crypto:") && !strings.Contains(body, "k=") && !strings.Contains(body, "a=key-mgmt:") {
		return body
	}
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		cr := strings.HasSuffix(l, "\r")
		t := strings.TrimSuffix(l, "\r")
		switch {
		case strings.HasPrefix(t, "a=crypto:"):
			if inlineKeyRe.MatchString(t) {
				t = inlineKeyRe.ReplaceAllString(t, "inline:[redacted]")
			} else if f := strings.Fields(t); len(f) > 2 {
				t = f[0] + " " + f[1] + " [redacted]"
			}
		case strings.HasPrefix(t, "k="):
			t = "k=[redacted]"
		case strings.HasPrefix(t, "a=key-mgmt:"):
			t = "a=key-mgmt:[redacted]"
		default:
			continue
		}
		if cr {
			t += "\r"
		}
		lines[i] = t
	}
	return strings.Join(lines, "\n")
}
