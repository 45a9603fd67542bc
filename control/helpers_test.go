package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/store"
)

// bigTenant is a company on the enterprise plan, so a test that makes many requests
// stays far below its rate limit.
func (e *env) bigTenant(name string) tenant {
	e.t.Helper()
	return e.newTenant(name, "enterprise")
}

// doHeaders sends a request with exactly the given headers (no X-API-Key of its own).
func (e *env) doHeaders(method, path string, h http.Header, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range h {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// isError checks a response against an error status, its error_type and a detail
// that mentions contains (case-insensitive), and that the body has only those two fields.
func isError(t testing.TB, what string, r resp, status int, errType, contains string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %d, want %d: %s", what, r.Status, status, r.Body)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Errorf("%s: error body is not a JSON object: %s", what, r.Body)
		return
	}
	if m["error_type"] != errType {
		t.Errorf("%s: error_type %v, want %s: %s", what, m["error_type"], errType, r.Body)
	}
	d, _ := m["detail"].(string)
	if d == "" || !strings.Contains(strings.ToLower(d), strings.ToLower(contains)) {
		t.Errorf("%s: detail %q does not mention %q", what, d, contains)
	}
	if len(m) != 2 {
		t.Errorf("%s: error body has fields besides detail and error_type: %s", what, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
}

// waitFor polls cond until it holds or d passes (for work done in the background,
// such as WhatsApp verification, that has no signal a test can wait on).
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		<-tick.C
	}
}

// outboxEvent is one event of a company's outbox stream.
type outboxEvent struct {
	StreamID string
	ID       string
	Type     string
	Data     map[string]any
}

// outbox reads a company's whole outbox stream with XRANGE (the key is in store/keys.go).
func (e *env) outbox(cid int64) []outboxEvent {
	e.t.Helper()
	key := fmt.Sprintf("cxco:{c%d}:outbox", cid)
	msgs, err := e.st.Redis().XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		e.t.Fatalf("XRANGE %s: %v", key, err)
	}
	out := make([]outboxEvent, 0, len(msgs))
	for _, m := range msgs {
		raw, _ := m.Values["event"].(string)
		var ev store.Event
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			e.t.Fatalf("outbox entry %s is not an event: %v: %q", m.ID, err, raw)
		}
		if ev.CompanyID != cid {
			e.t.Fatalf("outbox of company %d holds an event of company %d", cid, ev.CompanyID)
		}
		if m.Values["type"] != ev.Type || m.Values["id"] != ev.ID {
			e.t.Fatalf("outbox entry %s: fields %v disagree with the event %+v", m.ID, m.Values, ev)
		}
		data, _ := ev.Data.(map[string]any)
		out = append(out, outboxEvent{StreamID: m.ID, ID: ev.ID, Type: ev.Type, Data: data})
	}
	return out
}

// eventsOf keeps the events of one type.
func eventsOf(evs []outboxEvent, typ string) []outboxEvent {
	var out []outboxEvent
	for _, ev := range evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func p(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// publish publishes an agent (ZA) and returns it.
func (e *env) publish(tn tenant, id int64) map[string]any {
	e.t.Helper()
	return e.must(200, "POST", p("/api/agents/%d/publish", id), tn.userKey, map[string]any{"country_code": "ZA"}).json(e.t)
}

// ids lists the "id" of every item of a list.
func ids(items []any) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = num(it.(map[string]any)["id"])
	}
	return out
}

// pageOf decodes a paged list body.
func pageOf(t testing.TB, r resp) (items []any, hasMore bool, next string) {
	t.Helper()
	m := r.json(t)
	for _, k := range []string{"items", "has_more", "next_cursor"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("paged body has no %q: %s", k, r.Body)
		}
	}
	items, _ = m["items"].([]any)
	hasMore, _ = m["has_more"].(bool)
	next, _ = m["next_cursor"].(string)
	if hasMore != (next != "") {
		t.Fatalf("has_more=%v but next_cursor=%v", hasMore, m["next_cursor"])
	}
	return items, hasMore, next
}

// walk reads every page of a paged list with the given limit and returns the ids in order.
func (e *env) walk(path, key string, limit int) []int64 {
	e.t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	var all []int64
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			e.t.Fatalf("%s: paging does not end", path)
		}
		url := p("%s%slimit=%d", path, sep, limit)
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		items, more, next := pageOf(e.t, e.must(200, "GET", url, key, nil))
		if len(items) > limit || (more && len(items) != limit) {
			e.t.Fatalf("%s: page of %d items with limit %d (has_more %v)", url, len(items), limit, more)
		}
		all = append(all, ids(items)...)
		if !more {
			return all
		}
		cursor = next
	}
}

func strs(n int, s string) string { return strings.Repeat(s, n) }
