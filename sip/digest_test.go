package sip

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxco/gateway/callpath/callstore"
	"github.com/cxco/gateway/store"
)

// digestClient is a trunk sending INVITEs over UDP from 127.0.0.1 and computing
// its digest answers by RFC 2617/7616's formulas with crypto/md5 (not with the
// library the gateway uses, so the two cannot share a mistake).
type digestClient struct {
	t    *testing.T
	c    *net.UDPConn
	gw   *net.UDPAddr
	seq  atomic.Int64
	user string
}

func newDigestClient(t *testing.T, port int) *digestClient {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &digestClient{t: t, c: c, gw: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, user: "trunk"}
}

// invite sends an INVITE (with auth, when given) and returns the final status
// and, on 401, the challenge's nonce.
func (d *digestClient) invite(ruri, callID, auth string) (int, string, string) {
	d.t.Helper()
	n := d.seq.Add(1)
	h := ""
	if auth != "" {
		h = "Authorization: " + auth + "\r\n"
	}
	msg := fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKdg%d\r\nFrom: <sip:trunk@127.0.0.1>;tag=d%d\r\n"+
		"To: <%s>\r\nCall-ID: %s\r\nCSeq: %d INVITE\r\nContact: <sip:trunk@%s>\r\nMax-Forwards: 70\r\n%sContent-Length: 0\r\n\r\n",
		ruri, d.c.LocalAddr(), n, n, ruri, callID, n, d.c.LocalAddr(), h)
	if _, err := d.c.WriteToUDP([]byte(msg), d.gw); err != nil {
		d.t.Fatal(err)
	}
	buf := make([]byte, 9000)
	_ = d.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		k, _, err := d.c.ReadFromUDP(buf)
		if err != nil {
			d.t.Fatalf("no final answer to INVITE %s: %v", callID, err)
		}
		res := string(buf[:k])
		if !strings.Contains(res, fmt.Sprintf("branch=z9hG4bKdg%d", n)) {
			continue // a retransmission of an earlier answer
		}
		var code int
		fmt.Sscanf(res, "SIP/2.0 %d", &code)
		if code < 200 {
			continue
		}
		// ACK the final answer so the gateway stops resending it.
		to := regexp.MustCompile(`(?m)^To: (.*)\r$`).FindStringSubmatch(res)
		ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKdg%d\r\nFrom: <sip:trunk@127.0.0.1>;tag=d%d\r\n"+
			"To: %s\r\nCall-ID: %s\r\nCSeq: %d ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", ruri, d.c.LocalAddr(), n, n, to[1], callID, n)
		_, _ = d.c.WriteToUDP([]byte(ack), d.gw)
		nonce := ""
		if m := regexp.MustCompile(`nonce="([^"]+)"`).FindStringSubmatch(res); m != nil {
			nonce = m[1]
		}
		retry := ""
		if m := regexp.MustCompile(`(?m)^Retry-After: (\d+)`).FindStringSubmatch(res); m != nil {
			retry = m[1]
		}
		return code, nonce, retry
	}
}

func md5hex(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }

// answer is the Authorization for a nonce, with qop=auth and nc.
func (d *digestClient) answer(password, ruri, nonce string, nc int) string {
	ha1 := md5hex(d.user + ":cxco:" + password)
	ha2 := md5hex("INVITE:" + ruri)
	cnonce := fmt.Sprintf("c%d", d.seq.Load())
	ncs := fmt.Sprintf("%08x", nc)
	resp := md5hex(ha1 + ":" + nonce + ":" + ncs + ":" + cnonce + ":auth:" + ha2)
	return fmt.Sprintf(`Digest username="%s", realm="cxco", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="%s"`,
		d.user, nonce, ruri, resp, ncs, cnonce)
}

type authCounts struct {
	countingObs
	mu      sync.Mutex
	results map[string]int
}

func (a *authCounts) Auth(r string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.results == nil {
		a.results = map[string]int{}
	}
	a.results[r]++
}

func (a *authCounts) count(r string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.results[r]
}

// authServer is a server whose default trunk demands digest authentication, on
// a real (embedded) store: an INVITE that passes authentication is routed, and
// an unknown number gets 404.
// authClock is the auth guard's clock, moved by the test.
type authClock struct{ ns atomic.Int64 }

func (c *authClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *authClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func authServer(t *testing.T) (*Server, *authCounts, *authClock) {
	t.Helper()
	sealer, err := store.NewSealer(store.GenerateSecretKey())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), store.Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	obs := &authCounts{}
	clk := &authClock{}
	clk.ns.Store(time.Now().UnixNano())
	s, err := New(Options{Addr: "127.0.0.1:0", Calls: callstore.New(st, nil), Trunks: st, Observer: obs,
		DefaultTrunk: store.Trunk{Name: "default", Allow: []string{"127.0.0.1/32"}, InboundAuth: true, Username: "trunk"}, DefaultTrunkPassword: "right-pass"})
	if err != nil {
		t.Fatal(err)
	}
	s.authGuard.now = clk.now
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, obs, clk
}

const ruriA, ruriB = "sip:+15550001111@127.0.0.1", "sip:+15550002222@127.0.0.1"

// TestDigestReplayRefused: a captured Authorization header does not set up
// another call (a new Call-ID), does not do for another Request-URI, and its
// nonce count is good once; an old nonce gets stale=true.
func TestDigestReplayRefused(t *testing.T) {
	s, obs, clk := authServer(t)
	d := newDigestClient(t, s.Port())
	code, nonce, _ := d.invite(ruriA, "call-1", "")
	if code != 401 || nonce == "" {
		t.Fatalf("no challenge: %d", code)
	}
	auth := d.answer("right-pass", ruriA, nonce, 1)
	if code, _, _ := d.invite(ruriA, "call-1", auth); code != 404 {
		t.Fatalf("the right answer: %d, want 404 (authenticated, number unknown)", code)
	}
	for _, c := range []struct {
		what, ruri, callID, auth string
	}{
		{"the same header on a new call", ruriA, "call-2", auth},
		{"the same header again on its own call (nc reused)", ruriA, "call-1", auth},
		{"the header for another Request-URI", ruriB, "call-1", d.answer("right-pass", ruriA, nonce, 2)},
		{"a fresh answer to the nonce on a new call", ruriA, "call-3", d.answer("right-pass", ruriA, nonce, 3)},
	} {
		if code, _, _ := d.invite(c.ruri, c.callID, c.auth); code != 401 {
			t.Errorf("%s: %d, want 401", c.what, code)
		}
	}
	if code, _, _ := d.invite(ruriA, "call-1", d.answer("right-pass", ruriA, nonce, 4)); code != 404 {
		t.Fatalf("the next nc on its own call: %d, want 404", code)
	}
	clk.advance(nonceTTL + time.Second)
	code, _, _ = d.invite(ruriA, "call-1", d.answer("right-pass", ruriA, nonce, 5))
	if code != 401 || obs.count(AuthStale) != 1 {
		t.Fatalf("an old nonce: %d, stale %d", code, obs.count(AuthStale))
	}
	if obs.count(AuthReplay) < 2 || obs.count(AuthOK) != 2 {
		t.Fatalf("auth results %v", obs.results)
	}
}

// TestDigestGuessingLockedOut: wrong passwords lock the source out with a
// growing back-off; while locked out even the right password gets 403 with
// Retry-After; after the lockout the right one works and clears the count.
func TestDigestGuessingLockedOut(t *testing.T) {
	s, obs, clk := authServer(t)
	d := newDigestClient(t, s.Port())
	guess := func(i int, password string) (int, string) {
		callID := fmt.Sprintf("guess-%d", i)
		code, nonce, retry := d.invite(ruriA, callID, "")
		if code != 401 {
			return code, retry
		}
		code, _, retry = d.invite(ruriA, callID, d.answer(password, ruriA, nonce, 1))
		return code, retry
	}
	for i := range maxAuthFailures {
		if code, _ := guess(i, fmt.Sprintf("wrong-%d", i)); code != 401 {
			t.Fatalf("guess %d: %d, want 401", i, code)
		}
	}
	code, retry := guess(100, "right-pass")
	if code != 403 || retry != "1" {
		t.Fatalf("the right password while locked out: %d (Retry-After %q), want 403 with Retry-After 1", code, retry)
	}
	clk.advance(2 * time.Second)
	for i := range maxAuthFailures {
		guess(200+i, "wrong")
	}
	if code, retry := guess(300, "right-pass"); code != 403 || retry != "2" {
		t.Fatalf("second lockout: %d (Retry-After %q), want 403 with Retry-After 2", code, retry)
	}
	clk.advance(3 * time.Second)
	if code, _ := guess(400, "right-pass"); code != 404 {
		t.Fatalf("the right password after the lockout: %d, want 404", code)
	}
	if obs.count(AuthFailed) != 2*maxAuthFailures || obs.count(AuthLocked) < 2 {
		t.Fatalf("auth results %v", obs.results)
	}
}
