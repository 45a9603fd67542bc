package control_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/store/redistest"
)

// TestAuthHeaders: X-API-Key, Authorization: <key> and Authorization: Bearer <key>
// all work; a missing, unknown or malformed key is 401.
func TestAuthHeaders(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Keyholder")
	h := func(kv ...string) http.Header {
		hd := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			hd.Add(kv[i], kv[i+1])
		}
		return hd
	}
	for _, c := range []struct {
		name    string
		headers http.Header
	}{
		{"X-API-Key", h("X-API-Key", tn.userKey)},
		{"x-api-key lower-case header name", h("x-api-key", tn.userKey)},
		{"Authorization: <key>", h("Authorization", tn.userKey)},
		{"Authorization: Bearer <key>", h("Authorization", "Bearer "+tn.userKey)},
		{"Authorization: bearer <key>", h("Authorization", "bearer "+tn.userKey)},
		{"Authorization: BEARER <key> with spaces", h("Authorization", "  BEARER   "+tn.userKey+"  ")},
		{"X-API-Key wins over a bad Authorization", h("X-API-Key", tn.userKey, "Authorization", "Bearer nonsense")},
	} {
		if r := e.doHeaders("GET", "/api/agents/", c.headers, nil); r.Status != 200 {
			t.Errorf("%s: %d %s", c.name, r.Status, r.Body)
		}
	}
	for _, c := range []struct {
		name    string
		headers http.Header
		detail  string
	}{
		{"no key", h(), "missing API key"},
		{"empty X-API-Key", h("X-API-Key", ""), "missing API key"},
		{"Bearer and nothing", h("Authorization", "Bearer "), "API key"},
		{"unknown user key", h("X-API-Key", "cxco_user_k_0123456789abcdefghijklmnopqrstuv"), "invalid API key"},
		{"unknown company key", h("Authorization", "cxco_comp_k_0123456789abcdefghijklmnopqrstuv"), "invalid API key"},
		{"unknown agency key", h("Authorization", "Bearer cxco_agcy_k_0123456789abcdefghijklmnopqrstuv"), "invalid API key"},
		{"no prefix", h("X-API-Key", strings.TrimPrefix(tn.userKey, "cxco_user_k_")), "invalid API key"},
		{"wrong prefix on a real key", h("X-API-Key", "cxco_comp_k_"+strings.TrimPrefix(tn.userKey, "cxco_user_k_")), "invalid API key"},
		{"Token scheme", h("Authorization", "Token "+tn.userKey), "invalid API key"},
		{"Basic scheme", h("Authorization", "Basic "+tn.userKey), "invalid API key"},
		{"key with a suffix", h("X-API-Key", tn.userKey+"x"), "invalid API key"},
		{"truncated key", h("X-API-Key", tn.userKey[:len(tn.userKey)-1]), "invalid API key"},
		{"garbage", h("X-API-Key", "letmein"), "invalid API key"},
	} {
		for _, path := range []string{"/api/agents/", "/api/webhooks/", "/api/voices/", "/api/agency"} {
			isError(t, c.name+" "+path, e.doHeaders("GET", path, c.headers, nil), 401, "authentication_error", c.detail)
		}
	}
}

// TestAuthKeyTypes: a valid key of the wrong type is 403 on every kind of route.
func TestAuthKeyTypes(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Typed")
	keys := map[string]string{"agency": e.agency, "company": tn.compKey, "user": tn.userKey}
	routes := []struct {
		kind, method, path string
		body               any
	}{
		{"all", "GET", "/api/voices/", nil}, // the agency reads the catalogue it manages
		{"any", "GET", p("/api/companies/%d", tn.id), nil},
		{"any", "GET", "/api/usage/summary", nil},
		{"any", "GET", "/api/contacts/", nil},
		{"company", "GET", "/api/webhooks/", nil},
		{"company", "POST", "/api/users/", map[string]any{"email": "second@typed.example", "name": "T"}},
		{"company", "GET", p("/api/users/%d", tn.userID), nil},
		{"company", "GET", "/api/providers/", nil},
		{"user", "GET", "/api/agents/", nil},
		{"user", "POST", "/api/agents/", agentBody(nil)},
		{"user", "GET", "/api/users/me", nil},
		{"user", "GET", "/api/conversations/", nil},
		{"user", "GET", "/api/phone-numbers/", nil},
		{"agency", "GET", "/api/agency", nil},
		{"agency", "GET", "/api/agency/companies", nil},
		{"agency", "POST", "/api/agency/phone-numbers", map[string]any{"number": "+27210000001", "country_code": "ZA"}},
		{"agency", "POST", "/api/agency/voices", map[string]any{"name": "V", "external_voice_id": "v", "language": "en"}},
	}
	allowed := map[string][]string{"any": {"company", "user"}, "company": {"company"}, "user": {"user"}, "agency": {"agency"}, "all": {"agency", "company", "user"}}
	for _, rt := range routes {
		for kind, key := range keys {
			ok := false
			for _, k := range allowed[rt.kind] {
				ok = ok || k == kind
			}
			r := e.do(rt.method, rt.path, key, rt.body)
			name := kind + " key on " + rt.method + " " + rt.path
			if ok {
				if r.Status >= 400 {
					t.Errorf("%s: %d %s", name, r.Status, r.Body)
				}
				continue
			}
			isError(t, name, r, 403, "permission_denied", map[string]string{"agency": "sent an agency key", "company": "sent a company key", "user": "sent a user key"}[kind])
		}
	}
}

// TestIsolation: a second company sees 404 for every id of the first, on every route
// that takes one, and its lists never show the first company's records.
func TestIsolation(t *testing.T) {
	e := newEnv(t, envOpts{verifyDelay: 0})
	one := e.bigTenant("First Co")
	two := e.bigTenant("Second Co")
	e.addNumbers("ZA", 2)

	agent := e.newAgent(one, "Private Agent")
	pub := e.publish(one, agent)
	pn := num(pub["phone_number"].(map[string]any)["id"])
	draft := e.newAgent(one, "Private Draft")
	conv := e.makeConv(one.id, convSpec{agent: agent, caller: "+27821234567", started: day("2026-03-01", "10:00:00"), answered: true, dur: 60, status: "completed"})
	contact := *conv.ContactID
	hook := num(e.must(201, "POST", "/api/webhooks/", one.compKey, map[string]any{"url": "https://hooks.example.com/one",
		"events": []string{"agent.status_changed"}}).json(t)["id"])
	e.must(201, "POST", "/api/providers/elevenlabs/credentials", one.compKey, map[string]any{"company_id": one.id, "credentials": map[string]any{"api_key": "sk-one"}})

	cases := []struct {
		method, path string
		key          string // "user" or "company" key of company two
		body         any
		what         string
	}{
		{"GET", p("/api/companies/%d", one.id), "company", nil, "company"},
		{"PUT", p("/api/companies/%d", one.id), "company", map[string]any{"name": "Taken"}, "company"},
		{"GET", p("/api/companies/%d/usage", one.id), "user", nil, "company"},
		{"GET", p("/api/users/%d", one.userID), "company", nil, "user"},
		{"PUT", p("/api/users/%d", one.userID), "company", map[string]any{"name": "Taken"}, "user"},
		{"DELETE", p("/api/users/%d", one.userID), "company", nil, "user"},
		{"GET", p("/api/agents/%d", agent), "user", nil, "agent"},
		{"PUT", p("/api/agents/%d", agent), "user", map[string]any{"name": "Taken"}, "agent"},
		{"DELETE", p("/api/agents/%d", agent), "user", nil, "agent"},
		{"POST", p("/api/agents/%d/publish", draft), "user", nil, "agent"},
		{"POST", p("/api/agents/%d/pause", agent), "user", nil, "agent"},
		{"POST", p("/api/agents/%d/resume", agent), "user", nil, "agent"},
		{"GET", p("/api/agents/%d/conversations", agent), "user", nil, "agent"},
		{"GET", p("/api/agents/%d/usage", agent), "user", nil, "agent"},
		{"GET", p("/api/usage/daily?start_date=2026-03-01&end_date=2026-03-02&agent_id=%d", agent), "user", nil, "agent"},
		{"GET", p("/api/conversations/%d", conv.ID), "user", nil, "conversation"},
		{"GET", p("/api/phone-numbers/%d", pn), "user", nil, "phone number"},
		{"POST", p("/api/phone-numbers/%d/enable-whatsapp", pn), "user", nil, "phone number"},
		{"GET", p("/api/phone-numbers/%d/whatsapp-status", pn), "user", nil, "phone number"},
		{"GET", p("/api/webhooks/%d", hook), "company", nil, "webhook"},
		{"PUT", p("/api/webhooks/%d", hook), "company", map[string]any{"status": "disabled"}, "webhook"},
		{"DELETE", p("/api/webhooks/%d", hook), "company", nil, "webhook"},
		{"GET", p("/api/contacts/%d", contact), "user", nil, "contact"},
		{"PUT", p("/api/contacts/%d", contact), "company", map[string]any{"name": "Taken"}, "contact"},
		{"POST", "/api/providers/sip_trunk/credentials", "company", map[string]any{"company_id": one.id, "credentials": map[string]any{"u": "x"}}, "company"},
	}
	for _, c := range cases {
		key := map[string]string{"user": two.userKey, "company": two.compKey}[c.key]
		isError(t, c.method+" "+c.path, e.do(c.method, c.path, key, c.body), 404, "not_found", c.what)
	}

	// Nothing of company one shows in company two's lists.
	for _, path := range []string{"/api/agents/", "/api/conversations/", "/api/contacts/"} {
		if items, _, _ := pageOf(t, e.must(200, "GET", path, two.userKey, nil)); len(items) != 0 {
			t.Errorf("%s of company two: %v", path, items)
		}
	}
	if items, _, _ := pageOf(t, e.must(200, "GET", p("/api/conversations/?agent_id=%d", agent), two.userKey, nil)); len(items) != 0 {
		t.Errorf("company two filters by company one's agent: %v", items)
	}
	if l := e.must(200, "GET", "/api/phone-numbers/", two.userKey, nil).list(t); len(l) != 0 {
		t.Errorf("company two's numbers: %v", l)
	}
	if l := e.must(200, "GET", "/api/webhooks/", two.compKey, nil).list(t); len(l) != 0 {
		t.Errorf("company two's webhooks: %v", l)
	}
	if items, _, _ := pageOf(t, e.must(200, "GET", "/api/users/", two.compKey, nil)); len(items) != 1 {
		t.Errorf("company two's users: %v", items)
	}
	u := e.must(200, "GET", "/api/usage/summary?start_date=2026-03-01&end_date=2026-03-01", two.userKey, nil).json(t)
	if u["voice"].(map[string]any)["total_conversations"] != 0.0 {
		t.Errorf("company two's usage counts company one's calls: %v", u)
	}

	// Company one's records are untouched.
	a := e.must(200, "GET", p("/api/agents/%d", agent), one.userKey, nil).json(t)
	if a["status"] != "active" || a["name"] != "Private Agent" {
		t.Fatalf("company one's agent: %v", a)
	}
	if d := e.must(200, "GET", p("/api/agents/%d", draft), one.userKey, nil).json(t); d["status"] != "draft" {
		t.Fatalf("company one's draft: %v", d)
	}
	e.must(200, "GET", p("/api/users/%d", one.userID), one.compKey, nil)
	e.must(200, "GET", p("/api/webhooks/%d", hook), one.compKey, nil)
	if w := e.must(200, "GET", p("/api/phone-numbers/%d/whatsapp-status", pn), one.userKey, nil).json(t); w["whatsapp_status"] != "none" {
		t.Fatalf("company two started WhatsApp on company one's number: %v", w)
	}
	if c := e.must(200, "GET", p("/api/contacts/%d", contact), one.userKey, nil).json(t); c["name"] != nil {
		t.Fatalf("company two renamed company one's contact: %v", c)
	}
}

// TestErrors: bad JSON, non-object JSON, bodies over 1 MiB, unknown routes, wrong
// methods, non-integer ids and optional trailing slashes, all with the JSON error body.
func TestErrors(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Erring")
	aid := e.newAgent(tn, "Err")

	for _, c := range []struct{ name, body, detail string }{
		{"truncated", `{"name": "x"`, "JSON"},
		{"trailing comma", `{"name": "x",}`, "JSON"},
		{"single quotes", `{'name': 'x'}`, "JSON"},
		{"two objects", `{"name": "x"} {"name": "y"}`, "after the JSON object"},
		{"array", `[{"name": "x"}]`, "JSON object"},
		{"string", `"x"`, "JSON object"},
		{"number", `42`, "JSON object"},
		{"null", `null`, "JSON object"},
		{"true", `true`, "JSON object"},
	} {
		isError(t, "POST agents "+c.name, e.do("POST", "/api/agents/", tn.userKey, c.body), 422, "validation_error", c.detail)
		isError(t, "PUT agent "+c.name, e.do("PUT", p("/api/agents/%d", aid), tn.userKey, c.body), 422, "validation_error", c.detail)
		isError(t, "POST users "+c.name, e.do("POST", "/api/users/", tn.compKey, c.body), 422, "validation_error", c.detail)
		isError(t, "POST companies "+c.name, e.do("POST", "/api/agency/companies", e.agency, c.body), 422, "validation_error", c.detail)
	}

	// 1 MiB of body is fine (whitespace counts); one byte more is 413.
	valid := []byte(`{"name": "Big", "personality": "p", "opening_line": "o", "voice_id": 1}`)
	const mib = 1 << 20
	fits := append(valid[:len(valid):len(valid)], bytes.Repeat([]byte(" "), mib-len(valid))...)
	e.must(201, "POST", "/api/agents/", tn.userKey, fits)
	over := append(fits[:len(fits):len(fits)], ' ')
	isError(t, "body of 1 MiB + 1", e.do("POST", "/api/agents/", tn.userKey, over), 413, "validation_error", "1 MiB")
	huge := append([]byte(`{"name": "`), bytes.Repeat([]byte("x"), 3*mib)...)
	huge = append(huge, `"}`...)
	isError(t, "body of 3 MiB", e.do("PUT", p("/api/agents/%d", aid), tn.userKey, huge), 413, "validation_error", "1 MiB")
	isError(t, "webhook body of 1 MiB + 1", e.do("POST", "/api/webhooks/", tn.compKey, over), 413, "validation_error", "1 MiB")

	// Unknown routes: 404 with the JSON body, with or without a key.
	for _, path := range []string{"/api/nope", "/api/agents/1/clone", "/api/docs/nope.js", "/", "/api/v2/agents", "/favicon.ico"} {
		isError(t, "GET "+path, e.do("GET", path, tn.userKey, nil), 404, "not_found", "no such route")
		isError(t, "GET "+path+" without a key", e.do("GET", path, "", nil), 404, "not_found", "no such route")
	}

	// Wrong methods: 405 with Allow and the JSON body.
	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", "/api/agents/", "GET, POST"},
		{"PATCH", p("/api/agents/%d", aid), "GET, PUT, DELETE"},
		{"GET", p("/api/agents/%d/publish", aid), "POST"},
		{"PUT", "/api/voices/1", "GET"},
		{"POST", "/api/usage/summary", "GET"},
		{"DELETE", "/api/agency", "GET, PUT"},
		{"GET", "/api/agency/phone-numbers/1", "PUT, DELETE"},
		{"PUT", "/api/webhooks/", "GET, POST"},
		{"POST", "/api/openapi.json", "GET"},
	} {
		r := e.do(c.method, c.path, tn.userKey, nil)
		isError(t, c.method+" "+c.path, r, 405, "method_not_allowed", c.method)
		if got := r.Header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}

	// Non-integer path ids: 422 naming the parameter.
	for _, c := range []struct{ method, path, key, param string }{
		{"GET", "/api/agents/ten", tn.userKey, "agent_id"},
		{"GET", "/api/agents/0", tn.userKey, "agent_id"},
		{"GET", "/api/agents/-3", tn.userKey, "agent_id"},
		{"GET", "/api/agents/1.5", tn.userKey, "agent_id"},
		{"GET", "/api/agents/99999999999999999999", tn.userKey, "agent_id"},
		{"POST", "/api/agents/x/publish", tn.userKey, "agent_id"},
		{"POST", "/api/agents/x/pause", tn.userKey, "agent_id"},
		{"POST", "/api/agents/x/resume", tn.userKey, "agent_id"},
		{"DELETE", "/api/agents/x", tn.userKey, "agent_id"},
		{"PUT", "/api/agents/x", tn.userKey, "agent_id"},
		{"GET", "/api/agents/x/conversations", tn.userKey, "agent_id"},
		{"GET", "/api/agents/x/usage", tn.userKey, "agent_id"},
		{"GET", "/api/companies/x", tn.compKey, "company_id"},
		{"PUT", "/api/companies/x", tn.compKey, "company_id"},
		{"GET", "/api/companies/x/usage", tn.compKey, "company_id"},
		{"GET", "/api/users/x1", tn.compKey, "user_id"},
		{"PUT", "/api/users/x1", tn.compKey, "user_id"},
		{"DELETE", "/api/users/x1", tn.compKey, "user_id"},
		{"GET", "/api/voices/x", tn.userKey, "voice_id"},
		{"GET", "/api/phone-numbers/x", tn.userKey, "phone_number_id"},
		{"GET", "/api/conversations/x", tn.userKey, "conversation_id"},
		{"GET", "/api/contacts/x", tn.userKey, "contact_id"},
		{"PUT", "/api/contacts/x", tn.userKey, "contact_id"},
		{"GET", "/api/webhooks/x", tn.compKey, "webhook_id"},
		{"PUT", "/api/webhooks/x", tn.compKey, "webhook_id"},
		{"GET", "/api/agency/companies/x", e.agency, "company_id"},
		{"PUT", "/api/agency/companies/x", e.agency, "company_id"},
		{"POST", "/api/agency/companies/x/rotate-key", e.agency, "company_id"},
		{"DELETE", "/api/agency/phone-numbers/x", e.agency, "phone_number_id"},
		{"PUT", "/api/agency/voices/x", e.agency, "voice_id"},
		{"DELETE", "/api/agency/voices/x", e.agency, "voice_id"},
	} {
		isError(t, c.method+" "+c.path, e.do(c.method, c.path, c.key, nil), 422, "validation_error", c.param)
	}

	// Every collection path works with and without its trailing slash.
	for _, c := range []struct{ method, path, key string }{
		{"GET", "/api/agents", tn.userKey},
		{"GET", "/api/users", tn.compKey},
		{"GET", "/api/voices", tn.userKey},
		{"GET", "/api/phone-numbers", tn.userKey},
		{"GET", "/api/phone-numbers/available", tn.userKey},
		{"GET", "/api/conversations", tn.userKey},
		{"GET", "/api/contacts", tn.userKey},
		{"GET", "/api/webhooks", tn.compKey},
		{"GET", "/api/providers", tn.compKey},
		{"GET", "/api/usage/summary", tn.userKey},
		{"GET", "/api/agency", e.agency},
		{"GET", "/api/agency/companies", e.agency},
		{"GET", "/api/agency/phone-numbers", e.agency},
		{"GET", p("/api/agents/%d/conversations", aid), tn.userKey},
		{"GET", "/api/users/me", tn.userKey},
		{"GET", "/api/openapi.json", ""},
	} {
		a, b := e.do(c.method, c.path, c.key, nil), e.do(c.method, c.path+"/", c.key, nil)
		if a.Status != 200 || b.Status != 200 {
			t.Errorf("%s %s: %d, with a slash: %d %s", c.method, c.path, a.Status, b.Status, b.Body)
		}
	}
	for _, c := range []struct {
		path, key string
		body      any
	}{
		{"/api/agents", tn.userKey, agentBody(nil)},
		{"/api/users", tn.compKey, map[string]any{"email": "slash@example.com", "name": "S"}},
		{"/api/webhooks", tn.compKey, map[string]any{"url": "https://hooks.example.com/s", "events": []string{"agent.status_changed"}}},
		{"/api/agency/companies", e.agency, map[string]any{"name": "Slash Co"}},
		{"/api/agency/phone-numbers", e.agency, map[string]any{"number": "+27219990001", "country_code": "ZA"}},
		{"/api/agency/voices", e.agency, map[string]any{"name": "Slash", "external_voice_id": "s", "language": "en"}},
	} {
		e.must(201, "POST", c.path, c.key, c.body)
		if b, ok := c.body.(map[string]any); ok {
			if _, has := b["email"]; has {
				b["email"] = "slash2@example.com"
			}
			if _, has := b["number"]; has {
				b["number"] = "+27219990002"
			}
		}
		e.must(201, "POST", c.path+"/", c.key, c.body)
	}
}

// TestRateLimitAcrossNodes: a company's limit is shared by its keys on every gateway
// node of one Redis; 429 carries Retry-After and the JSON body.
func TestRateLimitAcrossNodes(t *testing.T) {
	rd := redistest.StartRedis(t)
	a := newEnv(t, envOpts{redis: rd, now: midMinute})
	b := newEnv(t, envOpts{redis: rd, now: midMinute})
	a.agency = b.agency               // one agency key per Redis: the second node's replaced the first's
	tn := a.newTenant("Shared Limit") // starter: 100/min; the user creation was request 1
	nodes := []*env{a, b}
	for i := 1; i < 100; i++ {
		key := tn.userKey
		if i%3 == 0 {
			key = tn.compKey
		}
		r := nodes[i%2].must(200, "GET", "/api/voices/", key, nil)
		if got, want := r.Header.Get("X-RateLimit-Remaining"), p("%d", 100-i-1); got != want {
			t.Fatalf("request %d: X-RateLimit-Remaining %s, want %s", i+1, got, want)
		}
		if r.Header.Get("X-RateLimit-Reset") == "" {
			t.Fatal("no X-RateLimit-Reset")
		}
	}
	for _, n := range nodes {
		r := n.do("GET", "/api/voices/", tn.compKey, nil)
		isError(t, "the 101st request", r, 429, "rate_limited", "rate limit")
		if ra := r.Header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Fatalf("Retry-After %q", ra)
		}
	}
}

// midMinute is a clock stopped in the middle of a minute, so a rate-limit window
// cannot roll over while a test counts requests.
func midMinute() time.Time { return time.Date(2026, 3, 12, 14, 30, 30, 0, time.UTC) }

// TestStoreUnavailable: with Redis down every request is a 503 with the JSON body,
// never a 401 or a 500; when Redis is back the API answers again.
func TestStoreUnavailable(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Outage")
	aid := e.newAgent(tn, "Waiting")
	e.redis.Stop()
	for _, c := range []struct{ method, path, key string }{
		{"POST", p("/api/agents/%d/publish", aid), tn.userKey},
		{"GET", "/api/agency/companies", e.agency},
	} {
		isError(t, c.method+" "+c.path+" with Redis down", e.do(c.method, c.path, c.key, nil), 503, "unavailable", "unavailable")
	}
	e.redis.Restart(t) // an empty Redis: the keys are gone, so they are unknown now
	waitFor(t, 10*time.Second, "the API answers again", func() bool {
		return e.do("GET", "/api/agents/", tn.userKey, nil).Status == 401
	})
}
