package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/control/webhooks"
	"github.com/cxco/gateway/store"
	"github.com/cxco/gateway/store/redistest"
)

// These tests run the built binary (`cxco serve --redis ...`) against a real
// redis-server and real receivers on 127.0.0.1.

// whCluster is what gateways sharing one Redis share.
type whCluster struct {
	redis  *redistest.Redis
	agency string
	secret string
	st     *store.Store // the test's own view of the same Redis
}

func newWHCluster(t *testing.T) *whCluster {
	c := &whCluster{redis: redistest.StartRedis(t), agency: store.NewAPIKey(store.PrefixAgencyKey), secret: store.GenerateSecretKey()}
	sealer, err := store.NewSealer(c.secret)
	if err != nil {
		t.Fatal(err)
	}
	c.st, err = store.Open(context.Background(), store.Options{URL: c.redis.URL, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.st.Close() })
	return c
}

// gateway starts one `cxco serve` on the cluster's Redis and waits until it answers.
func (c *whCluster) gateway(t *testing.T, node string, flags ...string) (*cxcotest.Process, *env) {
	t.Helper()
	bin := cxcotest.Binary(t)
	httpPort, sipPort := cxcotest.FreePort(t), cxcotest.FreeUDPPort(t)
	args := append([]string{"serve", "--redis", c.redis.URL, "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--sip", fmt.Sprintf("127.0.0.1:%d", sipPort), "--public-ip", "127.0.0.1", "--agency-key", c.agency,
		"--secret-key", c.secret, "--node-id", node, "--log-format", "text", "--log-level", "debug"}, flags...)
	proc := cxcotest.Start(t, bin, nil, args...)
	proc.WaitStdout(t, "API:", 90*time.Second)
	e := &env{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", httpPort), agency: c.agency, st: c.st}
	waitFor(t, 30*time.Second, node+" answers", func() bool { return e.do("GET", "/api/openapi.json", "", nil).Status == 200 })
	return proc, e
}

// gwReceiver records what a webhook endpoint got and answers per its mode.
type gwReceiver struct {
	url    string
	secret string
	mu     sync.Mutex
	ok     bool
	got    []gwRequest
}

type gwRequest struct {
	eventID, eventType, delivery string
	status                       int
	sigErr                       error
}

func newGWReceiver(t *testing.T, secret string, ok bool) *gwReceiver {
	r := &gwReceiver{secret: secret, ok: ok}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ev struct{ ID, Type string }
		json.Unmarshal(body, &ev)
		rq := gwRequest{eventID: ev.ID, eventType: ev.Type, delivery: req.Header.Get(webhooks.HeaderDelivery), status: 500}
		if r.secret != "" {
			rq.sigErr = webhooks.VerifySignature(r.secret, req.Header.Get(webhooks.HeaderSignature), body, time.Now(), 5*time.Minute)
		}
		r.mu.Lock()
		if r.ok {
			rq.status = 200
		}
		r.got = append(r.got, rq)
		r.mu.Unlock()
		w.WriteHeader(rq.status)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/hooks/cxco"
	return r
}

func (r *gwReceiver) setOK(ok bool) { r.mu.Lock(); r.ok = ok; r.mu.Unlock() }

func (r *gwReceiver) requests() []gwRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]gwRequest(nil), r.got...)
}

// accepted counts, per event id, the requests answered 2xx.
func (r *gwReceiver) accepted() map[string]int {
	out := map[string]int{}
	for _, q := range r.requests() {
		if q.status == 200 {
			out[q.eventID]++
		}
	}
	return out
}

// TestGatewayRestartDeliversPending: a gateway killed while deliveries wait for their
// retry, and while events are recorded, delivers all of them after a restart.
func TestGatewayRestartDeliversPending(t *testing.T) {
	c := newWHCluster(t)
	retry := []string{"--webhook-allow-insecure", "--webhook-retry", "300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms"}
	gw1, e := c.gateway(t, "gw-1", retry...)
	tn := e.newTenant("Restart Co", "enterprise")
	e.addNumbers("ZA", 1)
	const secret = "whsec_restart_secret"
	rcv := newGWReceiver(t, secret, false) // down at first
	hook := num(e.must(201, "POST", "/api/webhooks/", tn.compKey, map[string]any{"url": rcv.url, "secret": secret,
		"events": []string{"agent.status_changed", "conversation.completed"}}).json(t)["id"])

	aid := e.newAgent(tn, "Ava")
	e.must(200, "POST", p("/api/agents/%d/publish", aid), tn.userKey, map[string]any{"country_code": "ZA"})
	e.must(200, "POST", p("/api/agents/%d/pause", aid), tn.userKey, nil)
	ctx := context.Background()
	conv, err := c.st.CreateConversation(ctx, store.Conversation{AgentID: aid, CompanyID: tn.id, Channel: "voice", Direction: "inbound"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.st.FinishConversation(ctx, tn.id, conv.ID, store.Final{Status: store.ConvCompleted, EndReason: "caller hung up"}); err != nil {
		t.Fatal(err)
	}
	// Every event has failed at least once: its delivery waits for a retry.
	waitFor(t, 30*time.Second, "each event attempted", func() bool {
		seen := map[string]bool{}
		for _, q := range rcv.requests() {
			seen[q.eventID] = true
		}
		return len(seen) == 3
	})
	gw1.Kill()

	// While no gateway runs: one more event, and the receiver comes back.
	if _, err := c.st.ResumeAgent(ctx, tn.id, aid); err != nil {
		t.Fatal(err)
	}
	rcv.setOK(true)
	before := len(rcv.requests())
	_, e2 := c.gateway(t, "gw-1-restarted", retry...)
	waitFor(t, 60*time.Second, "all four events accepted after the restart", func() bool { return len(rcv.accepted()) == 4 })
	for id, n := range rcv.accepted() {
		if n != 1 {
			t.Errorf("event %s accepted %d times", id, n)
		}
	}
	for _, q := range rcv.requests() {
		if q.sigErr != nil {
			t.Errorf("%s: %v", q.eventType, q.sigErr)
		}
	}
	items, _, _ := pageOf(t, e2.must(200, "GET", p("/api/webhooks/%d/deliveries", hook), tn.compKey, nil))
	if len(items) != 4 {
		t.Fatalf("%d deliveries, want 4", len(items))
	}
	waitFor(t, 10*time.Second, "every delivery recorded as succeeded", func() bool {
		items, _, _ := pageOf(t, e2.must(200, "GET", p("/api/webhooks/%d/deliveries", hook), tn.compKey, nil))
		for _, it := range items {
			if it.(map[string]any)["status"] != "succeeded" {
				return false
			}
		}
		return true
	})
	t.Logf("%d requests before the kill, %d after the restart", before, len(rcv.requests())-before)
}

// TestTwoGatewaysDeliverOnce: two gateway processes on one Redis deliver each event
// to each webhook exactly once.
func TestTwoGatewaysDeliverOnce(t *testing.T) {
	c := newWHCluster(t)
	flags := []string{"--webhook-allow-insecure", "--webhook-retry", "200ms,400ms"}
	gwA, a := c.gateway(t, "gw-a", flags...)
	gwB, b := c.gateway(t, "gw-b", flags...)
	tn := a.newTenant("Twin Co", "enterprise")
	a.addNumbers("ZA", 1)
	r1, r2 := newGWReceiver(t, "whsec_twin_one", true), newGWReceiver(t, "", true)
	a.must(201, "POST", "/api/webhooks/", tn.compKey, map[string]any{"url": r1.url, "secret": "whsec_twin_one", "events": []string{"agent.status_changed"}})
	b.must(201, "POST", "/api/webhooks/", tn.compKey, map[string]any{"url": r2.url, "events": []string{"agent.status_changed"}})
	aid := a.newAgent(tn, "Twin")
	a.must(200, "POST", p("/api/agents/%d/publish", aid), tn.userKey, map[string]any{"country_code": "ZA"})
	const flips = 200
	for i := range flips {
		gw, action := a, "pause"
		if i%2 == 1 {
			gw, action = b, "resume"
		}
		gw.must(200, "POST", p("/api/agents/%d/%s", aid, action), tn.userKey, nil)
	}
	for i, r := range []*gwReceiver{r1, r2} {
		waitFor(t, 60*time.Second, p("webhook %d gets every event", i+1), func() bool { return len(r.accepted()) == flips+1 })
	}
	// Every delivery is finished (succeeded), so nothing more can arrive.
	hooks := a.must(200, "GET", "/api/webhooks/", tn.compKey, nil).list(t)
	for _, h := range hooks {
		id := num(h.(map[string]any)["id"])
		waitFor(t, 10*time.Second, p("webhook %d's deliveries all succeeded", id), func() bool {
			n, cursor := 0, ""
			for {
				path := p("/api/webhooks/%d/deliveries?limit=100", id)
				if cursor != "" {
					path += "&cursor=" + cursor
				}
				items, more, next := pageOf(t, a.must(200, "GET", path, tn.compKey, nil))
				for _, it := range items {
					if m := it.(map[string]any); m["status"] == "succeeded" && num(m["attempts"]) == 1 {
						n++
					}
				}
				if !more {
					return n == flips+1
				}
				cursor = next
			}
		})
	}
	for i, r := range []*gwReceiver{r1, r2} {
		reqs := r.requests()
		if len(reqs) != flips+1 {
			t.Errorf("webhook %d got %d requests for %d events", i+1, len(reqs), flips+1)
		}
		for id, n := range r.accepted() {
			if n != 1 {
				t.Errorf("webhook %d got event %s %d times", i+1, id, n)
			}
		}
		for _, q := range reqs {
			if q.sigErr != nil {
				t.Errorf("webhook %d: %v", i+1, q.sigErr)
			}
		}
	}
	na, nb := strings.Count(gwA.Stderr(), "webhook delivered"), strings.Count(gwB.Stderr(), "webhook delivered")
	t.Logf("deliveries made by gw-a: %d, by gw-b: %d", na, nb)
	if na+nb != 2*(flips+1) {
		t.Errorf("the gateways logged %d deliveries, want %d", na+nb, 2*(flips+1))
	}
}

// loopbackName is a host name the system resolves to loopback addresses only: the
// machine's own name when it does (it usually does), else localhost.
func loopbackName(t *testing.T) string {
	if h, err := os.Hostname(); err == nil {
		addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", h)
		all := err == nil && len(addrs) > 0
		for _, a := range addrs {
			all = all && a.Unmap().IsLoopback()
		}
		if all {
			return h
		}
	}
	t.Log("the host name does not resolve to loopback; using localhost")
	return "localhost"
}

// TestGatewaySSRF: without --webhook-allow-insecure, loopback targets (also a name
// that resolves to 127.0.0.1) are refused at registration, and at delivery when the
// webhook got into the store some other way.
func TestGatewaySSRF(t *testing.T) {
	c := newWHCluster(t)
	_, e := c.gateway(t, "gw-strict", "--webhook-retry", "50ms")
	tn := e.newTenant("Strict Co", "enterprise")
	e.addNumbers("ZA", 1)
	reached := make(chan string, 10)
	tlsRcv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached <- r.URL.Path }))
	t.Cleanup(tlsRcv.Close)
	_, port, _ := net.SplitHostPort(tlsRcv.Listener.Addr().String())
	name := loopbackName(t)
	events := []string{"agent.status_changed"}
	for _, u := range []string{
		"http://127.0.0.1:" + port + "/h",
		"https://127.0.0.1:" + port + "/h",
		"https://[::1]:" + port + "/h",
		"https://" + name + ":" + port + "/h",
		"https://169.254.169.254/latest/meta-data/",
	} {
		isError(t, "register "+u, e.do("POST", "/api/webhooks/", tn.compKey, map[string]any{"url": u, "events": events}), 422, "validation_error", "url")
	}
	// Into the store directly, as if registered when the name still pointed elsewhere.
	hook, err := c.st.CreateWebhook(context.Background(), tn.id, "https://"+name+":"+port+"/h", events, "")
	if err != nil {
		t.Fatal(err)
	}
	aid := e.newAgent(tn, "Ava")
	e.must(200, "POST", p("/api/agents/%d/publish", aid), tn.userKey, map[string]any{"country_code": "ZA"})
	var d map[string]any
	waitFor(t, 30*time.Second, "the delivery fails", func() bool {
		items, _, _ := pageOf(t, e.must(200, "GET", p("/api/webhooks/%d/deliveries", hook.ID), tn.compKey, nil))
		if len(items) == 1 {
			d = items[0].(map[string]any)
		}
		return d != nil && d["status"] == "failed"
	})
	if le, _ := d["last_error"].(string); !strings.Contains(le, "refused") || num(d["attempts"]) != 2 {
		t.Fatalf("delivery: %v", d)
	}
	t.Logf("last_error: %s", d["last_error"])
	select {
	case path := <-reached:
		t.Fatalf("the loopback receiver was reached (%s)", path)
	default:
	}
}
