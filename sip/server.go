// Package sip is the gateway's SIP user agent: it answers the INVITEs a trunk sends
// for pooled numbers, negotiates media, runs each call's dialog (re-INVITE, UPDATE,
// session timers, BYE, CANCEL) and hands the answered call to its far side (the
// voice-AI bridge or the echo line). It is built on emiago/sipgo's transport and
// transaction layers; dialogs are managed here.
package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/media/jitter"
	"github.com/cxco/gateway/store"
)

// Options configure a Server.
type Options struct {
	// Addr is where to listen, UDP and TCP: ":5060" listens on every IPv4 and IPv6
	// address; "127.0.0.1:5060" or "[::1]:5060" on one. Port 0 picks a free port.
	Addr string
	// PublicIP is written into Contact, Via and SDP (IPv4 or IPv6). PublicIP6, when
	// set, is used for IPv6 peers.
	PublicIP, PublicIP6 netip.Addr
	// DefaultTrunk is the trunk of the flags (ID 0): its Allow lists the sources
	// that may send requests (with the other trunks'); others are dropped
	// silently. InboundAuth with Username turns on digest authentication of its
	// INVITEs; Username and DefaultTrunkPassword answer its challenges. Its URI is
	// where outbound calls (bridged transfers) go; empty: back to the trunk the
	// call came from.
	DefaultTrunk         store.Trunk
	DefaultTrunkPassword string
	// TLSAddr is where SIP over TLS listens ("" = nowhere), with the PEM
	// certificate and key in TLSCertFile and TLSKeyFile (read again on
	// ReloadTLS). TLSCAFile verifies the peers of our outbound TLS connections
	// (empty: the system's roots).
	TLSAddr, TLSCertFile, TLSKeyFile, TLSCAFile string
	// RegisterRetry and RegisterRetryMax bound the back-off between failed
	// registrations (default 5 s doubling to 10 min); NetworkPoll is how often the
	// machine's addresses are checked for a change (default 10 s).
	RegisterRetry, RegisterRetryMax, NetworkPoll time.Duration
	// Trunks are the trunks the agency stores (nil: the default trunk only).
	Trunks TrunkSource
	// TrunkPoll is how often the stored trunks' version is checked (default 2 s).
	TrunkPoll time.Duration
	// MaxCalls bounds the calls in setup or up; more INVITEs get 503 with Retry-After.
	MaxCalls int
	// RTPTimeout ends a call after this long without RTP (not while on hold).
	RTPTimeout time.Duration
	// EchoNumber answers every call with the caller's own audio.
	EchoNumber string
	// FloodRate and FloodBurst bound the requests of one source address, every
	// method and transport (token bucket); 0 means the default (300/s, burst 600),
	// negative means no limit (and no GlobalRate either).
	FloodRate  float64
	FloodBurst int
	// GlobalRate bounds the requests of all sources together, shared fairly
	// between the sources sending (default 2000/s; negative: none).
	GlobalRate float64
	// CallRate bounds new INVITEs a second from all sources together, shared
	// fairly between the sources sending INVITEs; more get 503 with Retry-After,
	// answered before parsing (default 200/s; negative: none).
	CallRate float64
	// TCPMaxConns and TCPMaxConnsPerSource cap open SIP TCP connections, in
	// total (default 1024; cmd/cxco keeps it below the descriptor limit) and from
	// one address (default 64). Connections over a cap are reset at once.
	TCPMaxConns, TCPMaxConnsPerSource int
	// TCPReadTimeout: a TCP connection must send its first message within this
	// long of connecting, and each message whole within this long of its first
	// byte (default 5 s). TCPIdleTimeout closes one silent for this long (default
	// 10 min; CRLF keep-alives count).
	TCPReadTimeout, TCPIdleTimeout time.Duration
	// RTPLatching is the NAT latching policy of trunks that set none
	// (store.LatchOff, the default, or store.LatchSource); see media.SourcePolicy.
	RTPLatching string
	// RTPSources, when set, counts the RTP the source policy refused (metrics).
	RTPSources *media.SourceCounters
	// SessionMinSE is our Min-SE for RFC 4028 session timers (default 90 s).
	SessionMinSE time.Duration
	// T1 is RFC 3261's round-trip estimate (default 500 ms); every SIP timer
	// follows it, among them the 64*T1 after which an unacknowledged 200 ends the
	// call. RFC 3261 §17.1.1.1 allows a smaller T1 on private networks. It is
	// process-wide (sipgo's timers are).
	T1 time.Duration
	// TransferTimeout bounds a REFER transfer from REFER to its final NOTIFY (default 30 s).
	TransferTimeout time.Duration

	// Calls routes dialled numbers and records calls (nil: only the echo line).
	Calls Calls
	// Live is where live calls are published (nil: none are).
	Live LiveStore
	// Traces keeps SIP ladders (nil: none are kept).
	Traces    TraceStore
	Connector callpath.Connector // the far side of agent calls
	Ports     *media.PortPool
	Wheel     *clock.Wheel
	// JitterMin/JitterMax and Concealment configure every call's jitter buffer.
	JitterMin, JitterMax time.Duration
	Concealment          jitter.Concealment
	Logger               *slog.Logger
	// Observer is told about call events (metrics); nil is fine.
	Observer Observer
	// SIPTrace logs every SIP message of every call whole, at info level (at
	// debug level they are logged anyway), secrets redacted.
	SIPTrace bool
	// TraceKeep is how long a conversation's SIP ladder is kept in the store;
	// 0 keeps none.
	TraceKeep time.Duration
	// Node names this node in the live calls it publishes (store.LiveCall);
	// empty: no live calls are published, and none are hung up on request.
	Node string
}

// Observer receives call events for metrics.
type Observer interface {
	CallStarted()
	CallAnswered(setup time.Duration)
	CallEnded(reason string, status int, stats media.Stats)
	Rejected(status int)
	Dropped(why string)
}

type nopObserver struct{}

func (nopObserver) CallStarted()                       {}
func (nopObserver) CallAnswered(time.Duration)         {}
func (nopObserver) CallEnded(string, int, media.Stats) {}
func (nopObserver) Rejected(int)                       {}
func (nopObserver) Dropped(string)                     {}

// Server is the SIP user agent.
type Server struct {
	opt   Options
	log   *slog.Logger
	obs   Observer
	ua    *sipgo.UserAgent
	srv   *sipgo.Server
	cli   *sipgo.Client
	flood *floodLimiter
	// rejected bounds the INVITE transactions kept after a final error response.
	rejected *rejectedTxs
	// dropWarn logs requests dropped by the allow-list, once per source a minute.
	dropWarn dropWarner
	udp      udpResponder
	// trunkSet is the compiled trunks (ReloadTrunks); reloadMu orders reloads.
	trunkSnap atomic.Pointer[trunkSet]
	reloadMu  sync.Mutex
	stopBg    chan struct{}
	bgWG      sync.WaitGroup
	certs     tlsCerts
	tlsPort   int
	regs      *registrations
	listening atomic.Bool
	tcp       *tcpState
	authGuard *authGuard // digest failures and lockouts per source, nonce counts seen
	// mediaIP is where calls bind their RTP: the --sip host when that is one
	// address, so a gateway bound to one interface listens on no other; the zero
	// Addr (every address) when SIP listens on every address.
	mediaIP netip.Addr
	trace   *callTraces
	tracing bool // trace.run is running

	liveKick   chan struct{}
	liveMu     sync.Mutex
	liveWarned time.Time

	conns        []net.PacketConn
	lnMu         sync.Mutex
	listeners    []net.Listener // the guarded TCP listeners, replaced when one is restarted
	tlsListeners []net.Listener
	port         int
	serveWG      sync.WaitGroup

	mu       sync.Mutex
	calls    map[string]*call   // by dialog id
	legs     map[string]*outLeg // outbound legs (bridged transfers, outbound calls), by dialog id
	outbound map[int64]*outCall // outbound calls under way, by conversation id
	setup    atomic.Int64       // calls in setup or up
	draining atomic.Bool
	closed   atomic.Bool
	callWG   sync.WaitGroup
	// callMu orders callWG.Add against HangupAll's Wait: no call is counted
	// once HangupAll has begun (callsDone), and a WaitGroup must not be added
	// to while it is waited on at zero.
	callMu    sync.Mutex
	callsDone bool
	killAll   chan struct{}
	killOnce  sync.Once
}

// New prepares a server; Listen binds it.
func New(opt Options) (*Server, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.MaxCalls <= 0 {
		opt.MaxCalls = 1000
	}
	if opt.RTPTimeout <= 0 {
		opt.RTPTimeout = 30 * time.Second
	}
	switch {
	case opt.FloodRate == 0:
		opt.FloodRate, opt.FloodBurst = 300, 600
	case opt.FloodRate < 0:
		opt.FloodRate = 0 // the limiter lets everything through
	}
	if opt.FloodBurst <= 0 {
		opt.FloodBurst = int(2 * opt.FloodRate)
	}
	if opt.GlobalRate == 0 {
		opt.GlobalRate = 2000
	}
	if opt.CallRate == 0 {
		opt.CallRate = 200
	}
	if opt.TCPMaxConns <= 0 {
		opt.TCPMaxConns = 1024
	}
	if opt.TCPMaxConnsPerSource <= 0 {
		opt.TCPMaxConnsPerSource = 64
	}
	if opt.TCPReadTimeout <= 0 {
		opt.TCPReadTimeout = 5 * time.Second
	}
	if opt.TCPIdleTimeout <= 0 {
		opt.TCPIdleTimeout = 10 * time.Minute
	}
	if opt.SessionMinSE <= 0 {
		opt.SessionMinSE = 90 * time.Second
	}
	if opt.TransferTimeout <= 0 {
		opt.TransferTimeout = 30 * time.Second
	}
	if opt.T1 > 0 && opt.T1 != gsip.T1 {
		gsip.SetTimers(opt.T1, max(gsip.T2, 8*opt.T1), gsip.T4)
	}
	if !opt.PublicIP.IsValid() {
		opt.PublicIP = netip.MustParseAddr("127.0.0.1")
	}
	s := &Server{opt: opt, log: opt.Logger, obs: opt.Observer, calls: map[string]*call{}, legs: map[string]*outLeg{}, outbound: map[int64]*outCall{}, killAll: make(chan struct{}),
		flood: newFloodLimiter(limiterOptions{rate: opt.FloodRate, burst: opt.FloodBurst, global: opt.GlobalRate, calls: opt.CallRate}),
		udp:   udpResponder{conns: map[string]net.PacketConn{}}}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	s.rejected = newRejectedTxs(rejectedTxsMax(opt.CallRate), func() { s.obs.Dropped("rejection_held") })
	s.trace = newCallTraces(s)
	s.liveKick = make(chan struct{}, 1)
	s.authGuard = newAuthGuard(nil)
	s.tcp = &tcpState{opt: tcpOptions{maxConns: opt.TCPMaxConns, maxPerSource: opt.TCPMaxConnsPerSource,
		readTimeout: opt.TCPReadTimeout, idleTimeout: opt.TCPIdleTimeout}, perSource: map[netip.Addr]int{},
		onError: func(err error) { s.log.Error("SIP TCP accept failing; retrying with back-off", "err", err) }}
	if opt.TrunkPoll <= 0 {
		opt.TrunkPoll = 2 * time.Second
	}
	s.opt.TrunkPoll = opt.TrunkPoll
	if opt.RegisterRetry <= 0 {
		opt.RegisterRetry = 5 * time.Second
	}
	if opt.RegisterRetryMax <= 0 {
		opt.RegisterRetryMax = 10 * time.Minute
	}
	if opt.NetworkPoll <= 0 {
		opt.NetworkPoll = 10 * time.Second
	}
	s.opt.RegisterRetry, s.opt.RegisterRetryMax, s.opt.NetworkPoll = opt.RegisterRetry, opt.RegisterRetryMax, opt.NetworkPoll
	s.stopBg = make(chan struct{})
	s.regs = newRegistrations(s)
	def := opt.DefaultTrunk
	s.trunkSnap.Store(&trunkSet{version: -1, all: []*trunk{s.compileTrunk(context.Background(), &def, opt.DefaultTrunkPassword)}})
	if err := s.ReloadTLS(); err != nil {
		return nil, err
	}
	return s, nil
}

// Listen binds the UDP and TCP sockets and starts serving.
func (s *Server) Listen() error {
	host, portStr, err := net.SplitHostPort(s.opt.Addr)
	if err != nil {
		return fmt.Errorf("sip: listen address %q: %w", s.opt.Addr, err)
	}
	port, _ := strconv.Atoi(portStr)
	var binds []bind
	ip, err := netip.ParseAddr(host)
	switch {
	case host == "":
		binds = []bind{{"udp4", "0.0.0.0"}, {"udp6", "::"}}
	case err != nil:
		return fmt.Errorf("sip: listen host %q is not an IP address", host)
	case ip.Is4():
		binds = []bind{{"udp4", ip.String()}}
	default:
		binds = []bind{{"udp6", ip.String()}}
	}
	if ip.IsValid() && !ip.IsUnspecified() {
		s.mediaIP = ip
	}
	// Bind every socket on one port: the first picks it when it is 0.
	for attempt := 0; ; attempt++ {
		err = s.bindAll(binds, port)
		if err == nil || port != 0 || attempt > 20 {
			break
		}
	}
	if err != nil {
		return err
	}
	if err := s.listenTLS(); err != nil {
		s.closeSockets()
		return err
	}
	s.setupUA()
	if s.opt.Trunks != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.ReloadTrunks(ctx); err != nil {
			s.log.Warn("cannot read the stored trunks yet; the default trunk works, the others once the store answers", "err", err)
		}
		cancel()
		s.bgWG.Add(1)
		go s.watchTrunks(s.stopBg, s.opt.TrunkPoll, &s.bgWG)
	}
	hub.add(s)
	s.tracing = true
	go s.trace.run()
	if s.opt.Node != "" && s.opt.Live != nil {
		s.bgWG.Add(1)
		go s.runLive(s.stopBg, &s.bgWG)
	}
	for _, c := range s.conns {
		s.serveWG.Add(1)
		tc := &tracedPacketConn{PacketConn: c, s: s, local: c.LocalAddr().String()}
		go func() { defer s.serveWG.Done(); _ = s.srv.ServeUDP(tc) }()
	}
	s.awaitUDPServed()
	for i := range s.listeners {
		s.serveWG.Add(1)
		go func() { defer s.serveWG.Done(); s.serveTCP(i) }()
	}
	for _, l := range s.tlsListeners {
		s.serveWG.Add(1)
		go func() { defer s.serveWG.Done(); _ = s.srv.ServeTLS(tracedListener{Listener: l, s: s, proto: "TLS"}) }()
	}
	// Registrations start once the sockets serve (the registrar's 200 and the
	// carrier's INVITEs come back to them).
	s.listening.Store(true)
	s.regs.sync(s.trunks().all)
	s.regs.wg.Add(1)
	go s.regs.watchNetwork(s.stopBg, s.opt.NetworkPoll)
	s.log.Info("SIP listening", "udp_tcp", s.Addrs(), "tls", s.TLSAddrs(), "public_ip", s.opt.PublicIP.String())
	return nil
}

// rejectedTxsMax: four seconds of the call rate (see rejectedTxs), and as many
// as at the default rate when there is none.
func rejectedTxsMax(callRate float64) int {
	if callRate <= 0 {
		callRate = 200
	}
	return max(64, int(4*callRate))
}

type bind struct{ network, addr string }

func (s *Server) bindAll(binds []bind, port int) error {
	var conns []net.PacketConn
	var lns []net.Listener
	undo := func() {
		for _, c := range conns {
			c.Close()
		}
		for _, l := range lns {
			l.Close()
		}
	}
	p := port
	for _, b := range binds {
		c, err := net.ListenPacket(b.network, net.JoinHostPort(b.addr, strconv.Itoa(p)))
		if err != nil {
			if b.network == "udp6" && b.addr == "::" && len(binds) > 1 && !isAddrInUse(err) {
				continue // no IPv6 on this machine
			}
			undo()
			return fmt.Errorf("sip: listen %s %s: %w", b.network, net.JoinHostPort(b.addr, strconv.Itoa(p)), err)
		}
		p = c.LocalAddr().(*net.UDPAddr).Port
		// A deep receive buffer absorbs bursts while the flood limiter sorts them out
		// (the kernel caps it at net.core.rmem_max).
		_ = c.(*net.UDPConn).SetReadBuffer(4 << 20)
		tcp := "tcp" + b.network[3:]
		l, err := net.Listen(tcp, net.JoinHostPort(b.addr, strconv.Itoa(p)))
		if err != nil {
			c.Close()
			undo()
			return fmt.Errorf("sip: listen %s %s: %w", tcp, net.JoinHostPort(b.addr, strconv.Itoa(p)), err)
		}
		conns, lns = append(conns, c), append(lns, s.guardListener(l))
	}
	s.conns, s.listeners, s.port = conns, lns, p
	for _, c := range conns {
		s.udp.conns[c.LocalAddr().String()] = c
	}
	return nil
}

func isAddrInUse(err error) bool { return strings.Contains(err.Error(), "address already in use") }

// Closed reports whether Close was called.
func (s *Server) Closed() bool { return s.closed.Load() }

// Port is the SIP port every listener shares.
func (s *Server) Port() int { return s.port }

// Addrs lists the bound UDP addresses (TCP listens on the same).
func (s *Server) Addrs() []string {
	var out []string
	for _, c := range s.conns {
		out = append(out, c.LocalAddr().String())
	}
	return out
}

var sipgoGlobals sync.Once

func (s *Server) setupUA() {
	// sipgo's package settings, set once per process (a second Server in the same
	// process, in tests, must not write them while the first one's goroutines read them).
	sipgoGlobals.Do(func() {
		// Large SDP offers and REFER NOTIFYs must not fail on UDP (sipgo refuses > MTU-200).
		gsip.UDPMTUSize = 9000
		gsip.SetDefaultLogger(quietLogger(s.log))
	})
	ua, _ := sipgo.NewUA(
		sipgo.WithUserAgent("CXCo"),
		sipgo.WithUserAgentTransportLayerOptions(
			transportLogger(s.log),
			gsip.WithTransportLayerReadFilter(s.readFilter),
		),
		sipgo.WithUserAgenTLSConfig(s.clientTLSConfig()),
		sipgo.WithUserAgentTransactionLayerOptions(
			gsip.WithTransactionLayerLogger(quietLogger(s.log)),
			gsip.WithTransactionLayerUnhandledResponseHandler(func(*gsip.Response) { s.obs.Dropped("stray_response") }),
		),
	)
	s.ua = ua
	s.srv, _ = sipgo.NewServer(ua, sipgo.WithServerLogger(quietLogger(s.log)))
	s.cli, _ = sipgo.NewClient(ua, sipgo.WithClientLogger(quietLogger(s.log)))
	s.register()
}

// readFilter runs on every datagram and TCP read before sipgo parses it: it drops
// sources outside the trunk allow-list (silently), rate-limits new requests per
// source, and answers requests sipgo could not parse with a stateless 400.
func (s *Server) readFilter(p gsip.TransportReadProps, data []byte) ([]byte, error) {
	src, ok := addrOf(p.RemoteAddr)
	if !ok || !s.allowed(src) {
		s.obs.Dropped("trunk_allow")
		s.dropWarn.warn(s.log, src, p.Transport, data)
		if tr := strings.ToLower(p.Transport); strings.HasPrefix(tr, "tcp") || strings.HasPrefix(tr, "tls") {
			return nil, errors.New("source not in --trunk-allow")
		}
		return nil, nil
	}
	udp := strings.HasPrefix(strings.ToLower(p.Transport), "udp")
	// Every request counts against the flood limiter, before it is parsed; over a
	// stream transport the framed connection has counted each message already.
	if udp && isRequest(data) {
		switch v := s.flood.allow(src, bytes.HasPrefix(data, []byte("INVITE "))); v {
		case admit:
		case overCalls:
			s.obs.Dropped(v.dropCause())
			s.udp.send(p.LocalAddr, p.RemoteAddr, statelessReject(data, 503, "Service Unavailable", "Retry-After: 5"))
			return nil, nil
		default:
			s.obs.Dropped(v.dropCause())
			return nil, nil
		}
	}
	if udp && s.ownsListener(p.LocalAddr.String()) {
		// Traced once let in (a stream is traced by its connection's wrapper): a
		// flood's datagrams shed above cost no trace, and their INVITEs no longer
		// take the trace table's places (60 s each) from the calls let in. A
		// socket sipgo opened itself (an outbound call's) is traced by the hub.
		s.traceWire(nil, true, "UDP", p.LocalAddr.String(), p.RemoteAddr.String(), data)
	}
	if udp && len(data) > 4 && !isKeepalive(data) {
		if _, err := gsip.ParseMessage(data); err != nil {
			code, reason := 400, "Bad Request"
			if unknownScheme(data) {
				code, reason = 416, "Unsupported URI Scheme"
			}
			s.udp.send(p.LocalAddr, p.RemoteAddr, statelessReject(data, code, reason))
			s.obs.Dropped("malformed")
			return nil, nil
		}
	}
	return data, nil
}

func isKeepalive(b []byte) bool {
	for _, c := range b {
		if c != '\r' && c != '\n' && c != ' ' && c != 0 {
			return false
		}
	}
	return true
}

// isNewRequest: an INVITE, OPTIONS, REGISTER, ... that starts something (not an
// ACK, BYE or CANCEL of something already under way, and not a response).
func isNewRequest(b []byte) bool {
	for _, m := range []string{"INVITE ", "OPTIONS ", "REGISTER ", "MESSAGE ", "SUBSCRIBE ", "REFER ", "PUBLISH "} {
		if len(b) >= len(m) && string(b[:len(m)]) == m {
			return true
		}
	}
	return false
}

// isRequest: a datagram that is not a response and not a keep-alive, so a
// request of any method (or garbage, which costs a parse too).
func isRequest(b []byte) bool {
	return len(b) > 4 && !bytes.HasPrefix(b, []byte("SIP/")) && !isKeepalive(b)
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	switch v := a.(type) {
	case *net.UDPAddr:
		ap := v.AddrPort()
		return ap.Addr().Unmap(), true
	case *net.TCPAddr:
		ap := v.AddrPort()
		return ap.Addr().Unmap(), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap(), err == nil
}

// allowed: some trunk allows the source.
func (s *Server) allowed(a netip.Addr) bool { return s.trunks().match(a) != nil }

// Drain stops taking new calls: INVITEs get 503 with Retry-After and OPTIONS says
// 503 too, so a proxy in front (Kamailio's dispatcher) takes this node out.
func (s *Server) Drain() { s.draining.Store(true) }

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// ActiveCalls is the number of calls in setup or up.
func (s *Server) ActiveCalls() int { return int(s.setup.Load()) }

// WaitIdle waits until no call is in setup or up, or ctx ends.
func (s *Server) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for s.setup.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// HangupAll ends every call (BYE) with the shutdown reason and waits for their records.
func (s *Server) HangupAll() {
	s.callMu.Lock()
	s.callsDone = true
	s.callMu.Unlock()
	s.killOnce.Do(func() { close(s.killAll) })
	s.callWG.Wait()
}

// addCall counts a call HangupAll waits for; false once HangupAll has begun
// (the gateway is shutting down or ending every call: no new call).
func (s *Server) addCall() bool {
	s.callMu.Lock()
	defer s.callMu.Unlock()
	if s.callsDone {
		return false
	}
	s.callWG.Add(1)
	return true
}

// Close ends every call, stops listening and waits for the server's goroutines.
func (s *Server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.draining.Store(true)
	s.HangupAll()
	close(s.stopBg)
	s.bgWG.Wait()
	s.regs.close() // un-REGISTER while the sockets still work
	s.closeSockets()
	if s.ua != nil {
		s.ua.Close()
	}
	s.serveWG.Wait()
	if s.tracing {
		hub.remove(s)
		s.trace.close() // the last ladders are written
	}
	return nil
}

// closeSockets closes every listener.
func (s *Server) closeSockets() {
	for _, c := range s.conns {
		c.Close()
	}
	s.lnMu.Lock()
	for _, l := range s.listeners {
		l.Close()
	}
	s.lnMu.Unlock()
	for _, l := range s.tlsListeners {
		l.Close()
	}
}

// MediaIP is the address calls bind RTP on; invalid when every address.
func (s *Server) MediaIP() netip.Addr { return s.mediaIP }

// TLSAddrs lists the SIP-over-TLS listeners.
func (s *Server) TLSAddrs() []string {
	var out []string
	for _, l := range s.tlsListeners {
		out = append(out, l.Addr().String())
	}
	return out
}
