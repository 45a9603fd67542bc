package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/store/redistest"
)

// hangingProvider accepts TCP connections and never answers: a provider that is up
// but too slow (the INVITE rings until --provider-timeout).
func hangingProvider(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

// deadProvider is an address where nothing listens.
func deadProvider(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func sipp(t *testing.T, g *cxcotest.Gateway, scenario, number string, extra ...string) {
	t.Helper()
	code, out := g.SIPp(scenario, number, extra...)
	if code != 0 {
		t.Fatalf("sipp %s to %s: exit %d\n%s", scenario, number, code, out)
	}
}

// lastConversation returns the newest conversation of a tenant, waiting until it has
// a final status.
func lastConversation(t *testing.T, g *cxcotest.Gateway, tn cxcotest.Tenant) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, v := g.Do("GET", "/api/conversations/?limit=1", tn.UserKey, nil)
		items, _ := v.(map[string]any)["items"].([]any)
		if len(items) == 1 {
			c := items[0].(map[string]any)
			if c["status"] != "in_progress" {
				id := int64(c["id"].(float64))
				return g.Must(200, "GET", fmt.Sprintf("/api/conversations/%d", id), tn.UserKey, nil)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished conversation: %v", v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSIPRefusals: the SIP table of DESIGN.md, against the built binary with SIPp.
func TestSIPRefusals(t *testing.T) {
	r := redistest.StartRedis(t)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, ProviderURL: deadProvider(t),
		Args: []string{"--provider-timeout", "1s"}})
	tn := g.NewTenant("Refusals")
	g.AddNumber("+27210000101", "ZA", false)
	g.AddNumber("+27210000102", "ZA", false)
	g.AddNumber("+27210000103", "ZA", false) // stays in the pool, unassigned
	// Publishing needs the provider; do it through a gateway that has one, on the same Redis.
	g2 := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: []string{"--agency-key", g.AgencyKey}})
	paused, pausedNum := g2.PublishAgent(tn, "Paused", "ZA", nil)
	_, liveNum := g2.PublishAgent(tn, "Live", "ZA", nil)
	g.Must(200, "POST", fmt.Sprintf("/api/agents/%d/pause", paused), tn.UserKey, nil)

	t.Run("404 unknown number", func(t *testing.T) { sipp(t, g, "uac_404.xml", "+15557654321") })
	t.Run("404 unassigned number", func(t *testing.T) { sipp(t, g, "uac_404.xml", "+27210000103") })
	t.Run("480 paused agent", func(t *testing.T) { sipp(t, g, "uac_480.xml", pausedNum) })
	t.Run("488 no common codec", func(t *testing.T) { sipp(t, g, "uac_488.xml", liveNum) })
	t.Run("503 provider down", func(t *testing.T) {
		sipp(t, g, "uac_503.xml", liveNum)
		c := lastConversation(t, g, tn)
		if c["status"] != "failed" || c["end_reason"] != "provider_unavailable" {
			t.Fatalf("conversation: %v", c)
		}
	})
	t.Run("403 suspended company", func(t *testing.T) {
		g.Must(200, "PUT", fmt.Sprintf("/api/agency/companies/%d", tn.CompanyID), g.AgencyKey, map[string]any{"status": "suspended"})
		defer g.Must(200, "PUT", fmt.Sprintf("/api/agency/companies/%d", tn.CompanyID), g.AgencyKey, map[string]any{"status": "active"})
		sipp(t, g, "uac_403.xml", liveNum)
	})
	t.Run("487 cancel while ringing", func(t *testing.T) {
		slow := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, ProviderURL: hangingProvider(t),
			Args: []string{"--agency-key", g.AgencyKey, "--provider-timeout", "5s"}})
		sipp(t, slow, "uac_cancel.xml", liveNum)
		c := lastConversation(t, g, tn)
		if c["status"] != "cancelled" || c["end_reason"] != "caller_cancelled" || c["duration_seconds"] != nil {
			t.Fatalf("conversation: %v", c)
		}
	})
	// The gateway keeps answering after all that.
	t.Run("OPTIONS", func(t *testing.T) { sipp(t, g, "uac_options.xml", "+27210000101") })
}

// TestSIPEchoLine: calls to the echo test line, through the whole media path.
func TestSIPEchoLine(t *testing.T) {
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--echo-number", "+15550001", "--rtp-timeout", "3s"}})
	t.Run("PCMA audio, caller hangs up", func(t *testing.T) { sipp(t, g, "uac_echo_pcma.xml", "+15550001") })
	t.Run("hold and resume", func(t *testing.T) { sipp(t, g, "uac_hold.xml", "+15550001") })
	t.Run("DTMF", func(t *testing.T) { sipp(t, g, "uac_dtmf.xml", "+15550001") })
	t.Run("RTP timeout: the gateway hangs up", func(t *testing.T) {
		start := time.Now()
		sipp(t, g, "uac_wait_bye.xml", "+15550001")
		if d := time.Since(start); d < 9*time.Second {
			t.Fatalf("BYE after %s: the 7 s of audio plus the 3 s RTP timeout had not passed", d)
		}
	})
	// The gateway logs the end once its BYE is answered, which may be just after SIPp exits.
	g.Proc.WaitStderr(t, `"reason":"rtp_timeout"`, 5*time.Second)
}

// TestSIPTransportsAndExtensions: TCP and IPv6, digest authentication of trunks, and
// RFC 4028 session timers, against the binary with SIPp. The gateway listens on
// every address (--sip :port, SIP and RTP on IPv4 and IPv6), so the test runs in a
// network namespace whose only interface is loopback.
func TestSIPTransportsAndExtensions(t *testing.T) {
	if inOwnNetNS(t) {
		return
	}
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{SIPAll: true, Args: []string{"--echo-number", "+15550001", "--trunk-allow", "127.0.0.0/8,::1/128"}})
	t.Run("TCP", func(t *testing.T) { sipp(t, g, "uac_echo_pcma.xml", "+15550001", "-t", "t1") })
	t.Run("IPv6", func(t *testing.T) {
		code, out := cxcotest.RunSIPp(t, fmt.Sprintf("[::1]:%d", g.SIPPort), "uac_echo_pcma.xml", "+15550001")
		if code != 0 {
			t.Fatalf("sipp over IPv6: exit %d\n%s", code, out)
		}
	})
	t.Run("session timer", func(t *testing.T) { sipp(t, g, "uac_session_timer.xml", "+15550001") })
	t.Run("422 below Min-SE", func(t *testing.T) { sipp(t, g, "uac_422.xml", "+15550001") })

	a := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--echo-number", "+15550001",
		"--trunk-user", "trunk", "--trunk-password", "s3cret-pass"}})
	// SIPp answers a challenge for sip:host:port unless told the Request-URI; the
	// gateway checks the digest-uri against the Request-URI (RFC 7616 §3.4.6).
	authURI := authURIFor(a, "+15550001")
	t.Run("digest auth", func(t *testing.T) {
		sipp(t, a, "uac_auth.xml", "+15550001", "-au", "trunk", "-ap", "s3cret-pass", "-auth_uri", authURI)
	})
	t.Run("digest auth, another Request-URI", func(t *testing.T) {
		code, out := a.SIPp("uac_auth.xml", "+15550001", "-au", "trunk", "-ap", "s3cret-pass")
		if code == 0 || !strings.Contains(out, "401") {
			t.Fatalf("a digest for sip:host:port got through for the number's Request-URI: exit %d\n%s", code, out)
		}
	})
	t.Run("digest auth, wrong password", func(t *testing.T) {
		code, out := a.SIPp("uac_auth.xml", "+15550001", "-au", "trunk", "-ap", "wrong", "-auth_uri", authURI)
		if code == 0 || !strings.Contains(out, "401") {
			t.Fatalf("a wrong password got through: exit %d\n%s", code, out)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		code, out := a.SIPp("uac_echo_pcma.xml", "+15550001")
		if code == 0 || !strings.Contains(out, "401") {
			t.Fatalf("a call without credentials got through: exit %d\n%s", code, out)
		}
	})
}

// authURIFor is the Request-URI SIPp's scenarios call a number at, which is what
// its digest answer must name (-auth_uri).
func authURIFor(g *cxcotest.Gateway, number string) string {
	return fmt.Sprintf("%s@127.0.0.1:%d", strings.TrimPrefix(number, "+"), g.SIPPort) // SIPp writes the sip: itself
}
