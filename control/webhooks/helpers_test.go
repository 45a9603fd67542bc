package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/control/webhooks"
	"github.com/cxco/gateway/store"
	"github.com/cxco/gateway/store/redistest"
)

func testLogger() *slog.Logger {
	if os.Getenv("CXCO_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// openStore opens a store on url (a fresh redis-server when empty) with sealer key secret.
func openStore(t testing.TB, url, secret string) *store.Store {
	t.Helper()
	if url == "" {
		url = redistest.StartRedis(t).URL
	}
	if secret == "" {
		secret = store.GenerateSecretKey()
	}
	sealer, err := store.NewSealer(secret)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{URL: url, Sealer: sealer, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// startWorker runs a worker until the test ends. Unset options get test-friendly values.
func startWorker(t testing.TB, o webhooks.Options) *webhooks.Worker {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger()
	}
	if o.Retries == nil {
		o.Retries = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}
	}
	if o.Poll == 0 {
		o.Poll = 20 * time.Millisecond
	}
	w, err := webhooks.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func newCompany(t testing.TB, st *store.Store) int64 {
	t.Helper()
	c, _, err := st.CreateCompany(context.Background(), "Acme", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

var numberSeq struct {
	sync.Mutex
	n int
}

// liveAgent publishes an agent with a fresh ZA number (its publish records agent.status_changed).
func liveAgent(t testing.TB, st *store.Store, cid int64) *store.Agent {
	t.Helper()
	ctx := context.Background()
	numberSeq.Lock()
	numberSeq.n++
	number := fmt.Sprintf("+2721%07d", 1000000+numberSeq.n)
	numberSeq.Unlock()
	if _, err := st.AddNumber(ctx, number, "ZA", "sip_trunk", false); err != nil {
		t.Fatal(err)
	}
	a, err := st.CreateAgent(ctx, store.Agent{CompanyID: cid, Name: "Ava", Personality: "p", OpeningLine: "hi", VoiceID: 1, Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	a, err = st.PublishAgent(ctx, cid, a.ID, "ZA",
		func(context.Context, *store.Agent) (store.ProviderAgent, error) {
			return store.ProviderAgent{ID: "ext"}, nil
		}, func(context.Context, store.ProviderAgent) {})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// flipAgent pauses and resumes a live agent alternately, n times in all (each records
// agent.status_changed), stopping at the first error.
func flipAgent(ctx context.Context, st *store.Store, cid, aid int64, n int) error {
	for i := range n {
		var err error
		if i%2 == 0 {
			_, err = st.PauseAgent(ctx, cid, aid)
		} else {
			_, err = st.ResumeAgent(ctx, cid, aid)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// request is one request a receiver got.
type request struct {
	at     time.Time
	header http.Header
	body   []byte
	event  struct {
		ID        string          `json:"id"`
		Type      string          `json:"type"`
		CreatedAt time.Time       `json:"created_at"`
		CompanyID int64           `json:"company_id"`
		Data      json.RawMessage `json:"data"`
	}
	sigErr error // VerifySignature's verdict (nil: valid), when the receiver has a secret
}

// receiver is a webhook endpoint on 127.0.0.1. It checks signatures with the same
// function the docs show receivers.
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	URL    string
	secret string
	// status answers the n-th request (1-based); nil answers 200.
	status func(n int) int
	mu     sync.Mutex
	reqs   []*request
	notify chan struct{}
}

func newReceiver(t testing.TB, secret string, status func(n int) int) *receiver {
	r := &receiver{t: t, secret: secret, status: status, notify: make(chan struct{}, 1)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	r.URL = r.srv.URL + "/hooks/cxco"
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	rq := &request{at: time.Now(), header: req.Header.Clone(), body: body}
	_ = json.Unmarshal(body, &rq.event)
	if r.secret != "" {
		rq.sigErr = webhooks.VerifySignature(r.secret, req.Header.Get(webhooks.HeaderSignature), body, time.Now(), 5*time.Minute)
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rq)
	n := len(r.reqs)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
	code := http.StatusOK
	if r.status != nil {
		code = r.status(n)
	}
	w.WriteHeader(code)
	if code >= 400 {
		io.WriteString(w, `{"error": "receiver says no"}`)
	}
}

func (r *receiver) requests() []*request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*request(nil), r.reqs...)
}

// wait blocks until the receiver has had n requests, failing the test after d.
func (r *receiver) wait(n int, d time.Duration) []*request {
	r.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		if got := r.requests(); len(got) >= n {
			return got
		}
		select {
		case <-r.notify:
		case <-timer.C:
			r.t.Fatalf("receiver got %d requests within %s, want %d", len(r.requests()), d, n)
		}
	}
}

// waitDelivery polls a delivery until cond holds.
func waitDelivery(t testing.TB, st *store.Store, cid, wid, did int64, d time.Duration, cond func(*store.Delivery) bool) *store.Delivery {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := st.GetDelivery(context.Background(), cid, wid, did)
		if err == nil && cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery %d did not reach the expected state within %s: %+v (err %v)", did, d, got, err)
		}
		<-tick.C
	}
}

func onlyDelivery(t testing.TB, st *store.Store, cid, wid int64) *store.Delivery {
	t.Helper()
	p, err := st.ListDeliveries(context.Background(), cid, wid, 0, 100)
	if err != nil || len(p.Items) != 1 {
		t.Fatalf("want one delivery of webhook %d, have %d (err %v)", wid, len(p.Items), err)
	}
	return p.Items[0]
}

// fakeResolver answers names from a table and others from the system.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}

// port is the port of an httptest server.
func port(srv *httptest.Server) string {
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return p
}

// eventually polls cond until it holds, failing the test after d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		<-tick.C
	}
}
