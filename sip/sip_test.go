package sip

import (
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/store"
)

func parseReq(t *testing.T, raw string) *gsip.Request {
	t.Helper()
	m, err := gsip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m.(*gsip.Request)
}

const baseInvite = "INVITE sip:+27211234567@gw.example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n" +
	"From: <sip:+27821234567@trunk.example.com>;tag=1\r\n" +
	"To: <sip:+27211234567@gw.example.com>\r\n" +
	"Call-ID: a@b\r\nCSeq: 1 INVITE\r\nContact: <sip:t@10.0.0.1>\r\nMax-Forwards: 70\r\n%sContent-Length: 0\r\n\r\n"

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		code        int
	}{
		{"plain", "", 0},
		{"require timer is fine", "Require: timer\r\n", 0},
		{"require 100rel is not", "Require: 100rel\r\n", 420},
		{"proxy-require unknown", "Proxy-Require: foo\r\n", 420},
		{"accept without sdp", "Accept: text/plain\r\n", 406},
		{"accept with wildcard", "Accept: text/plain, */*\r\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := parseReq(t, sprintf(baseInvite, tc.extra))
			if code, _, _ := validate(req); code != tc.code {
				t.Fatalf("validate: %d, want %d", code, tc.code)
			}
		})
	}
}

func sprintf(f, a string) string { return strings.Replace(f, "%s", a, 1) }

func TestNumbers(t *testing.T) {
	var e164 store.NumberRule
	req := parseReq(t, sprintf(baseInvite, ""))
	if d := dialled(req); d != "+27211234567" {
		t.Fatalf("dialled %q", d)
	}
	if c := callerNumber(req, e164); c != "+27821234567" {
		t.Fatalf("caller %q", c)
	}
	pai := parseReq(t, sprintf(baseInvite, "P-Asserted-Identity: <tel:+15551230000>\r\n"))
	if c := callerNumber(pai, e164); c != "+15551230000" {
		t.Fatalf("caller from P-Asserted-Identity %q", c)
	}
	// A withheld caller ID (RFC 3323/3325): the number goes no further than us.
	for _, privacy := range []string{"id", "user; critical", "header;id", "ID"} {
		hidden := parseReq(t, sprintf(baseInvite, "P-Asserted-Identity: <tel:+15551230000>\r\nPrivacy: "+privacy+"\r\n"))
		if c := callerNumber(hidden, e164); c != "anonymous" {
			t.Fatalf("Privacy: %s: caller %q", privacy, c)
		}
	}
	for _, privacy := range []string{"none", "session"} {
		shown := parseReq(t, sprintf(baseInvite, "P-Asserted-Identity: <tel:+15551230000>\r\nPrivacy: "+privacy+"\r\n"))
		if c := callerNumber(shown, e164); c != "+15551230000" {
			t.Fatalf("Privacy: %s: caller %q", privacy, c)
		}
	}
	tel := parseReq(t, strings.Replace(sprintf(baseInvite, ""), "INVITE sip:+27211234567@gw.example.com", "INVITE tel:+27211234567", 1))
	if d := dialled(tel); d != "+27211234567" {
		t.Fatalf("dialled tel: %q", d)
	}
	national := parseReq(t, strings.Replace(sprintf(baseInvite, ""), "INVITE sip:+27211234567@gw.example.com", "INVITE sip:0211234567;npdi@gw.example.com", 1))
	if d := dialled(national); d != "0211234567" {
		t.Fatalf("dialled national: %q (the raw string, before the trunk's rule)", d)
	}
}

func TestParseSE(t *testing.T) {
	for _, tc := range []struct {
		in      string
		d       time.Duration
		refresh string
		ok      bool
	}{
		{"1800", 1800 * time.Second, "", true},
		{"1800;refresher=uac", 1800 * time.Second, "uac", true},
		{"90 ; refresher=UAS", 90 * time.Second, "uas", true},
		{"x", 0, "", false},
		{"-5", 0, "", false},
	} {
		d, r, ok := parseSE(tc.in)
		if d != tc.d || r != tc.refresh || ok != tc.ok {
			t.Errorf("parseSE(%q) = %v %q %v", tc.in, d, r, ok)
		}
	}
}

func TestSessionTimerDue(t *testing.T) {
	s := &Server{opt: Options{SessionMinSE: 90 * time.Second}}
	now := time.Now()
	c := &call{s: s, sessionSE: 120 * time.Second, sessionExp: now.Add(120 * time.Second)}
	// The UAC refreshes: we hang up at SE - min(32 s, SE/3) = 88 s without a refresh.
	if exp, _ := c.sessionTimerDue(now.Add(87 * time.Second)); exp {
		t.Fatal("expired too early")
	}
	if exp, _ := c.sessionTimerDue(now.Add(89 * time.Second)); !exp {
		t.Fatal("not expired at 89 s")
	}
	// We refresh: at half the interval.
	c.weRefresh = true
	if _, r := c.sessionTimerDue(now.Add(59 * time.Second)); r {
		t.Fatal("refresh too early")
	}
	if _, r := c.sessionTimerDue(now.Add(61 * time.Second)); !r {
		t.Fatal("no refresh at 61 s")
	}
}

func TestInfoDigit(t *testing.T) {
	mk := func(ct, body string) *gsip.Request {
		raw := "INFO sip:gw SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n" +
			"Call-ID: x\r\nCSeq: 2 INFO\r\nContent-Type: " + ct + "\r\nContent-Length: " + itoaTest(len(body)) + "\r\n\r\n" + body
		return parseReq(t, raw)
	}
	for _, tc := range []struct {
		ct, body string
		d        rune
		ok       bool
	}{
		{"application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", '5', true},
		{"application/dtmf-relay", "Signal=#\r\n", '#', true},
		{"application/dtmf-relay", "Signal=11\r\n", '#', true},
		{"application/dtmf", "*", '*', true},
		{"text/plain", "5", 0, false},
	} {
		d, ok := infoDigit(mk(tc.ct, tc.body))
		if d != tc.d || ok != tc.ok {
			t.Errorf("%s %q: %q %v", tc.ct, tc.body, d, ok)
		}
	}
}

func itoaTest(n int) string { return strconv.Itoa(n) }

func TestStatelessReject(t *testing.T) {
	raw := "INVITE  sip:a@b  SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bKq\r\nFrom: <sip:x@y>;tag=9\r\n" +
		"To: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	out := string(statelessReject([]byte(raw), 400, "Bad Request"))
	for _, want := range []string{"SIP/2.0 400 Bad Request\r\n", "Via: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bKq", "To: <sip:a@b>;tag=", "Call-ID: c1", "CSeq: 1 INVITE"} {
		if !contains(out, want) {
			t.Fatalf("missing %q in\n%s", want, out)
		}
	}
	if statelessReject([]byte("SIP/2.0 200 OK\r\nVia: x\r\n\r\n"), 400, "x") != nil {
		t.Fatal("answered a response")
	}
	if statelessReject([]byte("INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"), 400, "x") != nil {
		t.Fatal("answered without Call-ID and CSeq")
	}
	if !unknownScheme([]byte("OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\r\n")) || unknownScheme([]byte("INVITE <sip:a@b> SIP/2.0\r\n")) {
		t.Fatal("unknownScheme")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestDigestNonce(t *testing.T) {
	now := time.Unix(1800000000, 0)
	g := newAuthGuard(func() time.Time { return now })
	a := newDigestAuth("cxco", "u", "p", g)
	src, other := mustAddr("192.0.2.1"), mustAddr("192.0.2.2")
	n := a.nonce(src, "call-1")
	if ok, stale := a.nonceValid(n, src, "call-1"); !ok || stale {
		t.Fatal("fresh nonce refused")
	}
	for _, c := range []struct {
		src    netip.Addr
		callID string
	}{{other, "call-1"}, {src, "call-2"}} {
		if ok, stale := a.nonceValid(n, c.src, c.callID); ok || stale {
			t.Fatalf("a nonce for another request (%s, %s) accepted", c.src, c.callID)
		}
	}
	if ok, _ := a.nonceValid(n[:len(n)-1]+"0", src, "call-1"); ok {
		t.Fatal("forged nonce accepted")
	}
	// Another node with the same credentials accepts it.
	b := newDigestAuth("cxco", "u", "p", newAuthGuard(g.now))
	if ok, _ := b.nonceValid(n, src, "call-1"); !ok {
		t.Fatal("nonce not shared between nodes")
	}
	now = now.Add(nonceTTL + time.Second)
	if ok, stale := a.nonceValid(n, src, "call-1"); ok || !stale {
		t.Fatal("old nonce not stale")
	}
	// Each nonce count once.
	if !g.useNonce(n, 1) || g.useNonce(n, 1) || !g.useNonce(n, 2) || g.useNonce(n, 1) {
		t.Fatal("nonce counts")
	}
}

func TestAuthGuardBounded(t *testing.T) {
	now := time.Unix(1800000000, 0)
	g := newAuthGuard(func() time.Time { return now })
	for i := range maxGuarded + 1000 {
		g.failed(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	g.mu.Lock()
	n := len(g.fails)
	g.mu.Unlock()
	if n > maxGuarded {
		t.Fatalf("%d sources remembered", n)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestDropWarner: one warning per source a minute, for requests that start
// something; bounded memory under a scan from many sources.
func TestDropWarner(t *testing.T) {
	now := time.Unix(1000, 0)
	d := &dropWarner{now: func() time.Time { return now }}
	log := slog.New(slog.DiscardHandler)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	invite := []byte("INVITE sip:x SIP/2.0\r\n")
	d.warn(log, a, "UDP", invite)
	d.warn(log, a, "UDP", invite)
	d.warn(log, a, "UDP", []byte("SIP/2.0 200 OK\r\n"))
	d.warn(log, b, "TCP", invite)
	if d.warned != 2 {
		t.Fatalf("%d warnings, want one per source", d.warned)
	}
	now = now.Add(61 * time.Second)
	d.warn(log, a, "UDP", invite)
	if d.warned != 3 {
		t.Fatalf("%d warnings: a minute later the source is warned about again", d.warned)
	}
	for i := range 2 * maxDropSources {
		d.warn(log, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "UDP", invite)
	}
	if len(d.last) > maxDropSources {
		t.Fatalf("%d sources remembered", len(d.last))
	}
}

func TestRegisterBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 10: 10 * time.Minute, 50: 10 * time.Minute} {
		for range 20 {
			got := backoff(n, 5*time.Second, 10*time.Minute)
			if got < want*8/10 || got > want*12/10 {
				t.Fatalf("backoff(%d) = %s, want %s ±20%%", n, got, want)
			}
		}
	}
}

func TestGrantedExpiry(t *testing.T) {
	contact := "<sip:gw@192.0.2.10:5061;transport=tls>"
	for _, tc := range []struct {
		name, hdrs string
		want       time.Duration
	}{
		{"our contact's expires", "Contact: <sip:other@192.0.2.9:5060>;expires=30, <sip:gw@192.0.2.10:5061;transport=tls>;expires=120\r\nExpires: 3600\r\n", 120 * time.Second},
		{"Expires header", "Contact: <sip:other@192.0.2.9:5060>;expires=30\r\nExpires: 300\r\n", 300 * time.Second},
		{"what we asked", "", 600 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := "SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKx\r\nFrom: <sip:gw@carrier>;tag=a\r\nTo: <sip:gw@carrier>;tag=b\r\n" +
				"Call-ID: c\r\nCSeq: 2 REGISTER\r\n" + tc.hdrs + "Content-Length: 0\r\n\r\n"
			m, err := gsip.ParseMessage([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := grantedExpiry(m.(*gsip.Response), contact, 600*time.Second); got != tc.want {
				t.Fatalf("granted %s, want %s", got, tc.want)
			}
		})
	}
}

// TestNetworkChangeReregisters: when the machine's addresses change (a new
// interface address, a DHCP renumbering, a VPN), every registration is told to
// register again at once.
func TestNetworkChangeReregisters(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	r := newRegistrations(s)
	var mu sync.Mutex
	addrs := []string{"192.0.2.10/24"}
	r.addrs = func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), addrs...) }
	reg := &registration{kick: make(chan struct{}, 1), stop: make(chan struct{})}
	r.regs[1] = reg
	stop := make(chan struct{})
	r.wg.Add(1)
	go r.watchNetwork(stop, time.Millisecond)
	defer func() { close(stop); r.wg.Wait() }()
	select {
	case <-reg.kick:
		t.Fatal("kicked without a change")
	case <-time.After(20 * time.Millisecond):
	}
	mu.Lock()
	addrs = []string{"198.51.100.7/24"}
	mu.Unlock()
	select {
	case <-reg.kick:
	case <-time.After(5 * time.Second):
		t.Fatal("no re-registration after the addresses changed")
	}
}

// TestContactPerTransport: our Contact names the port of the transport the call
// came over, with transport=tls (or tcp), and is a sips: URI when the INVITE's
// Request-URI was (RFC 3261 §8.1.1.8).
func TestContactPerTransport(t *testing.T) {
	s := &Server{port: 5060, tlsPort: 5061}
	for _, tc := range []struct {
		name, ruri, transport, want string
	}{
		{"udp", "sip:+27211234567@gw.example.com", "UDP", "sip:cxco@192.0.2.10:5060"},
		{"tcp", "sip:+27211234567@gw.example.com", "TCP", "sip:cxco@192.0.2.10:5060;transport=tcp"},
		{"tls", "sip:+27211234567@gw.example.com;transport=tls", "TLS", "sip:cxco@192.0.2.10:5061;transport=tls"},
		{"sips", "sips:+27211234567@gw.example.com", "TLS", "sips:cxco@192.0.2.10:5061"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := parseReq(t, strings.Replace(sprintf(baseInvite, ""), "INVITE sip:+27211234567@gw.example.com", "INVITE "+tc.ruri, 1))
			c := &call{s: s, invite: req, transport: tc.transport, advertise: netip.MustParseAddr("192.0.2.10")}
			if got := c.contact().Address.String(); got != tc.want {
				t.Fatalf("Contact %s, want %s", got, tc.want)
			}
		})
	}
}

// BenchmarkStatelessReject: the 503 every INVITE over the call rate gets, built
// in the read loop before the next datagram is read.
func BenchmarkStatelessReject(b *testing.B) {
	raw := []byte("INVITE sip:+15559990000@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.1.10:40000;branch=z9hG4bKmf1.2\r\n" +
		"From: <sip:flood@127.0.1.10:40000>;tag=f2\r\nTo: <sip:+15559990000@127.0.0.1>\r\nCall-ID: mflood-1-2\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:flood@127.0.1.10:40000>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if statelessReject(raw, 503, "Service Unavailable", "Retry-After: 5") == nil {
			b.Fatal("no response")
		}
	}
}
