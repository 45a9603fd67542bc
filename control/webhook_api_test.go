package control_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/control/webhooks"
	"github.com/cxco/gateway/store"
)

// whReceiver is a webhook endpoint on 127.0.0.1 that checks signatures with the
// function the docs show, and answers with status(n) to its n-th request.
type whReceiver struct {
	url    string
	secret string
	status func(n int) int
	mu     sync.Mutex
	got    []whRequest
}

type whRequest struct {
	delivery, eventType, eventID string
	sigErr                       error
}

func newWHReceiver(t *testing.T, secret string, status func(n int) int) *whReceiver {
	r := &whReceiver{secret: secret, status: status}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ev struct{ ID, Type string }
		json.Unmarshal(body, &ev)
		rq := whRequest{delivery: req.Header.Get(webhooks.HeaderDelivery), eventType: ev.Type, eventID: ev.ID}
		rq.sigErr = webhooks.VerifySignature(r.secret, req.Header.Get(webhooks.HeaderSignature), body, time.Now(), 5*time.Minute)
		r.mu.Lock()
		r.got = append(r.got, rq)
		n := len(r.got)
		r.mu.Unlock()
		w.WriteHeader(r.status(n))
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/hook"
	return r
}

func (r *whReceiver) requests() []whRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]whRequest(nil), r.got...)
}

// whWorker runs a delivery worker on the env's store until the test ends.
func whWorker(t *testing.T, e *env, o webhooks.Options) {
	o.Store, o.AllowInsecure = e.st, true
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
}

// whHook registers a webhook through the API (which wants a public https URL) and
// then points it at a local receiver, as a test-only shortcut.
func whHook(t *testing.T, e *env, tn tenant, secret, target string, events ...string) int64 {
	body := map[string]any{"url": "https://hooks.example.com/cxco", "events": events}
	if secret != "" {
		body["secret"] = secret
	}
	id := num(e.must(201, "POST", "/api/webhooks/", tn.compKey, body).json(t)["id"])
	if _, err := e.st.UpdateWebhook(context.Background(), tn.id, id, func(w *store.Webhook) error { w.URL = target; return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

func whDelivery(t *testing.T, e *env, tn tenant, hook, id int64, d time.Duration, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	var m map[string]any
	waitFor(t, d, p("delivery %d", id), func() bool {
		m = e.must(200, "GET", p("/api/webhooks/%d/deliveries/%d", hook, id), tn.compKey, nil).json(t)
		return cond(m)
	})
	return m
}

func TestWebhookDeliveriesAPI(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.newTenant("Hooked Inc", "enterprise")
	other := e.newTenant("Other Co")
	e.addNumbers("ZA", 2)
	const secret = "whsec_api_test_secret"
	rcv := newWHReceiver(t, secret, func(n int) int {
		if n == 2 {
			return http.StatusBadGateway // the first agent event fails once
		}
		return http.StatusOK
	})
	hook := whHook(t, e, tn, secret, rcv.url, "agent.status_changed")
	whWorker(t, e, webhooks.Options{Retries: []time.Duration{100 * time.Millisecond}})

	// POST test: a webhook.test event to this webhook only.
	tst := e.must(202, "POST", p("/api/webhooks/%d/test", hook), tn.compKey, nil).json(t)
	if tst["event_type"] != "webhook.test" || tst["status"] != "pending" || num(tst["attempts"]) != 0 || num(tst["webhook_id"]) != hook ||
		!strings.HasPrefix(tst["event_id"].(string), "evt_") || tst["last_status_code"] != nil || tst["next_attempt_at"] == nil {
		t.Fatalf("test delivery: %v", tst)
	}
	testID := num(tst["id"])
	done := whDelivery(t, e, tn, hook, testID, 10*time.Second, func(m map[string]any) bool { return m["status"] == "succeeded" })
	if num(done["attempts"]) != 1 || num(done["last_status_code"]) != 200 || done["next_attempt_at"] != nil || done["last_attempt_at"] == nil {
		t.Fatalf("test delivery after its attempt: %v", done)
	}

	// Agent events through the API: publish, then pause.
	aid := e.newAgent(tn, "Ava")
	e.must(200, "POST", p("/api/agents/%d/publish", aid), tn.userKey, map[string]any{"country_code": "ZA"})
	e.must(200, "POST", p("/api/agents/%d/pause", aid), tn.userKey, nil)
	waitFor(t, 10*time.Second, "three deliveries succeeded", func() bool {
		items, _, _ := pageOf(t, e.must(200, "GET", p("/api/webhooks/%d/deliveries", hook), tn.compKey, nil))
		n := 0
		for _, it := range items {
			if it.(map[string]any)["status"] == "succeeded" {
				n++
			}
		}
		return len(items) == 3 && n == 3
	})
	for _, r := range rcv.requests() {
		if r.sigErr != nil {
			t.Errorf("%s: %v", r.eventType, r.sigErr)
		}
	}
	if n := len(rcv.requests()); n != 4 {
		t.Fatalf("receiver got %d requests, want 4 (test, publish twice, pause)", n)
	}

	// Paging: one at a time, newest first, no repeats.
	var seen []int64
	cursor := ""
	for page := 0; ; page++ {
		path := p("/api/webhooks/%d/deliveries?limit=1", hook)
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		items, more, next := pageOf(t, e.must(200, "GET", path, tn.compKey, nil))
		if len(items) != 1 {
			t.Fatalf("page %d has %d items", page, len(items))
		}
		it := items[0].(map[string]any)
		for _, k := range []string{"id", "event_id", "event_type", "status", "attempts", "last_status_code", "last_error", "next_attempt_at", "created_at", "updated_at"} {
			if _, ok := it[k]; !ok {
				t.Fatalf("delivery item has no %q: %v", k, it)
			}
		}
		seen = append(seen, num(it["id"]))
		if !more {
			break
		}
		cursor = next
	}
	if len(seen) != 3 || seen[2] != testID || !(seen[0] > seen[1] && seen[1] > seen[2]) {
		t.Fatalf("pages gave %v; want 3 ids, newest first, the test delivery last", seen)
	}
	// The receiver failed its 2nd request: one of the two agent deliveries (they run
	// concurrently) took two attempts.
	attempts := 0
	for _, id := range seen[:2] {
		d := e.must(200, "GET", p("/api/webhooks/%d/deliveries/%d", hook, id), tn.compKey, nil).json(t)
		if d["event_type"] != "agent.status_changed" {
			t.Fatalf("delivery %d: %v", id, d)
		}
		attempts += int(num(d["attempts"]))
	}
	if attempts != 3 {
		t.Fatalf("the agent deliveries took %d attempts, want 3 (one failed once)", attempts)
	}

	// Redeliver a succeeded delivery: one more attempt, same X-CXCO-Delivery.
	a0 := num(e.must(200, "GET", p("/api/webhooks/%d/deliveries/%d", hook, seen[0]), tn.compKey, nil).json(t)["attempts"])
	re := e.must(202, "POST", p("/api/webhooks/%d/deliveries/%d/redeliver", hook, seen[0]), tn.compKey, nil).json(t)
	if re["status"] != "pending" {
		t.Fatalf("redelivered: %v", re)
	}
	whDelivery(t, e, tn, hook, seen[0], 10*time.Second, func(m map[string]any) bool {
		return m["status"] == "succeeded" && num(m["attempts"]) == a0+1
	})
	last := rcv.requests()[len(rcv.requests())-1]
	if last.delivery != p("%d", seen[0]) || last.eventType != "agent.status_changed" {
		t.Fatalf("redelivery arrived as %+v", last)
	}

	// Errors: bad paging, other companies' ids, unknown deliveries, wrong key type.
	isError(t, "limit 101", e.do("GET", p("/api/webhooks/%d/deliveries?limit=101", hook), tn.compKey, nil), 422, "validation_error", "limit")
	isError(t, "bad cursor", e.do("GET", p("/api/webhooks/%d/deliveries?cursor=nope", hook), tn.compKey, nil), 422, "validation_error", "cursor")
	for _, c := range []struct{ name, method, path, key, what string }{
		{"list, other company", "GET", p("/api/webhooks/%d/deliveries", hook), other.compKey, "webhook"},
		{"get, other company", "GET", p("/api/webhooks/%d/deliveries/%d", hook, testID), other.compKey, "webhook"},
		{"redeliver, other company", "POST", p("/api/webhooks/%d/deliveries/%d/redeliver", hook, testID), other.compKey, "webhook"},
		{"test, other company", "POST", p("/api/webhooks/%d/test", hook), other.compKey, "webhook"},
		{"unknown delivery", "GET", p("/api/webhooks/%d/deliveries/%d", hook, 999999), tn.compKey, "delivery"},
		{"unknown delivery redeliver", "POST", p("/api/webhooks/%d/deliveries/%d/redeliver", hook, 999999), tn.compKey, "delivery"},
	} {
		isError(t, c.name, e.do(c.method, c.path, c.key, nil), 404, "not_found", c.what)
	}
	// A delivery is only reachable through its own webhook.
	hook2 := whHook(t, e, tn, "", rcv.url, "conversation.completed")
	isError(t, "delivery of another webhook", e.do("GET", p("/api/webhooks/%d/deliveries/%d", hook2, testID), tn.compKey, nil), 404, "not_found", "delivery")
	isError(t, "user key", e.do("GET", p("/api/webhooks/%d/deliveries", hook), tn.userKey, nil), 403, "permission_denied", "company key")

	// A disabled webhook takes no tests or redeliveries.
	e.must(200, "PUT", p("/api/webhooks/%d", hook2), tn.compKey, map[string]any{"status": "disabled"})
	isError(t, "test a disabled webhook", e.do("POST", p("/api/webhooks/%d/test", hook2), tn.compKey, nil), 409, "conflict", "disabled")
	isError(t, "redeliver to a disabled webhook", e.do("POST", p("/api/webhooks/%d/deliveries/%d/redeliver", hook2, testID), tn.compKey, nil), 409, "conflict", "disabled")
	// Deleting the webhook removes its deliveries with it.
	e.must(204, "DELETE", p("/api/webhooks/%d", hook), tn.compKey, nil)
	isError(t, "deliveries of a deleted webhook", e.do("GET", p("/api/webhooks/%d/deliveries", hook), tn.compKey, nil), 404, "not_found", "webhook")
}

// TestWebhookDisabledVisible: a webhook that keeps failing becomes disabled with a
// reason in GET /api/webhooks/, and PUT status active brings its deliveries back.
func TestWebhookDisabledVisible(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.newTenant("Flaky Ltd", "enterprise")
	var healthy sync.Once
	ok := make(chan struct{})
	rcv := newWHReceiver(t, "", func(int) int {
		select {
		case <-ok:
			return 200
		default:
			return 500
		}
	})
	hook := whHook(t, e, tn, "", rcv.url, "agent.status_changed")
	retries := make([]time.Duration, 30)
	for i := range retries {
		retries[i] = 50 * time.Millisecond
	}
	whWorker(t, e, webhooks.Options{Retries: retries, DisableAfter: 300 * time.Millisecond})
	tst := num(e.must(202, "POST", p("/api/webhooks/%d/test", hook), tn.compKey, nil).json(t)["id"])
	var w map[string]any
	waitFor(t, 10*time.Second, "the webhook is disabled", func() bool {
		for _, it := range e.must(200, "GET", "/api/webhooks/", tn.compKey, nil).list(t) {
			if m := it.(map[string]any); num(m["id"]) == hook {
				w = m
			}
		}
		return w["status"] == "disabled"
	})
	if r, _ := w["disabled_reason"].(string); !strings.Contains(r, "HTTP 500") || w["disabled_at"] == nil {
		t.Fatalf("disabled webhook: %v", w)
	}
	d := whDelivery(t, e, tn, hook, tst, 5*time.Second, func(m map[string]any) bool { return m["next_attempt_at"] == nil })
	if d["status"] != "pending" {
		t.Fatalf("the waiting delivery: %v", d)
	}
	healthy.Do(func() { close(ok) })
	act := e.must(200, "PUT", p("/api/webhooks/%d", hook), tn.compKey, map[string]any{"status": "active"}).json(t)
	if act["status"] != "active" || act["disabled_reason"] != nil {
		t.Fatalf("re-enabled: %v", act)
	}
	whDelivery(t, e, tn, hook, tst, 10*time.Second, func(m map[string]any) bool { return m["status"] == "succeeded" })
}

// TestWebhookRoutesDocumented: the delivery routes are in the OpenAPI document with
// their schemas.
func TestWebhookRoutesDocumented(t *testing.T) {
	e := newEnv(t, envOpts{})
	doc := e.must(200, "GET", "/api/openapi.json", "", nil).json(t)
	paths := doc["paths"].(map[string]any)
	for _, c := range []struct{ path, method, status, schema string }{
		{"/api/webhooks/{webhook_id}/deliveries", "get", "200", "WebhookDeliveryPage"},
		{"/api/webhooks/{webhook_id}/deliveries/{delivery_id}", "get", "200", "WebhookDelivery"},
		{"/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", "post", "202", "WebhookDelivery"},
		{"/api/webhooks/{webhook_id}/test", "post", "202", "WebhookDelivery"},
	} {
		op, _ := paths[c.path].(map[string]any)[c.method].(map[string]any)
		if op == nil {
			t.Fatalf("%s %s is not documented", c.method, c.path)
		}
		b, _ := json.Marshal(op["responses"].(map[string]any)[c.status])
		if !strings.Contains(string(b), "#/components/schemas/"+c.schema) {
			t.Errorf("%s %s: response %s is not %s: %s", c.method, c.path, c.status, c.schema, b)
		}
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for _, s := range []string{"WebhookDelivery", "WebhookDeliveryPage"} {
		if schemas[s] == nil {
			t.Errorf("schema %s missing", s)
		}
	}
}
