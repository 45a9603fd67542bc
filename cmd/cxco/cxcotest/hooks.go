package cxcotest

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Hooks is a webhook endpoint on 127.0.0.1 that answers 200 and keeps every event
// it gets, so a test can wait for the gateway to say something happened (the
// event) instead of polling the API for it.
type Hooks struct {
	URL     string
	mu      sync.Mutex
	events  []map[string]any
	arrived chan struct{} // closed (and replaced) when an event arrives
}

// NewHooks starts the endpoint; it stops when the test ends.
func NewHooks(t testing.TB) *Hooks {
	t.Helper()
	h := &Hooks{arrived: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev map[string]any
		if json.Unmarshal(body, &ev) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, ev)
		close(h.arrived)
		h.arrived = make(chan struct{})
		h.mu.Unlock()
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	h.URL = "http://" + ln.Addr().String() + "/hooks"
	return h
}

// Events are the events received so far.
func (h *Hooks) Events() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.events...)
}

// Wait waits until cond holds for the events received so far (checked as each
// arrives) or d passes; it returns whether cond held.
func (h *Hooks) Wait(d time.Duration, cond func(evs []map[string]any) bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		next := h.arrived
		evs := append([]map[string]any(nil), h.events...)
		h.mu.Unlock()
		if cond(evs) {
			return true
		}
		select {
		case <-next:
		case <-deadline.C:
			return cond(h.Events())
		}
	}
}

// endedData is the data of every conversation.completed or .transferred event,
// the last one of each conversation, by conversation id.
func endedData(evs []map[string]any) map[int64]map[string]any {
	out := map[int64]map[string]any{}
	for _, ev := range evs {
		if ev["type"] != "conversation.completed" && ev["type"] != "conversation.transferred" {
			continue
		}
		if data, _ := ev["data"].(map[string]any); data != nil {
			if id, _ := data["id"].(float64); id > 0 {
				out[int64(id)] = data
			}
		}
	}
	return out
}

// EndedCalls waits until the conversations of all these SIP Call-IDs have ended
// and returns each one's last event data by Call-ID; ok is false if not all ended
// within d.
func (h *Hooks) EndedCalls(callIDs []string, d time.Duration) (convs map[string]map[string]any, ok bool) {
	collect := func(evs []map[string]any) map[string]map[string]any {
		want := map[string]bool{}
		for _, id := range callIDs {
			want[id] = true
		}
		out := map[string]map[string]any{}
		for _, data := range endedData(evs) {
			if id, _ := data["sip_call_id"].(string); want[id] {
				out[id] = data
			}
		}
		return out
	}
	ok = h.Wait(d, func(evs []map[string]any) bool { return len(collect(evs)) == len(callIDs) })
	return collect(h.Events()), ok
}

// Ended waits until n distinct conversations have ended (conversation.completed
// or conversation.transferred) and returns each one's last event data by id; ok
// is false if fewer ended within d.
func (h *Hooks) Ended(n int, d time.Duration) (convs map[int64]map[string]any, ok bool) {
	ok = h.Wait(d, func(evs []map[string]any) bool { return len(endedData(evs)) >= n })
	return endedData(h.Events()), ok
}

// Subscribe registers h as the tenant's webhook for conversation events (the
// gateway must run with --webhook-allow-insecure for a loopback http URL).
func (g *Gateway) Subscribe(tn Tenant, h *Hooks) {
	g.t.Helper()
	g.Must(201, "POST", "/api/webhooks/", tn.CompanyKey, map[string]any{"url": h.URL,
		"events": []string{"conversation.completed", "conversation.transferred"}})
}
