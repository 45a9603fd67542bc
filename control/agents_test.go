package control_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/store"
	"github.com/cxco/gateway/store/redistest"
)

func agentBody(changes map[string]any) map[string]any {
	b := map[string]any{"name": "Sales Assistant", "personality": "You are a helpful sales assistant.",
		"opening_line": "Hi there! How can I help?", "voice_id": 1}
	for k, v := range changes {
		if v == nil {
			delete(b, k)
			continue
		}
		b[k] = v
	}
	return b
}

// TestAgentCreateValidation: every field of POST /api/agents/ is checked, and every
// refusal is a 422 whose detail names the field.
func TestAgentCreateValidation(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Validators")
	cfg := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return map[string]any{"config": m}
	}
	with := func(k string, v any) map[string]any { return map[string]any{k: v} }
	del := func(k string) map[string]any { return map[string]any{k: nil} }

	bad := []struct {
		name  string
		body  any
		field string
	}{
		{"name missing", agentBody(del("name")), "name"},
		{"personality missing", agentBody(del("personality")), "personality"},
		{"opening_line missing", agentBody(del("opening_line")), "opening_line"},
		{"voice_id missing", agentBody(del("voice_id")), "voice_id"},
		{"name null", agentBody(with("name", json.RawMessage("null"))), "name"},
		{"name empty", agentBody(with("name", "")), "name"},
		{"name blank", agentBody(with("name", "   ")), "name"},
		{"name 201 characters", agentBody(with("name", strs(201, "a"))), "name"},
		{"name not a string", agentBody(with("name", 123)), "name"},
		{"personality empty", agentBody(with("personality", "")), "personality"},
		{"personality 20001 characters", agentBody(with("personality", strs(20001, "p"))), "personality"},
		{"personality 20001 multibyte characters", agentBody(with("personality", strs(20001, "é"))), "personality"},
		{"personality not a string", agentBody(with("personality", []string{"a"})), "personality"},
		{"opening_line empty", agentBody(with("opening_line", "")), "opening_line"},
		{"opening_line 2001 characters", agentBody(with("opening_line", strs(2001, "o"))), "opening_line"},
		{"opening_line not a string", agentBody(with("opening_line", true)), "opening_line"},
		{"voice_id unknown", agentBody(with("voice_id", 999)), "voice_id"},
		{"voice_id a string", agentBody(with("voice_id", "1")), "voice_id"},
		{"voice_id a fraction", agentBody(with("voice_id", 1.5)), "voice_id"},
		{"language unknown", agentBody(with("language", "xx")), "language"},
		{"language empty", agentBody(with("language", "")), "language"},
		{"language not a string", agentBody(with("language", 7)), "language"},
		{"config not an object", agentBody(with("config", []int{1})), "config"},
		{"config a string", agentBody(with("config", "hot")), "config"},
		{"temperature above 2", agentBody(cfg("temperature", 2.01)), "config.temperature"},
		{"temperature below 0", agentBody(cfg("temperature", -0.1)), "config.temperature"},
		{"temperature a string", agentBody(cfg("temperature", "0.7")), "config.temperature"},
		{"max duration below 10", agentBody(cfg("max_call_duration_seconds", 9)), "config.max_call_duration_seconds"},
		{"max duration above 14400", agentBody(cfg("max_call_duration_seconds", 14401)), "config.max_call_duration_seconds"},
		{"max duration a fraction", agentBody(cfg("max_call_duration_seconds", 600.5)), "config.max_call_duration_seconds"},
		{"max duration a string", agentBody(cfg("max_call_duration_seconds", "600")), "config.max_call_duration_seconds"},
		{"unknown config key", agentBody(cfg("top_p", 0.9)), "config.top_p"},
		{"audio format unknown", agentBody(cfg("audio_format", "mp3")), "config.audio_format"},
		{"audio chunk not a multiple of 20", agentBody(cfg("user_audio_chunk_ms", 30)), "config.user_audio_chunk_ms"},
		{"transfer not an object", agentBody(cfg("transfer", "yes")), "config.transfer"},
		{"transfer mode unknown", agentBody(cfg("transfer", map[string]any{"mode": "teleport"})), "config.transfer.mode"},
		{"transfer unknown key", agentBody(cfg("transfer", map[string]any{"when": "always"})), "config.transfer.when"},
		{"transfer destination number", agentBody(cfg("transfer", map[string]any{"destinations": []any{
			map[string]any{"number": "0211234567", "condition": "billing"}}})), "config.transfer.destinations[0].number"},
		{"transfer destination condition", agentBody(cfg("transfer", map[string]any{"destinations": []any{
			map[string]any{"number": "+27211234567"}}})), "config.transfer.destinations[0].condition"},
		{"unknown top-level field", agentBody(with("status", "active")), "status"},
		{"unknown top-level field (id)", agentBody(with("id", 5)), "id"},
		{"body is an array", "[]", "JSON object"},
		{"body is not JSON", `{"name": "x",`, "JSON"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/api/agents/", tn.userKey, c.body)
			isError(t, c.name, r, 422, "validation_error", c.field)
		})
	}
	if n := len(e.must(200, "GET", "/api/agents/", tn.userKey, nil).json(t)["items"].([]any)); n != 0 {
		t.Fatalf("refused creations left %d agents", n)
	}

	good := []struct {
		name  string
		body  map[string]any
		check func(t *testing.T, a map[string]any)
	}{
		{"minimal: language defaults to en, config to {}", agentBody(nil), func(t *testing.T, a map[string]any) {
			if a["language"] != "en" || len(a["config"].(map[string]any)) != 0 {
				t.Errorf("defaults: language %v config %v", a["language"], a["config"])
			}
		}},
		{"name of 200 characters", agentBody(with("name", strs(200, "n"))), nil},
		{"personality of 20000 multibyte characters", agentBody(with("personality", strs(20000, "é"))), func(t *testing.T, a map[string]any) {
			if n := len([]rune(a["personality"].(string))); n != 20000 {
				t.Errorf("personality has %d characters", n)
			}
		}},
		{"opening_line of 2000 characters", agentBody(with("opening_line", strs(2000, "o"))), nil},
		{"temperature 0", agentBody(cfg("temperature", 0)), nil},
		{"temperature 2", agentBody(cfg("temperature", 2)), nil},
		{"max duration 10", agentBody(cfg("max_call_duration_seconds", 10)), nil},
		{"max duration 14400", agentBody(cfg("max_call_duration_seconds", 14400)), nil},
		{"transfers to a number and a SIP URI", agentBody(cfg("transfer", map[string]any{"mode": "refer", "destinations": []any{
			map[string]any{"number": "+27211234567", "condition": "billing questions", "label": "Billing"},
			map[string]any{"number": "sip:support@pbx.example.com", "condition": "technical problems"}}})), nil},
		{"language upper case", agentBody(with("language", "DE")), func(t *testing.T, a map[string]any) {
			if a["language"] != "de" {
				t.Errorf("language %v, want de", a["language"])
			}
		}},
		{"the reference's example", agentBody(map[string]any{"language": "en", "voice_id": 2,
			"config": map[string]any{"temperature": 0.7, "max_call_duration_seconds": 600}}), func(t *testing.T, a map[string]any) {
			if c := a["config"].(map[string]any); c["temperature"] != 0.7 || c["max_call_duration_seconds"] != 600.0 {
				t.Errorf("config %v", c)
			}
			if v := a["voice"].(map[string]any); v["name"] != "James" || num(v["id"]) != 2 {
				t.Errorf("voice %v", v)
			}
		}},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			a := e.must(201, "POST", "/api/agents", tn.userKey, c.body).json(t)
			if a["status"] != "draft" || a["voice_enabled"] != true || a["whatsapp_enabled"] != false || num(a["company_id"]) != tn.id {
				t.Errorf("new agent: %v", a)
			}
			if _, has := a["external_agent_id"]; has {
				t.Errorf("a draft has an external_agent_id: %v", a)
			}
			for _, k := range []string{"id", "created_at", "updated_at", "voice", "personality", "opening_line"} {
				if a[k] == nil {
					t.Errorf("agent has no %s: %v", k, a)
				}
			}
			if c.check != nil {
				c.check(t, a)
			}
		})
	}
}

// TestAgentListPaging: status filter, limit (default 30, max 100) and cursors; a page
// never skips or repeats an agent while agents are being created at the same time.
func TestAgentListPaging(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Pager")
	var made []int64
	for i := 0; i < 65; i++ {
		made = append(made, e.newAgent(tn, p("Agent %d", i)))
	}
	slices.Reverse(made) // newest first

	items, more, next := pageOf(t, e.must(200, "GET", "/api/agents/", tn.userKey, nil))
	if len(items) != 30 || !more || next == "" {
		t.Fatalf("default page: %d items, has_more %v", len(items), more)
	}
	if got := ids(items); !slices.Equal(got, made[:30]) {
		t.Fatalf("first page %v, want %v", got, made[:30])
	}
	items, more, _ = pageOf(t, e.must(200, "GET", "/api/agents/?limit=100", tn.userKey, nil))
	if len(items) != 65 || more {
		t.Fatalf("limit=100: %d items, has_more %v", len(items), more)
	}
	if got := e.walk("/api/agents/", tn.userKey, 30); !slices.Equal(got, made) {
		t.Fatalf("walking pages of 30: %v", got)
	}
	if got := e.walk("/api/agents/", tn.userKey, 1); !slices.Equal(got, made) {
		t.Fatalf("walking pages of 1: %v", got)
	}

	for _, c := range []struct{ name, query, field string }{
		{"limit 101", "limit=101", "limit"},
		{"limit 0", "limit=0", "limit"},
		{"limit negative", "limit=-1", "limit"},
		{"limit not a number", "limit=ten", "limit"},
		{"cursor garbage", "cursor=garbage", "cursor"},
		{"cursor of id 0", "cursor=aWQ6MA", "cursor"},
		{"cursor not base64", "cursor=%25%25%25", "cursor"},
		{"status unknown", "status=live", "status"},
	} {
		isError(t, c.name, e.do("GET", "/api/agents/?"+c.query, tn.userKey, nil), 422, "validation_error", c.field)
	}

	// Status filter.
	e.addNumbers("ZA", 3)
	active, paused, archived := made[0], made[1], made[2]
	e.publish(tn, active)
	e.publish(tn, paused)
	e.must(200, "POST", p("/api/agents/%d/pause", paused), tn.userKey, nil)
	e.must(200, "DELETE", p("/api/agents/%d", archived), tn.userKey, nil)
	for status, want := range map[string][]int64{"active": {active}, "paused": {paused}, "archived": {archived}} {
		got := e.walk("/api/agents/?status="+status, tn.userKey, 30)
		if !slices.Equal(got, want) {
			t.Errorf("status=%s: %v, want %v", status, got, want)
		}
		items, _, _ := pageOf(t, e.must(200, "GET", "/api/agents/?status="+status, tn.userKey, nil))
		for _, it := range items {
			if it.(map[string]any)["status"] != status {
				t.Errorf("status=%s lists %v", status, it)
			}
		}
	}
	drafts := e.walk("/api/agents/?status=draft", tn.userKey, 7)
	if len(drafts) != 62 || slices.Contains(drafts, active) || slices.Contains(drafts, paused) || slices.Contains(drafts, archived) {
		t.Fatalf("status=draft: %d agents", len(drafts))
	}

	// Paging while agents are created: every agent that existed before the walk is
	// seen exactly once, and nothing is seen twice.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var addErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := e.st.CreateAgent(ctx, store.Agent{CompanyID: tn.id, Name: p("Late %d", i), Personality: "p",
				OpeningLine: "o", VoiceID: 1, Language: "en"}); err != nil && ctx.Err() == nil {
				addErr = err
				return
			}
		}
	}()
	seen := e.walk("/api/agents/", tn.userKey, 7)
	cancel()
	wg.Wait()
	if addErr != nil {
		t.Fatal(addErr)
	}
	count := map[int64]int{}
	for _, id := range seen {
		count[id]++
		if count[id] > 1 {
			t.Fatalf("agent %d seen twice while paging", id)
		}
	}
	for _, id := range made {
		if count[id] != 1 {
			t.Fatalf("agent %d skipped while paging", id)
		}
	}
}

// TestAgentGetAndUpdate: GET, and PUT as a partial update with config merged key by key.
func TestAgentGetAndUpdate(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Updater")
	a := e.must(201, "POST", "/api/agents/", tn.userKey, agentBody(map[string]any{
		"config": map[string]any{"temperature": 0.7, "max_call_duration_seconds": 600}})).json(t)
	id := num(a["id"])
	path := p("/api/agents/%d", id)

	got := e.must(200, "GET", path, tn.userKey, nil).json(t)
	if !maps.EqualFunc(got, a, func(x, y any) bool {
		bx, _ := json.Marshal(x)
		by, _ := json.Marshal(y)
		return string(bx) == string(by)
	}) {
		t.Fatalf("GET %v\nPOST %v", got, a)
	}
	e.fails(404, "not_found", "agent", "GET", "/api/agents/999999", tn.userKey, nil)
	e.fails(422, "validation_error", "agent_id", "GET", "/api/agents/abc", tn.userKey, nil)

	steps := []struct {
		name string
		body map[string]any
		want map[string]any // fields after the update
		cfg  map[string]any // config after the update
	}{
		{"name only", map[string]any{"name": "Renamed"}, map[string]any{"name": "Renamed", "personality": "You are a helpful sales assistant."},
			map[string]any{"temperature": 0.7, "max_call_duration_seconds": 600.0}},
		{"one config key", map[string]any{"config": map[string]any{"temperature": 1.2}}, map[string]any{"name": "Renamed"},
			map[string]any{"temperature": 1.2, "max_call_duration_seconds": 600.0}},
		{"another config key", map[string]any{"config": map[string]any{"max_call_duration_seconds": 900}}, nil,
			map[string]any{"temperature": 1.2, "max_call_duration_seconds": 900.0}},
		{"null removes a config key", map[string]any{"config": map[string]any{"temperature": nil}}, nil,
			map[string]any{"max_call_duration_seconds": 900.0}},
		{"voice, language, opening line and personality", map[string]any{"voice_id": 2, "language": "fr", "opening_line": "Bonjour !",
			"personality": "Vous êtes serviable."}, map[string]any{"language": "fr", "opening_line": "Bonjour !", "personality": "Vous êtes serviable."},
			map[string]any{"max_call_duration_seconds": 900.0}},
		{"empty body changes nothing", map[string]any{}, map[string]any{"name": "Renamed", "language": "fr"},
			map[string]any{"max_call_duration_seconds": 900.0}},
	}
	for _, s := range steps {
		u := e.must(200, "PUT", path, tn.userKey, s.body).json(t)
		for k, v := range s.want {
			if u[k] != v {
				t.Errorf("%s: %s = %v, want %v", s.name, k, u[k], v)
			}
		}
		if !maps.Equal(u["config"].(map[string]any), s.cfg) {
			t.Errorf("%s: config %v, want %v", s.name, u["config"], s.cfg)
		}
		if again := e.must(200, "GET", path, tn.userKey, nil).json(t); !maps.Equal(again["config"].(map[string]any), s.cfg) {
			t.Errorf("%s: stored config %v", s.name, again["config"])
		}
	}
	if v := e.must(200, "GET", path, tn.userKey, nil).json(t)["voice"].(map[string]any); v["name"] != "James" {
		t.Fatalf("voice after update: %v", v)
	}

	before := e.must(200, "GET", path, tn.userKey, nil).Body
	for _, c := range []struct {
		name  string
		body  any
		field string
	}{
		{"name too long", map[string]any{"name": strs(201, "x")}, "name"},
		{"name empty", map[string]any{"name": ""}, "name"},
		{"temperature out of range", map[string]any{"config": map[string]any{"temperature": 3}}, "config.temperature"},
		{"max duration out of range", map[string]any{"config": map[string]any{"max_call_duration_seconds": 5}}, "config.max_call_duration_seconds"},
		{"unknown config key", map[string]any{"config": map[string]any{"pitch": 1}}, "config.pitch"},
		{"unknown voice", map[string]any{"voice_id": 4242}, "voice_id"},
		{"unknown language", map[string]any{"language": "klingon"}, "language"},
		{"unknown field", map[string]any{"status": "active"}, "status"},
		{"wrong type", map[string]any{"voice_id": "two"}, "voice_id"},
		{"not an object", `"rename"`, "JSON object"},
	} {
		isError(t, c.name, e.do("PUT", path, tn.userKey, c.body), 422, "validation_error", c.field)
	}
	if after := e.must(200, "GET", path, tn.userKey, nil).Body; string(after) != string(before) {
		t.Fatalf("a refused update changed the agent:\n%s\n%s", before, after)
	}
}

// agentIn brings a fresh agent to a status and returns its id.
func (e *env) agentIn(tn tenant, status string) int64 {
	e.t.Helper()
	id := e.newAgent(tn, "State "+status)
	switch status {
	case "active":
		e.publish(tn, id)
	case "paused":
		e.publish(tn, id)
		e.must(200, "POST", p("/api/agents/%d/pause", id), tn.userKey, nil)
	case "archived":
		e.must(200, "DELETE", p("/api/agents/%d", id), tn.userKey, nil)
	}
	return id
}

// TestAgentStateMachine: draft → active (publish) ⇄ paused (pause/resume) → archived
// (from any state). An action that does not fit is 409 naming the state; each status
// change adds exactly one agent.status_changed event to the outbox, a refusal none.
func TestAgentStateMachine(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Stately")
	e.addNumbers("ZA", 12)
	type action struct{ method, suffix string }
	actions := map[string]action{
		"publish": {"POST", "/publish"}, "pause": {"POST", "/pause"}, "resume": {"POST", "/resume"},
		"archive": {"DELETE", ""}, "update": {"PUT", ""},
		"get": {"GET", ""}, "conversations": {"GET", "/conversations"}, "usage": {"GET", "/usage"},
	}
	cases := []struct {
		from, action string
		status       int    // expected HTTP status
		to           string // status after a change ("" = no status change)
	}{
		{"draft", "publish", 200, "active"},
		{"draft", "pause", 409, ""},
		{"draft", "resume", 409, ""},
		{"draft", "archive", 200, "archived"},
		{"draft", "update", 200, ""},
		{"active", "publish", 409, ""},
		{"active", "pause", 200, "paused"},
		{"active", "resume", 409, ""},
		{"active", "archive", 200, "archived"},
		{"active", "update", 200, ""},
		{"paused", "publish", 409, ""},
		{"paused", "pause", 409, ""},
		{"paused", "resume", 200, "active"},
		{"paused", "archive", 200, "archived"},
		{"paused", "update", 200, ""},
		{"archived", "publish", 409, ""},
		{"archived", "pause", 409, ""},
		{"archived", "resume", 409, ""},
		{"archived", "archive", 409, ""},
		{"archived", "update", 409, ""},
		{"archived", "get", 200, ""},
		{"archived", "conversations", 200, ""},
		{"archived", "usage", 200, ""},
	}
	for _, c := range cases {
		t.Run(c.from+"/"+c.action, func(t *testing.T) {
			id := e.agentIn(tn, c.from)
			before := len(e.outbox(tn.id))
			act := actions[c.action]
			var body any
			if c.action == "update" {
				body = map[string]any{"opening_line": "Updated line."}
			}
			r := e.do(act.method, p("/api/agents/%d%s", id, act.suffix), tn.userKey, body)
			if c.status == 409 {
				isError(t, c.action+" on "+c.from, r, 409, "conflict", c.from)
			} else if r.Status != c.status {
				t.Fatalf("%s on %s: %d %s", c.action, c.from, r.Status, r.Body)
			}
			after := e.outbox(tn.id)[before:]
			if c.to == "" {
				if len(after) != 0 {
					t.Fatalf("%s on %s added events: %+v", c.action, c.from, after)
				}
				if st := e.must(200, "GET", p("/api/agents/%d", id), tn.userKey, nil).json(t)["status"]; st != c.from {
					t.Fatalf("%s on %s left the agent %v", c.action, c.from, st)
				}
				return
			}
			if len(after) != 1 || after[0].Type != "agent.status_changed" {
				t.Fatalf("%s on %s: events %+v, want one agent.status_changed", c.action, c.from, after)
			}
			if d := after[0].Data; num(d["id"]) != id || d["status"] != c.to || num(d["company_id"]) != tn.id {
				t.Fatalf("event data %v, want agent %d %s", d, id, c.to)
			}
			if got := r.json(t)["status"]; got != c.to {
				t.Fatalf("response status %v, want %s", got, c.to)
			}
		})
	}
}

// TestPublishAndArchiveNumbers: publishing takes the lowest available number of the
// country (default ZA); archiving gives it back; no number left is 409 and the agent
// stays a draft.
func TestPublishAndArchiveNumbers(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Numbers")
	za := e.addNumbers("ZA", 2)
	us := e.addNumbers("US", 1)

	a1 := e.newAgent(tn, "First")
	r := e.must(200, "POST", p("/api/agents/%d/publish", a1), tn.userKey, nil).json(t) // no body: ZA
	pn := r["phone_number"].(map[string]any)
	if pn["number"] != za[0] || r["status"] != "active" {
		t.Fatalf("default publish: %v", r)
	}
	a2 := e.newAgent(tn, "Second")
	r = e.must(200, "POST", p("/api/agents/%d/publish", a2), tn.userKey, map[string]any{"country_code": "us"}).json(t)
	if r["phone_number"].(map[string]any)["number"] != us[0] {
		t.Fatalf("US publish: %v", r)
	}
	a3 := e.newAgent(tn, "Third")
	isError(t, "no GB number", e.do("POST", p("/api/agents/%d/publish", a3), tn.userKey, map[string]any{"country_code": "GB"}),
		409, "conflict", "GB")
	isError(t, "bad country", e.do("POST", p("/api/agents/%d/publish", a3), tn.userKey, map[string]any{"country_code": "XX"}),
		422, "validation_error", "country_code")
	isError(t, "country not a string", e.do("POST", p("/api/agents/%d/publish", a3), tn.userKey, map[string]any{"country_code": 27}),
		422, "validation_error", "country_code")
	isError(t, "unknown field", e.do("POST", p("/api/agents/%d/publish", a3), tn.userKey, map[string]any{"number": za[1]}),
		422, "validation_error", "number")
	isError(t, "unknown agent", e.do("POST", "/api/agents/424242/publish", tn.userKey, nil), 404, "not_found", "agent")
	if st := e.must(200, "GET", p("/api/agents/%d", a3), tn.userKey, nil).json(t)["status"]; st != "draft" {
		t.Fatalf("refused publish left %v", st)
	}

	// The company's numbers are the assigned ones.
	mine := e.must(200, "GET", "/api/phone-numbers/", tn.userKey, nil).list(t)
	if len(mine) != 2 {
		t.Fatalf("company numbers: %v", mine)
	}
	for _, m := range mine {
		m := m.(map[string]any)
		if m["status"] != "assigned" || num(m["company_id"]) != tn.id || m["agent_id"] == nil {
			t.Fatalf("company number: %v", m)
		}
	}

	// Archive releases the number back to available, and it can be published again.
	arch := e.must(200, "DELETE", p("/api/agents/%d", a1), tn.userKey, nil).json(t)
	if arch["status"] != "archived" {
		t.Fatalf("archive: %v", arch)
	}
	if _, has := arch["phone_number"]; has {
		t.Fatalf("an archived agent keeps its number: %v", arch)
	}
	if _, has := arch["external_agent_id"]; has {
		t.Fatalf("an archived agent shows the id of its deleted provider agent: %v", arch)
	}
	avail := e.must(200, "GET", "/api/phone-numbers/available?country_code=ZA", tn.userKey, nil).list(t)
	var nums []string
	for _, a := range avail {
		a := a.(map[string]any)
		nums = append(nums, a["number"].(string))
		if a["status"] != "available" || a["company_id"] != nil || a["agent_id"] != nil {
			t.Fatalf("released number: %v", a)
		}
	}
	if !slices.Equal(nums, za) {
		t.Fatalf("available ZA after archive: %v, want %v", nums, za)
	}
	r = e.must(200, "POST", p("/api/agents/%d/publish", a3), tn.userKey, map[string]any{"country_code": "ZA"}).json(t)
	if r["phone_number"].(map[string]any)["number"] != za[0] {
		t.Fatalf("the released number is not reused: %v", r["phone_number"])
	}
	if n := len(e.must(200, "GET", "/api/phone-numbers/", tn.userKey, nil).list(t)); n != 2 {
		t.Fatalf("company numbers after archive and publish: %d", n)
	}
	// Four changes (three publishes, one archive); the refusals recorded nothing.
	var got []string
	for _, ev := range eventsOf(e.outbox(tn.id), "agent.status_changed") {
		got = append(got, p("%d:%v", num(ev.Data["id"]), ev.Data["status"]))
	}
	if want := []string{p("%d:active", a1), p("%d:active", a2), p("%d:archived", a1), p("%d:active", a3)}; !slices.Equal(got, want) {
		t.Fatalf("status events %v, want %v", got, want)
	}
}

// TestProviderSync: publishing creates the agent at the provider, an update of a live
// agent is PATCHed there, archiving DELETEs it; with the provider down publishing is
// 503, the number goes back to the pool and the agent stays a draft.
func TestProviderSync(t *testing.T) {
	rd := redistest.StartRedis(t)
	e := newEnv(t, envOpts{redis: rd})
	down := newEnv(t, envOpts{redis: rd, providerURL: p("http://127.0.0.1:%d", cxcotest.FreePort(t))})
	e.agency = down.agency // one agency key per Redis: the second gateway's replaced the first's
	tn := e.bigTenant("Synced")
	nums := e.addNumbers("ZA", 1)

	// Provider down: 503, nothing taken, no event.
	id := e.newAgent(tn, "Synced Agent")
	r := down.do("POST", p("/api/agents/%d/publish", id), tn.userKey, map[string]any{"country_code": "ZA"})
	isError(t, "publish with the provider down", r, 503, "unavailable", "provider")
	if a := e.must(200, "GET", p("/api/agents/%d", id), tn.userKey, nil).json(t); a["status"] != "draft" || a["phone_number"] != nil || a["external_agent_id"] != nil {
		t.Fatalf("after a failed publish: %v", a)
	}
	if avail := e.must(200, "GET", "/api/phone-numbers/available?country_code=ZA", tn.userKey, nil).list(t); len(avail) != 1 ||
		avail[0].(map[string]any)["number"] != nums[0] {
		t.Fatalf("the number did not go back to the pool: %v", avail)
	}
	if n := len(e.must(200, "GET", "/api/phone-numbers/", tn.userKey, nil).list(t)); n != 0 {
		t.Fatalf("company has %d numbers after a failed publish", n)
	}
	if evs := e.outbox(tn.id); len(evs) != 0 {
		t.Fatalf("failed publish recorded events: %+v", evs)
	}

	// Provider up: the agent exists there.
	a := e.publish(tn, id)
	ext := a["external_agent_id"].(string)
	sa, ok := e.sim.AgentByID(ext)
	if !ok {
		t.Fatal("published agent missing at the provider")
	}
	if sa.Name != "Synced Agent" || sa.Config["agent"].(map[string]any)["first_message"] != "Hello from Synced Agent." {
		t.Fatalf("provider agent: %s %v", sa.Name, sa.Config)
	}

	// An update of the live agent is PATCHed.
	e.must(200, "PUT", p("/api/agents/%d", id), tn.userKey, map[string]any{"personality": "You sell rockets.",
		"opening_line": "Rockets!", "voice_id": 2, "config": map[string]any{"temperature": 0.3}})
	sa, _ = e.sim.AgentByID(ext)
	agentCfg := sa.Config["agent"].(map[string]any)
	prompt := agentCfg["prompt"].(map[string]any)
	if prompt["prompt"] != "You sell rockets." || agentCfg["first_message"] != "Rockets!" || prompt["temperature"] != 0.3 ||
		sa.Config["tts"].(map[string]any)["voice_id"] != "29vD33N1CtxCmqQRPOHJ" {
		t.Fatalf("provider agent after update: %v", sa.Config)
	}
	// Paused agents are live at the provider too.
	e.must(200, "POST", p("/api/agents/%d/pause", id), tn.userKey, nil)
	e.must(200, "PUT", p("/api/agents/%d", id), tn.userKey, map[string]any{"opening_line": "Paused hello."})
	sa, _ = e.sim.AgentByID(ext)
	if sa.Config["agent"].(map[string]any)["first_message"] != "Paused hello." {
		t.Fatalf("update of a paused agent not pushed: %v", sa.Config["agent"])
	}

	// With the provider down an update of a live agent fails and changes nothing.
	before := e.must(200, "GET", p("/api/agents/%d", id), tn.userKey, nil).Body
	isError(t, "update with the provider down", down.do("PUT", p("/api/agents/%d", id), tn.userKey, map[string]any{"name": "Nope"}),
		503, "unavailable", "provider")
	if after := e.must(200, "GET", p("/api/agents/%d", id), tn.userKey, nil).Body; string(after) != string(before) {
		t.Fatalf("an update the provider refused changed the agent:\n%s\n%s", before, after)
	}

	// A draft's update stays local (it does not exist at the provider yet).
	draft := e.newAgent(tn, "Local Draft")
	count := e.sim.AgentCount()
	e.must(200, "PUT", p("/api/agents/%d", draft), tn.userKey, map[string]any{"name": "Still Local"})
	if e.sim.AgentCount() != count {
		t.Fatal("updating a draft created it at the provider")
	}

	// Archive DELETEs it at the provider and frees the number.
	e.must(200, "DELETE", p("/api/agents/%d", id), tn.userKey, nil)
	if _, ok := e.sim.AgentByID(ext); ok {
		t.Fatal("archived agent still exists at the provider")
	}
	if avail := e.must(200, "GET", "/api/phone-numbers/available?country_code=ZA", tn.userKey, nil).list(t); len(avail) != 1 {
		t.Fatalf("archive did not free the number: %v", avail)
	}
}

// TestPublishSameAgentTwice: publishes of one agent racing each other (a double
// click) give one live agent with one number; the others are 409 and leave no
// number taken and nothing behind at the provider.
func TestPublishSameAgentTwice(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Double Click")
	e.addNumbers("ZA", 5)
	id := e.newAgent(tn, "Clicked")
	var wg sync.WaitGroup
	results := make([]resp, 5)
	gate := make(chan struct{})
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			results[i] = e.do("POST", p("/api/agents/%d/publish", id), tn.userKey, nil)
		}()
	}
	close(gate)
	wg.Wait()
	ok := 0
	for _, r := range results {
		switch r.Status {
		case 200:
			ok++
		case 409:
			isError(t, "second publish", r, 409, "conflict", p("agent %d", id))
		default:
			t.Fatalf("publish: %d %s", r.Status, r.Body)
		}
	}
	if ok != 1 {
		t.Fatalf("%d publishes succeeded, want 1", ok)
	}
	if n := len(e.must(200, "GET", "/api/phone-numbers/", tn.userKey, nil).list(t)); n != 1 {
		t.Fatalf("the company holds %d numbers, want 1", n)
	}
	if n := len(e.must(200, "GET", "/api/phone-numbers/available", tn.userKey, nil).list(t)); n != 4 {
		t.Fatalf("%d numbers available, want 4", n)
	}
	if n := e.sim.AgentCount(); n != 1 {
		t.Fatalf("the provider has %d agents, want 1", n)
	}
	if evs := eventsOf(e.outbox(tn.id), "agent.status_changed"); len(evs) != 1 {
		t.Fatalf("%d status events, want 1", len(evs))
	}
}
