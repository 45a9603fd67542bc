package control_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIAsStrictAsTheAPI: what the API refuses, the document declares. For
// every string and integer field of every request body, probe the API with a
// value far too long, an empty string, a negative and a huge number: where the
// API answers 422 for that field, the field's schema must say why (maxLength,
// minLength, enum, pattern or format; minimum or maximum); and where the schema
// declares a bound, the API must enforce it. A fuzzer that reads the document
// then never finds a 422 the document did not announce.
func TestOpenAPIAsStrictAsTheAPI(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Strict")
	e.addNumbers("ZA", 3)
	agent := e.newAgent(tn, "Strict Agent")
	conv := e.makeConv(tn.id, convSpec{agent: agent, caller: "+27821234599", started: day("2026-03-01", "10:00:00"), answered: true, dur: 10, status: "completed"})
	hook := num(e.must(201, "POST", "/api/webhooks/", tn.compKey, map[string]any{"url": "https://hooks.example.com/p", "events": []string{"agent.status_changed"}}).json(t)["id"])
	voice := num(e.must(201, "POST", "/api/agency/voices", e.agency, map[string]any{"name": "Probe", "external_voice_id": "p", "language": "en"}).json(t)["id"])
	pool := num(e.must(201, "POST", "/api/agency/phone-numbers", e.agency, map[string]any{"number": "+27219990099", "country_code": "ZA"}).json(t)["id"])

	var doc map[string]any
	if err := json.Unmarshal(e.must(200, "GET", "/api/openapi.json", "", nil).Body, &doc); err != nil {
		t.Fatal(err)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)

	type target struct {
		method, path, key, schema string
		base                      map[string]any
	}
	targets := []target{
		{"PUT", "/api/agency", e.agency, "AgencyUpdate", nil},
		{"POST", "/api/agency/companies", e.agency, "CompanyCreate", map[string]any{"name": "Probe Co"}},
		{"PUT", p("/api/agency/companies/%d", tn.id), e.agency, "AgencyCompanyUpdate", nil},
		{"POST", "/api/agency/phone-numbers", e.agency, "PoolNumberCreate", map[string]any{"number": "+27219990100", "country_code": "ZA"}},
		{"PUT", p("/api/agency/phone-numbers/%d", pool), e.agency, "PoolNumberUpdate", nil},
		{"POST", "/api/agency/voices", e.agency, "VoiceCreate", map[string]any{"name": "V", "external_voice_id": "v", "language": "en"}},
		{"PUT", p("/api/agency/voices/%d", voice), e.agency, "VoiceUpdate", nil},
		{"PUT", p("/api/companies/%d", tn.id), tn.userKey, "CompanyUpdate", nil},
		{"POST", "/api/users", tn.compKey, "UserCreate", map[string]any{"email": "probe@strict.example", "name": "P"}},
		{"PUT", p("/api/users/%d", tn.userID), tn.compKey, "UserUpdate", nil},
		{"POST", "/api/agents", tn.userKey, "AgentCreate", agentBody(nil)},
		{"PUT", p("/api/agents/%d", agent), tn.userKey, "AgentUpdate", nil},
		{"POST", p("/api/agents/%d/publish", agent), tn.userKey, "Publish", nil},
		{"PUT", p("/api/contacts/%d", *conv.ContactID), tn.userKey, "ContactUpdate", nil},
		{"POST", "/api/webhooks", tn.compKey, "WebhookCreate", map[string]any{"url": "https://hooks.example.com/x", "events": []string{"agent.status_changed"}}},
		{"PUT", p("/api/webhooks/%d", hook), tn.compKey, "WebhookUpdate", nil},
		{"POST", "/api/providers/elevenlabs/credentials", tn.compKey, "CredentialCreate", map[string]any{"company_id": tn.id, "credentials": map[string]any{"api_key": "k"}}},
	}
	refused := func(tg target, field string, v any) bool {
		body := maps.Clone(tg.base)
		if body == nil {
			body = map[string]any{}
		}
		body[field] = v
		r := e.do(tg.method, tg.path, tg.key, body)
		if r.Status != 422 {
			return false
		}
		var eb struct{ Detail string }
		_ = json.Unmarshal(r.Body, &eb)
		return strings.HasPrefix(eb.Detail, field+":") || strings.HasPrefix(eb.Detail, field+" ")
	}
	has := func(s map[string]any, keys ...string) bool {
		for _, k := range keys {
			if _, ok := s[k]; ok {
				return true
			}
		}
		return false
	}
	probed := 0
	for _, tg := range targets {
		sc, _ := schemas[tg.schema].(map[string]any)
		if sc == nil {
			t.Errorf("no schema %s", tg.schema)
			continue
		}
		props, _ := sc["properties"].(map[string]any)
		for _, name := range slices.Sorted(maps.Keys(props)) {
			ps := props[name].(map[string]any)
			where := fmt.Sprintf("%s %s (%s.%s)", tg.method, tg.path, tg.schema, name)
			types := fmt.Sprint(ps["type"])
			switch {
			case strings.Contains(types, "string"):
				probed++
				shaped := has(ps, "enum", "pattern", "format")
				if refused(tg, name, strings.Repeat("a", 100001)) && !shaped && !has(ps, "maxLength") {
					t.Errorf("%s: a 100,001-character value is refused, but no maxLength is declared", where)
				}
				if n, ok := ps["maxLength"].(float64); ok && !shaped && !refused(tg, name, strings.Repeat("a", int(n)+1)) {
					t.Errorf("%s: maxLength %v is declared but %v characters are accepted", where, n, n+1)
				}
				if refused(tg, name, "") && !shaped && !has(ps, "minLength") {
					t.Errorf("%s: an empty string is refused, but no minLength is declared", where)
				}
				if n, ok := ps["minLength"].(float64); ok && n >= 1 && !refused(tg, name, "") {
					t.Errorf("%s: minLength %v is declared but an empty string is accepted", where, n)
				}
				if _, ok := ps["enum"]; ok && !refused(tg, name, "zz-not-a-value") {
					t.Errorf("%s: an enum is declared but another value is accepted", where)
				}
			case strings.Contains(types, "integer") || strings.Contains(types, "number"):
				probed++
				if refused(tg, name, -5) && !has(ps, "minimum", "exclusiveMinimum", "enum") {
					t.Errorf("%s: -5 is refused, but no minimum is declared", where)
				}
				// An id has no upper bound: a big one names nothing, which is the data's answer, not the schema's.
				if !strings.HasSuffix(name, "_id") && refused(tg, name, 1e12) && !has(ps, "maximum", "exclusiveMaximum", "enum") {
					t.Errorf("%s: 10^12 is refused, but no maximum is declared", where)
				}
				if m, ok := ps["minimum"].(float64); ok && !refused(tg, name, m-1) {
					t.Errorf("%s: minimum %v is declared but %v is accepted", where, m, m-1)
				}
			}
		}
	}
	if probed < 40 {
		t.Fatalf("only %d fields probed", probed)
	}
	// Query parameters: limit and dates say what they take.
	for path, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			params, _ := op.(map[string]any)["parameters"].([]any)
			for _, pa := range params {
				pa := pa.(map[string]any)
				s := pa["schema"].(map[string]any)
				switch pa["name"] {
				case "limit":
					if s["minimum"] != 1.0 || s["maximum"] != 100.0 {
						t.Errorf("%s %s: limit schema %v, want minimum 1 and maximum 100", method, path, s)
					}
				case "start_date", "end_date":
					if s["format"] != "date" {
						t.Errorf("%s %s: %s schema %v, want format date", method, path, pa["name"], s)
					}
				}
			}
		}
	}
}
