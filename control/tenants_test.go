package control_test

import (
	"slices"
	"strings"
	"testing"
)

// TestCompanies: GET and PUT /api/companies/{id} with either key of the company.
func TestCompanies(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Acme Corp")
	other := e.bigTenant("Other Corp")

	for _, key := range []string{tn.compKey, tn.userKey} {
		c := e.must(200, "GET", p("/api/companies/%d", tn.id), key, nil).json(t)
		if num(c["id"]) != tn.id || c["name"] != "Acme Corp" || c["status"] != "active" || c["created_at"] == nil || c["updated_at"] == nil {
			t.Fatalf("company: %v", c)
		}
		if _, has := c["settings"].(map[string]any); !has {
			t.Fatalf("company has no settings object: %v", c)
		}
		for _, secret := range []string{"api_key", "key_hash"} {
			if _, has := c[secret]; has {
				t.Fatalf("company shows %s: %v", secret, c)
			}
		}
	}
	e.fails(404, "not_found", "company", "GET", p("/api/companies/%d", other.id), tn.compKey, nil)
	e.fails(404, "not_found", "company", "GET", "/api/companies/99999", tn.compKey, nil)
	e.fails(422, "validation_error", "company_id", "GET", "/api/companies/acme", tn.compKey, nil)

	u := e.must(200, "PUT", p("/api/companies/%d", tn.id), tn.compKey, map[string]any{"name": "Acme Corp International",
		"settings": map[string]any{"default_language": "en", "timezone": "Africa/Johannesburg"}}).json(t)
	if u["name"] != "Acme Corp International" || u["settings"].(map[string]any)["timezone"] != "Africa/Johannesburg" {
		t.Fatalf("updated company: %v", u)
	}
	// Only provided fields change.
	u = e.must(200, "PUT", p("/api/companies/%d", tn.id), tn.userKey, map[string]any{"name": "Acme"}).json(t)
	if u["name"] != "Acme" || u["settings"].(map[string]any)["timezone"] != "Africa/Johannesburg" {
		t.Fatalf("partial update: %v", u)
	}
	if g := e.must(200, "GET", p("/api/companies/%d", tn.id), tn.compKey, nil).json(t); g["name"] != "Acme" {
		t.Fatalf("stored name %v", g["name"])
	}
	for _, c := range []struct {
		name  string
		body  any
		field string
	}{
		{"name empty", map[string]any{"name": ""}, "name"},
		{"name too long", map[string]any{"name": strs(201, "n")}, "name"},
		{"name not a string", map[string]any{"name": 5}, "name"},
		{"settings not an object", map[string]any{"settings": "x"}, "settings"},
		{"a company cannot suspend itself", map[string]any{"status": "suspended"}, "status"},
		{"nor change its plan", map[string]any{"plan": "enterprise"}, "plan"},
	} {
		isError(t, c.name, e.do("PUT", p("/api/companies/%d", tn.id), tn.compKey, c.body), 422, "validation_error", c.field)
	}
	e.fails(404, "not_found", "company", "PUT", p("/api/companies/%d", other.id), tn.compKey, map[string]any{"name": "Mine now"})
	if g := e.must(200, "GET", p("/api/companies/%d", other.id), other.compKey, nil).json(t); g["name"] != "Other Corp" {
		t.Fatalf("another company's PUT changed it: %v", g)
	}
}

// TestUsers: create (key shown once, 409 on a duplicate email in any case), me, get,
// put, delete (the key stops working at once).
func TestUsers(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Userland")
	other := e.bigTenant("Elsewhere")

	r := e.must(201, "POST", "/api/users/", tn.compKey, map[string]any{"email": "jane@acme.com", "name": "Jane Smith", "role": "admin"}).json(t)
	key, _ := r["api_key"].(string)
	if !strings.HasPrefix(key, "cxco_user_k_") || len(key) < len("cxco_user_k_")+22 {
		t.Fatalf("user key %q", key)
	}
	id := num(r["id"])
	for k, want := range map[string]any{"email": "jane@acme.com", "name": "Jane Smith", "role": "admin", "status": "active", "company_id": float64(tn.id)} {
		if r[k] != want {
			t.Errorf("created user %s = %v, want %v", k, r[k], want)
		}
	}
	if _, has := r["key_hash"]; has {
		t.Fatalf("user creation shows the key hash: %v", r)
	}
	// Default role.
	m := e.must(201, "POST", "/api/users", tn.compKey, map[string]any{"email": "max@acme.com", "name": "Max"}).json(t)
	if m["role"] != "member" {
		t.Fatalf("default role %v", m["role"])
	}

	// The key is never shown again.
	for _, path := range []string{p("/api/users/%d", id), "/api/users/"} {
		if body := string(e.must(200, "GET", path, tn.compKey, nil).Body); strings.Contains(body, key) || strings.Contains(body, "api_key") || strings.Contains(body, "key_hash") {
			t.Fatalf("GET %s shows the key: %s", path, body)
		}
	}
	me := e.must(200, "GET", "/api/users/me", key, nil).json(t)
	if num(me["id"]) != id || me["email"] != "jane@acme.com" || me["api_key"] != nil {
		t.Fatalf("me: %v", me)
	}
	if me2 := e.must(200, "GET", "/api/users/me/", key, nil).json(t); num(me2["id"]) != id {
		t.Fatalf("me/: %v", me2)
	}
	e.fails(403, "permission_denied", "user key", "GET", "/api/users/me", tn.compKey, nil)

	for _, c := range []struct {
		name   string
		body   any
		status int
		field  string
	}{
		{"duplicate email", map[string]any{"email": "jane@acme.com", "name": "Jane Again"}, 409, "jane@acme.com"},
		{"duplicate email in another case", map[string]any{"email": "Jane@ACME.com", "name": "Jane Again"}, 409, "already exists"},
		{"email missing", map[string]any{"name": "Nobody"}, 422, "email"},
		{"email invalid", map[string]any{"email": "not-an-email", "name": "Nobody"}, 422, "email"},
		{"email without a domain dot", map[string]any{"email": "a@localhost", "name": "Nobody"}, 422, "email"},
		{"email with a display name", map[string]any{"email": "Jane <j@acme.com>", "name": "Nobody"}, 422, "email"},
		{"email not a string", map[string]any{"email": 42, "name": "Nobody"}, 422, "email"},
		{"name missing", map[string]any{"email": "n@acme.com"}, 422, "name"},
		{"name too long", map[string]any{"email": "n@acme.com", "name": strs(201, "n")}, 422, "name"},
		{"role unknown", map[string]any{"email": "n@acme.com", "name": "N", "role": "god"}, 422, "role"},
		{"unknown field", map[string]any{"email": "n@acme.com", "name": "N", "api_key": "mine"}, 422, "api_key"},
	} {
		typ := map[int]string{409: "conflict", 422: "validation_error"}[c.status]
		isError(t, c.name, e.do("POST", "/api/users/", tn.compKey, c.body), c.status, typ, c.field)
	}
	// The same email in another company is fine.
	e.must(201, "POST", "/api/users/", other.compKey, map[string]any{"email": "jane@acme.com", "name": "Other Jane"})

	g := e.must(200, "GET", p("/api/users/%d", id), tn.compKey, nil).json(t)
	if g["email"] != "jane@acme.com" || g["name"] != "Jane Smith" {
		t.Fatalf("get user: %v", g)
	}
	e.fails(404, "not_found", "user", "GET", "/api/users/999999", tn.compKey, nil)
	e.fails(422, "validation_error", "user_id", "GET", "/api/users/jane", tn.compKey, nil)
	e.fails(403, "permission_denied", "company key", "GET", p("/api/users/%d", id), key, nil)

	u := e.must(200, "PUT", p("/api/users/%d", id), tn.compKey, map[string]any{"name": "Jane Smith-Jones", "role": "owner"}).json(t)
	if u["name"] != "Jane Smith-Jones" || u["role"] != "owner" || u["email"] != "jane@acme.com" {
		t.Fatalf("updated user: %v", u)
	}
	u = e.must(200, "PUT", p("/api/users/%d", id), tn.compKey, map[string]any{"role": "viewer"}).json(t)
	if u["name"] != "Jane Smith-Jones" || u["role"] != "viewer" {
		t.Fatalf("partial update: %v", u)
	}
	for _, c := range []struct {
		name  string
		body  any
		field string
	}{
		{"role unknown", map[string]any{"role": "root"}, "role"},
		{"name empty", map[string]any{"name": ""}, "name"},
		{"email cannot change", map[string]any{"email": "x@acme.com"}, "email"},
		{"bad JSON", "{", "JSON"},
	} {
		isError(t, c.name, e.do("PUT", p("/api/users/%d", id), tn.compKey, c.body), 422, "validation_error", c.field)
	}
	e.fails(404, "not_found", "user", "PUT", "/api/users/999999", tn.compKey, map[string]any{"name": "x"})

	// Delete: 204, the key is refused at once, the user is gone, the email is free again.
	e.must(200, "GET", "/api/agents/", key, nil)
	e.must(204, "DELETE", p("/api/users/%d", id), tn.compKey, nil)
	e.fails(401, "authentication_error", "invalid API key", "GET", "/api/agents/", key, nil)
	e.fails(401, "authentication_error", "invalid API key", "GET", "/api/users/me", key, nil)
	e.fails(404, "not_found", "user", "GET", p("/api/users/%d", id), tn.compKey, nil)
	e.fails(404, "not_found", "user", "DELETE", p("/api/users/%d", id), tn.compKey, nil)
	again := e.must(201, "POST", "/api/users/", tn.compKey, map[string]any{"email": "JANE@acme.com", "name": "Jane Returns"}).json(t)
	if again["api_key"] == key || num(again["id"]) == id {
		t.Fatalf("re-created user reuses the old id or key: %v", again)
	}
	list := e.walk("/api/users/", tn.compKey, 2)
	if slices.Contains(list, id) || len(list) != 3 {
		t.Fatalf("users after delete: %v", list)
	}
}

// TestAgencyAPI: the agency profile, companies (create, list, get, put incl.
// suspension, rotate-key), the number pool and the voice catalogue.
func TestAgencyAPI(t *testing.T) {
	e := newEnv(t, envOpts{})

	// Profile.
	a := e.must(200, "GET", "/api/agency", e.agency, nil).json(t)
	if a["name"] == nil || a["settings"] == nil {
		t.Fatalf("agency: %v", a)
	}
	if _, has := a["key_hash"]; has {
		t.Fatalf("agency shows its key hash: %v", a)
	}
	a = e.must(200, "PUT", "/api/agency/", e.agency, map[string]any{"name": "Telco Partners", "settings": map[string]any{"support_email": "ops@telco.example"}}).json(t)
	if a["name"] != "Telco Partners" || a["settings"].(map[string]any)["support_email"] != "ops@telco.example" {
		t.Fatalf("updated agency: %v", a)
	}
	if a = e.must(200, "GET", "/api/agency", e.agency, nil).json(t); a["name"] != "Telco Partners" {
		t.Fatalf("stored agency: %v", a)
	}
	isError(t, "agency name empty", e.do("PUT", "/api/agency", e.agency, map[string]any{"name": ""}), 422, "validation_error", "name")
	isError(t, "agency unknown field", e.do("PUT", "/api/agency", e.agency, map[string]any{"plan": "x"}), 422, "validation_error", "plan")

	// Companies.
	c := e.must(201, "POST", "/api/agency/companies", e.agency, map[string]any{"name": "Starter Co"}).json(t)
	if c["plan"] != "starter" || num(c["rate_limit_per_minute"]) != 100 || c["status"] != "active" || !strings.HasPrefix(c["api_key"].(string), "cxco_comp_k_") {
		t.Fatalf("new company: %v", c)
	}
	starter, starterKey := num(c["id"]), c["api_key"].(string)
	g := e.must(201, "POST", "/api/agency/companies/", e.agency, map[string]any{"name": "Growth Co", "plan": "growth",
		"settings": map[string]any{"default_language": "de"}}).json(t)
	if g["plan"] != "growth" || num(g["rate_limit_per_minute"]) != 1000 || g["settings"].(map[string]any)["default_language"] != "de" {
		t.Fatalf("growth company: %v", g)
	}
	ent := e.must(201, "POST", "/api/agency/companies", e.agency, map[string]any{"name": "Big Co", "plan": "enterprise", "rate_limit_per_minute": 3}).json(t)
	if num(ent["rate_limit_per_minute"]) != 3 {
		t.Fatalf("enterprise company: %v", ent)
	}
	entKey := ent["api_key"].(string)
	for i := 0; i < 3; i++ {
		if r := e.must(200, "GET", "/api/voices/", entKey, nil); r.Header.Get("X-RateLimit-Limit") != "3" {
			t.Fatalf("enterprise X-RateLimit-Limit %q", r.Header.Get("X-RateLimit-Limit"))
		}
	}
	isError(t, "enterprise's own limit", e.do("GET", "/api/voices/", entKey, nil), 429, "rate_limited", "rate limit")
	for _, cs := range []struct {
		name  string
		body  any
		field string
	}{
		{"name missing", map[string]any{"plan": "growth"}, "name"},
		{"name too long", map[string]any{"name": strs(201, "c")}, "name"},
		{"plan unknown", map[string]any{"name": "X", "plan": "platinum"}, "plan"},
		{"rate limit 0", map[string]any{"name": "X", "plan": "enterprise", "rate_limit_per_minute": 0}, "rate_limit_per_minute"},
		{"rate limit not an integer", map[string]any{"name": "X", "rate_limit_per_minute": "lots"}, "rate_limit_per_minute"},
		{"settings not an object", map[string]any{"name": "X", "settings": []int{}}, "settings"},
		{"unknown field", map[string]any{"name": "X", "api_key": "cxco_comp_k_mine"}, "api_key"},
	} {
		isError(t, cs.name, e.do("POST", "/api/agency/companies", e.agency, cs.body), 422, "validation_error", cs.field)
	}

	// List, paged, newest first.
	want := []int64{num(ent["id"]), num(g["id"]), starter}
	if got := e.walk("/api/agency/companies", e.agency, 2); !slices.Equal(got, want) {
		t.Fatalf("companies: %v, want %v", got, want)
	}
	isError(t, "companies limit 101", e.do("GET", "/api/agency/companies?limit=101", e.agency, nil), 422, "validation_error", "limit")
	isError(t, "companies bad cursor", e.do("GET", "/api/agency/companies?cursor=nope", e.agency, nil), 422, "validation_error", "cursor")
	body := string(e.must(200, "GET", "/api/agency/companies", e.agency, nil).Body)
	if strings.Contains(body, "api_key") || strings.Contains(body, "key_hash") || strings.Contains(body, starterKey) {
		t.Fatalf("company list shows keys: %s", body)
	}

	got := e.must(200, "GET", p("/api/agency/companies/%d", starter), e.agency, nil).json(t)
	if got["name"] != "Starter Co" || got["api_key"] != nil {
		t.Fatalf("agency get company: %v", got)
	}
	e.fails(404, "not_found", "company", "GET", "/api/agency/companies/424242", e.agency, nil)
	e.fails(422, "validation_error", "company_id", "GET", "/api/agency/companies/x", e.agency, nil)

	// Suspension: the company's keys (company and user) get 403; back to active works.
	u := e.must(201, "POST", "/api/users/", starterKey, map[string]any{"email": "u@starter.example", "name": "U"}).json(t)
	userKey := u["api_key"].(string)
	s := e.must(200, "PUT", p("/api/agency/companies/%d", starter), e.agency, map[string]any{"status": "suspended"}).json(t)
	if s["status"] != "suspended" {
		t.Fatalf("suspend: %v", s)
	}
	e.fails(403, "permission_denied", "suspended", "GET", p("/api/companies/%d", starter), starterKey, nil)
	e.fails(403, "permission_denied", "suspended", "GET", "/api/agents/", userKey, nil)
	e.fails(403, "permission_denied", "suspended", "POST", "/api/users/", starterKey, map[string]any{"email": "v@starter.example", "name": "V"})
	e.must(200, "GET", p("/api/agency/companies/%d", starter), e.agency, nil) // the agency still sees it
	e.must(200, "PUT", p("/api/agency/companies/%d", starter), e.agency, map[string]any{"status": "active"})
	e.must(200, "GET", p("/api/companies/%d", starter), starterKey, nil)
	e.must(200, "GET", "/api/agents/", userKey, nil)

	up := e.must(200, "PUT", p("/api/agency/companies/%d", starter), e.agency, map[string]any{"name": "Starter Renamed", "plan": "enterprise",
		"rate_limit_per_minute": 5000}).json(t)
	if up["name"] != "Starter Renamed" || up["plan"] != "enterprise" || num(up["rate_limit_per_minute"]) != 5000 {
		t.Fatalf("agency put: %v", up)
	}
	if r := e.must(200, "GET", "/api/agents/", userKey, nil); r.Header.Get("X-RateLimit-Limit") != "5000" {
		t.Fatalf("new limit not applied: %q", r.Header.Get("X-RateLimit-Limit"))
	}
	for _, cs := range []struct {
		name  string
		body  any
		field string
	}{
		{"status unknown", map[string]any{"status": "deleted"}, "status"},
		{"plan unknown", map[string]any{"plan": "free"}, "plan"},
		{"name empty", map[string]any{"name": ""}, "name"},
		{"rate limit negative", map[string]any{"rate_limit_per_minute": -5}, "rate_limit_per_minute"},
		{"unknown field", map[string]any{"id": 7}, "id"},
	} {
		isError(t, cs.name, e.do("PUT", p("/api/agency/companies/%d", starter), e.agency, cs.body), 422, "validation_error", cs.field)
	}
	e.fails(404, "not_found", "company", "PUT", "/api/agency/companies/424242", e.agency, map[string]any{"name": "Ghost"})

	// Rotate: the old key is refused at once, the new one works, user keys are untouched.
	rot := e.must(200, "POST", p("/api/agency/companies/%d/rotate-key", starter), e.agency, nil).json(t)
	newKey, _ := rot["api_key"].(string)
	if !strings.HasPrefix(newKey, "cxco_comp_k_") || newKey == starterKey {
		t.Fatalf("rotated key %q", newKey)
	}
	e.fails(401, "authentication_error", "invalid API key", "GET", p("/api/companies/%d", starter), starterKey, nil)
	e.must(200, "GET", p("/api/companies/%d", starter), newKey, nil)
	e.must(200, "GET", "/api/users/me", userKey, nil)
	e.fails(404, "not_found", "company", "POST", "/api/agency/companies/424242/rotate-key", e.agency, nil)
}

// TestAgencyNumberPool: add (201, 409 duplicate, 422 not E.164 or bad country), list
// with filters, echo lines, delete (409 while assigned).
func TestAgencyNumberPool(t *testing.T) {
	e := newEnv(t, envOpts{})
	add := func(body map[string]any) map[string]any {
		return e.must(201, "POST", "/api/agency/phone-numbers", e.agency, body).json(t)
	}
	za1 := add(map[string]any{"number": "+27211234567", "country_code": "ZA", "provider_slug": "sip_trunk"})
	if za1["number"] != "+27211234567" || za1["status"] != "available" || za1["country_code"] != "ZA" || za1["provider_slug"] != "sip_trunk" ||
		za1["company_id"] != nil || za1["agent_id"] != nil || za1["whatsapp_status"] != "none" {
		t.Fatalf("added number: %v", za1)
	}
	za2 := add(map[string]any{"number": "+27 21 765-4321", "country_code": "za"}) // formatting is tolerated
	if za2["number"] != "+27217654321" || za2["country_code"] != "ZA" || za2["provider_slug"] != "sip_trunk" {
		t.Fatalf("normalised number: %v", za2)
	}
	us := add(map[string]any{"number": "+14155550100", "country_code": "US"})

	for _, c := range []struct {
		name   string
		body   any
		status int
		field  string
	}{
		{"duplicate", map[string]any{"number": "+27211234567", "country_code": "ZA"}, 409, "+27211234567"},
		{"duplicate written differently", map[string]any{"number": "+27 (21) 123 4567", "country_code": "ZA"}, 409, "already"},
		{"no plus", map[string]any{"number": "27211234567", "country_code": "ZA"}, 422, "number"},
		{"national format", map[string]any{"number": "021 123 4567", "country_code": "ZA"}, 422, "number"},
		{"leading zero country code", map[string]any{"number": "+0211234567", "country_code": "ZA"}, 422, "number"},
		{"letters", map[string]any{"number": "+2721CALLNOW", "country_code": "ZA"}, 422, "number"},
		{"too long", map[string]any{"number": "+1234567890123456", "country_code": "ZA"}, 422, "number"},
		{"number missing", map[string]any{"country_code": "ZA"}, 422, "number"},
		{"number not a string", map[string]any{"number": 27211234567, "country_code": "ZA"}, 422, "number"},
		{"country unknown", map[string]any{"number": "+27211110000", "country_code": "XX"}, 422, "country_code"},
		{"country alpha-3", map[string]any{"number": "+27211110000", "country_code": "ZAF"}, 422, "country_code"},
		{"country missing", map[string]any{"number": "+27211110000"}, 422, "country_code"},
		// A +1 number filed in the ZA pool would be handed to ZA agents (issue 14).
		{"country of another prefix", map[string]any{"number": "+14155550123", "country_code": "ZA"}, 422, "+27"},
		{"provider not a trunk", map[string]any{"number": "+27211110000", "country_code": "ZA", "provider_slug": "elevenlabs"}, 422, "provider_slug"},
		{"unknown field", map[string]any{"number": "+27211110000", "country_code": "ZA", "status": "assigned"}, 422, "status"},
	} {
		typ := map[int]string{409: "conflict", 422: "validation_error"}[c.status]
		isError(t, c.name, e.do("POST", "/api/agency/phone-numbers", e.agency, c.body), c.status, typ, c.field)
	}

	// Assign one by publishing.
	tn := e.bigTenant("Pool User")
	agent := e.newAgent(tn, "Pool Agent")
	e.publish(tn, agent) // takes za1, the lowest ZA id

	list := func(q string) []int64 { return e.walk("/api/agency/phone-numbers"+q, e.agency, 2) }
	id1, id2, id3 := num(za1["id"]), num(za2["id"]), num(us["id"])
	for _, c := range []struct {
		q    string
		want []int64
	}{
		{"", []int64{id3, id2, id1}},
		{"?status=assigned", []int64{id1}},
		{"?status=available", []int64{id3, id2}},
		{"?country_code=ZA", []int64{id2, id1}},
		{"?country_code=us", []int64{id3}},
		{"?country_code=ZA&status=available", []int64{id2}},
		{"?country_code=GB", nil},
	} {
		if got := list(c.q); !slices.Equal(got, c.want) {
			t.Errorf("pool%s: %v, want %v", c.q, got, c.want)
		}
	}
	items, _, _ := pageOf(t, e.must(200, "GET", "/api/agency/phone-numbers?status=assigned", e.agency, nil))
	if a := items[0].(map[string]any); num(a["company_id"]) != tn.id || num(a["agent_id"]) != agent {
		t.Fatalf("assigned number: %v", a)
	}
	isError(t, "pool bad status", e.do("GET", "/api/agency/phone-numbers?status=free", e.agency, nil), 422, "validation_error", "status")
	isError(t, "pool bad country", e.do("GET", "/api/agency/phone-numbers?country_code=XX", e.agency, nil), 422, "validation_error", "country_code")

	// Echo lines leave the allocatable pool and come back.
	echo := e.must(200, "PUT", p("/api/agency/phone-numbers/%d", id2), e.agency, map[string]any{"echo_line": true}).json(t)
	if echo["status"] != "echo" {
		t.Fatalf("echo line: %v", echo)
	}
	if av := e.must(200, "GET", "/api/phone-numbers/available?country_code=ZA", tn.userKey, nil).list(t); len(av) != 0 {
		t.Fatalf("an echo line is available: %v", av)
	}
	if got := list("?status=echo"); !slices.Equal(got, []int64{id2}) {
		t.Fatalf("status=echo: %v", got)
	}
	isError(t, "publish with only an echo line", e.do("POST", p("/api/agents/%d/publish", e.newAgent(tn, "Echo")), tn.userKey, nil), 409, "conflict", "ZA")
	back := e.must(200, "PUT", p("/api/agency/phone-numbers/%d", id2), e.agency, map[string]any{"echo_line": false}).json(t)
	if back["status"] != "available" {
		t.Fatalf("echo line back: %v", back)
	}
	e.fails(409, "conflict", "assigned", "PUT", p("/api/agency/phone-numbers/%d", id1), e.agency, map[string]any{"echo_line": true})
	e.fails(404, "not_found", "phone number", "PUT", "/api/agency/phone-numbers/424242", e.agency, map[string]any{"echo_line": true})
	e.fails(422, "validation_error", "echo_line", "PUT", p("/api/agency/phone-numbers/%d", id2), e.agency, map[string]any{"echo_line": "yes"})
	e.fails(422, "validation_error", "phone_number_id", "PUT", "/api/agency/phone-numbers/abc", e.agency, map[string]any{"echo_line": true})

	// Delete: 409 while assigned, 204 otherwise, then 404; the number can be added again.
	e.fails(409, "conflict", "assigned", "DELETE", p("/api/agency/phone-numbers/%d", id1), e.agency, nil)
	e.must(204, "DELETE", p("/api/agency/phone-numbers/%d", id3), e.agency, nil)
	e.fails(404, "not_found", "phone number", "DELETE", p("/api/agency/phone-numbers/%d", id3), e.agency, nil)
	if got := list(""); !slices.Equal(got, []int64{id2, id1}) {
		t.Fatalf("pool after delete: %v", got)
	}
	add(map[string]any{"number": "+14155550100", "country_code": "US"})
	e.must(200, "DELETE", p("/api/agents/%d", agent), tn.userKey, nil)
	e.must(204, "DELETE", p("/api/agency/phone-numbers/%d", id1), e.agency, nil)
}

// TestAgencyVoices: the agency manages the catalogue; a retired voice leaves it but
// an agent that uses it keeps rendering with it.
func TestAgencyVoices(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Voice Fans")

	v := e.must(201, "POST", "/api/agency/voices", e.agency, map[string]any{"name": "Thandi", "external_voice_id": "zaVoice123",
		"language": "en", "gender": "female", "accent": "south african", "preview_url": "https://cdn.example.com/thandi.mp3",
		"tags": map[string]any{"tone": "warm"}}).json(t)
	vid := num(v["id"])
	if vid <= 6 || v["status"] != "active" || num(v["provider_id"]) != 1 || v["accent"] != "south african" {
		t.Fatalf("new voice: %v", v)
	}
	if l := e.must(200, "GET", "/api/voices/?accent=south%20african", tn.userKey, nil).list(t); len(l) != 1 || num(l[0].(map[string]any)["id"]) != vid {
		t.Fatalf("new voice not in the catalogue: %v", l)
	}
	for _, c := range []struct {
		name  string
		body  any
		field string
	}{
		{"name missing", map[string]any{"external_voice_id": "x", "language": "en"}, "name"},
		{"external id missing", map[string]any{"name": "X", "language": "en"}, "external_voice_id"},
		{"language missing", map[string]any{"name": "X", "external_voice_id": "x"}, "language"},
		{"language unknown", map[string]any{"name": "X", "external_voice_id": "x", "language": "elvish"}, "language"},
		{"tags not an object", map[string]any{"name": "X", "external_voice_id": "x", "language": "en", "tags": "warm"}, "tags"},
		{"status unknown", map[string]any{"name": "X", "external_voice_id": "x", "language": "en", "status": "retired"}, "status"},
		{"unknown field", map[string]any{"name": "X", "external_voice_id": "x", "language": "en", "pitch": 3}, "pitch"},
	} {
		isError(t, c.name, e.do("POST", "/api/agency/voices", e.agency, c.body), 422, "validation_error", c.field)
	}

	// An inactive voice is in the catalogue, marked so, and cannot be chosen.
	in := e.must(201, "POST", "/api/agency/voices", e.agency, map[string]any{"name": "Sleepy", "external_voice_id": "zzz",
		"language": "en", "status": "inactive"}).json(t)
	if in["status"] != "inactive" {
		t.Fatalf("inactive voice: %v", in)
	}
	isError(t, "inactive voice", e.do("POST", "/api/agents/", tn.userKey, agentBody(map[string]any{"voice_id": num(in["id"])})),
		422, "validation_error", "voice_id: voice "+p("%d", num(in["id"]))+" is inactive")
	e.must(200, "PUT", p("/api/agency/voices/%d", num(in["id"])), e.agency, map[string]any{"status": "active"})
	e.must(201, "POST", "/api/agents/", tn.userKey, agentBody(map[string]any{"voice_id": num(in["id"])}))

	u := e.must(200, "PUT", p("/api/agency/voices/%d", vid), e.agency, map[string]any{"name": "Thandi ZA", "accent": "zulu"}).json(t)
	if u["name"] != "Thandi ZA" || u["accent"] != "zulu" || u["gender"] != "female" || u["external_voice_id"] != "zaVoice123" {
		t.Fatalf("updated voice: %v", u)
	}
	e.fails(404, "not_found", "voice", "PUT", "/api/agency/voices/424242", e.agency, map[string]any{"name": "Ghost"})
	e.fails(422, "validation_error", "language", "PUT", p("/api/agency/voices/%d", vid), e.agency, map[string]any{"language": "elvish"})
	// A refused update changes nothing, not even the fields read before the bad one.
	e.fails(422, "validation_error", "language", "PUT", p("/api/agency/voices/%d", vid), e.agency,
		map[string]any{"name": "Half Done", "language": "elvish"})
	if got := e.must(200, "GET", p("/api/voices/%d", vid), tn.userKey, nil).json(t); got["name"] != "Thandi ZA" {
		t.Fatalf("a refused voice update changed the voice: %v", got)
	}

	agent := e.must(201, "POST", "/api/agents/", tn.userKey, agentBody(map[string]any{"voice_id": vid})).json(t)
	aid := num(agent["id"])
	e.addNumbers("ZA", 1)

	e.must(204, "DELETE", p("/api/agency/voices/%d", vid), e.agency, nil)
	for _, l := range [][]any{
		e.must(200, "GET", "/api/voices/", tn.userKey, nil).list(t),
		e.must(200, "GET", "/api/voices/?language=en", tn.compKey, nil).list(t),
	} {
		if slices.Contains(ids(l), vid) {
			t.Fatalf("a retired voice is still listed: %v", ids(l))
		}
	}
	e.fails(404, "not_found", "voice", "GET", p("/api/voices/%d", vid), tn.userKey, nil)
	e.fails(404, "not_found", "voice", "DELETE", p("/api/agency/voices/%d", vid), e.agency, nil)
	e.fails(404, "not_found", "voice", "PUT", p("/api/agency/voices/%d", vid), e.agency, map[string]any{"name": "Back"})
	e.fails(422, "validation_error", "voice_id", "POST", "/api/agents/", tn.userKey, agentBody(map[string]any{"voice_id": vid}))

	// The agent keeps its voice: it renders, updates and publishes with it.
	a := e.must(200, "GET", p("/api/agents/%d", aid), tn.userKey, nil).json(t)
	if v := a["voice"].(map[string]any); num(v["id"]) != vid || v["name"] != "Thandi ZA" {
		t.Fatalf("agent's retired voice: %v", v)
	}
	e.must(200, "PUT", p("/api/agents/%d", aid), tn.userKey, map[string]any{"name": "Still Thandi", "voice_id": vid})
	pub := e.publish(tn, aid)
	if v := pub["voice"].(map[string]any); v["name"] != "Thandi ZA" {
		t.Fatalf("published agent's voice: %v", v)
	}
	sa, _ := e.sim.AgentByID(pub["external_agent_id"].(string))
	if sa.Config["tts"].(map[string]any)["voice_id"] != "zaVoice123" {
		t.Fatalf("provider voice: %v", sa.Config["tts"])
	}
	l, _, _ := pageOf(t, e.must(200, "GET", p("/api/agents/?status=active"), tn.userKey, nil))
	if len(l) != 1 || l[0].(map[string]any)["voice"].(map[string]any)["name"] != "Thandi ZA" {
		t.Fatalf("agent list voice: %v", l)
	}
}
