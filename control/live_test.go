package control_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/store"
)

// sseEvent is one server-sent event.
type sseEvent struct {
	name string
	data map[string]any
}

// openEvents connects to the live calls' event stream and delivers its events.
func openEvents(t *testing.T, e *env, key string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/api/calls/live/events", nil)
	req.Header.Set("X-API-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 16)
	go func() {
		defer res.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data)
			case line == "" && ev.name != "":
				out <- ev
				ev = sseEvent{}
			}
		}
	}()
	return out
}

func nextEvent(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return sseEvent{}
}

func liveIDs(v any) []int64 {
	var ids []int64
	for _, it := range v.([]any) {
		ids = append(ids, int64(it.(map[string]any)["conversation_id"].(float64)))
	}
	return ids
}

// TestLiveCalls: the live calls a node publishes, as the API shows them to each
// key (the agency every company's, a company or user key its own, another
// company's call is 404), streamed as events (snapshot, upsert, end) scoped the
// same way; a record its node stopped refreshing is dropped; DELETE asks the
// call's node to hang up and answers 204 once the node says the call ended; a
// viewer may watch but not hang up.
func TestLiveCalls(t *testing.T) {
	e := newEnv(t, envOpts{})
	a, b := e.newTenant("Live A"), e.newTenant("Live B")
	ctx := context.Background()
	now := time.Now().UTC()
	call := func(conv, cid int64, node string) store.LiveCall {
		return store.LiveCall{ConversationID: conv, CompanyID: cid, AgentID: 1, AgentName: "Agent", Node: node, Caller: "+27820000001",
			Called: "+27210000001", State: store.LiveTalking, StartedAt: now.Add(time.Duration(conv) * time.Millisecond), Codec: "PCMU",
			Provider: "elevenlabs", UpdatedAt: time.Now().UTC(), Quality: &store.LiveQuality{Rating: "good", JitterMS: 1.5}}
	}
	if err := e.st.PutLiveCalls(ctx, []store.LiveCall{call(101, a.id, "n1"), call(102, b.id, "n2")}); err != nil {
		t.Fatal(err)
	}
	stale := call(103, a.id, "dead")
	stale.UpdatedAt = time.Now().Add(-time.Minute)
	if err := e.st.PutLiveCalls(ctx, []store.LiveCall{stale}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, key string
		want      []int64
	}{{"agency", e.agency, []int64{101, 102}}, {"company A", a.compKey, []int64{101}}, {"user of B", b.userKey, []int64{102}}} {
		got := liveIDs(e.must(200, "GET", "/api/calls/live", tc.key, nil).json(t)["items"])
		if len(got) != len(tc.want) || got[0] != tc.want[0] || (len(got) > 1 && got[1] != tc.want[1]) {
			t.Errorf("%s sees %v, want %v", tc.name, got, tc.want)
		}
	}
	e.fails(404, "not_found", "live call", "DELETE", "/api/calls/live/101", b.compKey, nil)
	e.fails(404, "not_found", "live call", "DELETE", "/api/calls/live/103", a.compKey, nil) // its node is gone
	viewer := e.must(201, "POST", "/api/users/", a.compKey, map[string]any{"email": "watch@live.example", "name": "W", "role": "viewer"}).json(t)
	e.fails(403, "permission_denied", "role member", "DELETE", "/api/calls/live/101", viewer["api_key"].(string), nil)

	// Events, scoped: A's stream sees A's calls only.
	evA := openEvents(t, e, a.userKey)
	if ev := nextEvent(t, evA); ev.name != "snapshot" || len(liveIDs(ev.data["items"])) != 1 {
		t.Fatalf("first event %+v", ev)
	}
	up := call(101, a.id, "n1")
	up.State = store.LiveOnHold
	if err := e.st.PutLiveCalls(ctx, []store.LiveCall{call(104, b.id, "n2"), up}); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, evA)
	items, _ := ev.data["items"].([]any)
	if ev.name != "upsert" || len(items) != 1 || items[0].(map[string]any)["state"] != "on_hold" {
		t.Fatalf("upsert %+v", ev)
	}

	// A node that carries call 101 answers the hang-up request.
	nodeCtx, stopNode := context.WithCancel(ctx)
	defer stopNode()
	requests, err := e.st.SubscribeLive(nodeCtx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range requests {
			if ev.Type == store.LiveHangup && ev.ConversationID == 101 {
				_ = e.st.EndLiveCalls(ctx, []store.LiveCall{call(101, a.id, "n1")})
			}
		}
	}()
	e.must(204, "DELETE", "/api/calls/live/101", a.userKey, nil)
	if ev := nextEvent(t, evA); ev.name != "end" || int64(ev.data["conversation_ids"].([]any)[0].(float64)) != 101 {
		t.Fatalf("end %+v", ev)
	}
	if got := liveIDs(e.must(200, "GET", "/api/calls/live", e.agency, nil).json(t)["items"]); len(got) != 2 || got[0] != 102 || got[1] != 104 {
		t.Fatalf("after the hang-up the agency sees %v", got)
	}
}

// TestAgencyManagesUsers: the agency key creates, lists, updates and deletes
// the users of a company (the new key works at once and dies with its user);
// a company that does not exist is 404, and company keys cannot use the routes.
func TestAgencyManagesUsers(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.newTenant("Managed")
	base := "/api/agency/companies/" + itoa(tn.id) + "/users"
	u := e.must(201, "POST", base, e.agency, map[string]any{"email": "ops@managed.example", "name": "Ops", "role": "viewer"}).json(t)
	key, id := u["api_key"].(string), int64(u["id"].(float64))
	if me := e.must(200, "GET", "/api/users/me", key, nil).json(t); me["email"] != "ops@managed.example" || me["role"] != "viewer" {
		t.Fatalf("me: %v", me)
	}
	if items := e.must(200, "GET", base, e.agency, nil).json(t)["items"].([]any); len(items) != 2 {
		t.Fatalf("users: %v", items)
	}
	if got := e.must(200, "PUT", base+"/"+itoa(id), e.agency, map[string]any{"role": "member"}).json(t); got["role"] != "member" {
		t.Fatalf("updated: %v", got)
	}
	e.fails(404, "not_found", "company 999999 not found", "GET", "/api/agency/companies/999999/users", e.agency, nil)
	e.fails(403, "permission_denied", "agency key", "GET", base, tn.compKey, nil)
	e.must(204, "DELETE", base+"/"+itoa(id), e.agency, nil)
	e.fails(401, "authentication_error", "invalid", "GET", "/api/users/me", key, nil)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
