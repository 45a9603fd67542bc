package control_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/cxco/gateway/control"
	"github.com/cxco/gateway/store"
)

// fakeCaller is a control.TestCaller that records what it is asked.
type fakeCaller struct {
	mu       sync.Mutex
	offers   []string
	agents   []int64
	startErr error
	live     map[int64]int64 // test call id -> company
	next     int64
}

type statusErr struct{ code int }

func (e statusErr) Error() string   { return fmt.Sprintf("refused with %d", e.code) }
func (e statusErr) HTTPStatus() int { return e.code }

func (f *fakeCaller) StartTestCall(_ context.Context, co *store.Company, a *store.Agent, offer string) (int64, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		return 0, "", f.startErr
	}
	f.offers = append(f.offers, offer)
	f.agents = append(f.agents, a.ID)
	f.next++
	f.live[f.next] = co.ID
	return f.next, "v=0\r\nanswer\r\n", nil
}

func (f *fakeCaller) EndTestCall(_ context.Context, companyID, id int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live[id] != companyID {
		return fmt.Errorf("%w: test call %d", store.ErrNotFound, id)
	}
	delete(f.live, id)
	return nil
}

// withTestCaller is the env's control plane with a TestCaller wired in.
func withTestCaller(e *env, tc control.TestCaller) *env {
	e2 := *e
	e2.api = control.New(control.Options{Store: e.st, Provisioner: e.provider, TestCaller: tc})
	srv := httptest.NewServer(e2.api.Handler())
	e.t.Cleanup(srv.Close)
	e2.base = srv.URL
	return &e2
}

// TestTestCallAPI: POST /api/agents/{id}/test-call hands an active agent's offer to
// the TestCaller (SDP untouched) and answers 201 {test_call_id, conversation_id,
// type, sdp}; DELETE /api/test-calls/{id} hangs up; states, keys, bodies and the
// caller's own refusals map to the documented errors.
func TestTestCallAPI(t *testing.T) {
	base := newEnv(t, envOpts{})
	fake := &fakeCaller{live: map[int64]int64{}}
	e := withTestCaller(base, fake)
	tn := e.newTenant("Caller Co")
	other := e.newTenant("Other Co")
	e.addNumbers("ZA", 3)
	active := e.agentIn(tn, "active")
	draft := e.agentIn(tn, "draft")
	paused := e.agentIn(tn, "paused")
	offer := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"

	r := e.must(201, "POST", p("/api/agents/%d/test-call", active), tn.userKey, map[string]any{"type": "offer", "sdp": offer}).json(t)
	id := num(r["test_call_id"])
	if id == 0 || num(r["conversation_id"]) != id || r["type"] != "answer" || r["sdp"] != "v=0\r\nanswer\r\n" {
		t.Fatalf("answer: %v", r)
	}
	if fake.offers[0] != offer || fake.agents[0] != active {
		t.Fatalf("the caller got %q for agent %d", fake.offers[0], fake.agents[0])
	}
	// Without type, on the path with a trailing slash.
	e.must(201, "POST", p("/api/agents/%d/test-call/", active), tn.userKey, map[string]any{"sdp": offer})

	tests := []struct {
		name, key, path string
		body            any
		status          int
		errType, detail string
	}{
		{"draft agent", tn.userKey, p("/api/agents/%d/test-call", draft), map[string]any{"sdp": offer}, 409, "conflict", "is draft"},
		{"paused agent", tn.userKey, p("/api/agents/%d/test-call", paused), map[string]any{"sdp": offer}, 409, "conflict", "is paused"},
		{"another company's agent", other.userKey, p("/api/agents/%d/test-call", active), map[string]any{"sdp": offer}, 404, "not_found", "agent"},
		{"company key", tn.compKey, p("/api/agents/%d/test-call", active), map[string]any{"sdp": offer}, 403, "permission_denied", "user key"},
		{"no key", "", p("/api/agents/%d/test-call", active), map[string]any{"sdp": offer}, 401, "authentication_error", "API key"},
		{"no sdp", tn.userKey, p("/api/agents/%d/test-call", active), map[string]any{}, 422, "validation_error", "sdp"},
		{"sdp not a string", tn.userKey, p("/api/agents/%d/test-call", active), map[string]any{"sdp": 7}, 422, "validation_error", "sdp"},
		{"an answer", tn.userKey, p("/api/agents/%d/test-call", active), map[string]any{"sdp": offer, "type": "answer"}, 422, "validation_error", "offer"},
		{"unknown field", tn.userKey, p("/api/agents/%d/test-call", active), map[string]any{"sdp": offer, "ice": []any{}}, 422, "validation_error", "unknown field"},
		{"hang up another company's call", other.userKey, p("/api/test-calls/%d", id), nil, 404, "not_found", "test call"},
		{"hang up with a company key", tn.compKey, p("/api/test-calls/%d", id), nil, 403, "permission_denied", "user key"},
		{"hang up a bad id", tn.userKey, "/api/test-calls/abc", nil, 422, "validation_error", "test_call_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := "POST"
			if tt.body == nil {
				method = "DELETE"
			}
			e.fails(tt.status, tt.errType, tt.detail, method, tt.path, tt.key, tt.body)
		})
	}

	e.must(204, "DELETE", p("/api/test-calls/%d", id), tn.userKey, nil)
	e.fails(404, "not_found", "ended already", "DELETE", p("/api/test-calls/%d", id), tn.userKey, nil)

	// The caller's own refusals keep their status; its other errors map as usual.
	for _, tt := range []struct {
		err     error
		status  int
		errType string
	}{
		{statusErr{422}, 422, "validation_error"},
		{fmt.Errorf("wrapped: %w", statusErr{503}), 503, "unavailable"},
		{store.ErrUnavailable, 503, "unavailable"},
		{errors.New("boom"), 500, "internal_error"},
	} {
		fake.mu.Lock()
		fake.startErr = tt.err
		fake.mu.Unlock()
		e.fails(tt.status, tt.errType, "", "POST", p("/api/agents/%d/test-call", active), tn.userKey, map[string]any{"sdp": offer})
	}

	// A gateway without test calls says so.
	base.fails(503, "unavailable", "not available", "POST", p("/api/agents/%d/test-call", active), tn.userKey, map[string]any{"sdp": offer})
	if r := base.do("DELETE", "/api/test-calls/1", tn.userKey, nil); r.Status != http.StatusNotFound {
		t.Fatalf("DELETE without test calls: %d", r.Status)
	}
}
