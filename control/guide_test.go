package control_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
)

// TestGuideCreateAndPublish walks the reference's first guide: list voices, create a
// draft agent, publish it and get a number.
func TestGuideCreateAndPublish(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.newTenant("Acme Corp")
	nums := e.addNumbers("ZA", 1)

	voices := e.must(200, "GET", "/api/voices/", tn.userKey, nil).list(t)
	rachel := voices[0].(map[string]any)
	for k, want := range map[string]any{"id": 1.0, "provider_id": 1.0, "external_voice_id": "21m00Tcm4TlvDq8ikWAM",
		"name": "Rachel", "gender": "female", "accent": "american", "language": "en", "status": "active"} {
		if rachel[k] != want {
			t.Errorf("voice 1 %s = %v, want %v", k, rachel[k], want)
		}
	}

	a := e.must(201, "POST", "/api/agents/", tn.userKey, map[string]any{
		"name": "Sales Assistant", "personality": "You are a friendly and professional sales assistant for Acme Corp.",
		"opening_line": "Hi there! Thanks for calling Acme Corp. How can I help you today?", "voice_id": 1, "language": "en",
		"config": map[string]any{"temperature": 0.7, "max_call_duration_seconds": 600},
	}).json(t)
	if a["status"] != "draft" || a["voice_enabled"] != true || a["whatsapp_enabled"] != false || num(a["company_id"]) != tn.id {
		t.Fatalf("draft agent: %v", a)
	}
	if v := a["voice"].(map[string]any); v["name"] != "Rachel" || num(v["id"]) != 1 {
		t.Fatalf("voice: %v", v)
	}
	if _, has := a["phone_number"]; has {
		t.Fatalf("a draft agent has no phone_number: %v", a)
	}
	id := num(a["id"])

	p := e.must(200, "POST", fmt.Sprintf("/api/agents/%d/publish", id), tn.userKey, map[string]any{"country_code": "ZA"}).json(t)
	if p["status"] != "active" || p["external_agent_id"] == nil || !strings.HasPrefix(p["external_agent_id"].(string), "agent_") {
		t.Fatalf("published agent: %v", p)
	}
	pn := p["phone_number"].(map[string]any)
	if pn["number"] != nums[0] || pn["whatsapp_status"] != "none" || pn["voice_enabled"] != true {
		t.Fatalf("phone_number: %v", pn)
	}
	cfg := p["config"].(map[string]any)
	if cfg["temperature"] != 0.7 || cfg["max_call_duration_seconds"] != 600.0 {
		t.Fatalf("config: %v", cfg)
	}
	// The agent exists at the provider with the personality, opening line and voice.
	sa, ok := e.sim.AgentByID(p["external_agent_id"].(string))
	if !ok {
		t.Fatal("agent not created at the provider")
	}
	agentCfg := sa.Config["agent"].(map[string]any)
	if agentCfg["first_message"] != "Hi there! Thanks for calling Acme Corp. How can I help you today?" ||
		agentCfg["prompt"].(map[string]any)["prompt"] != "You are a friendly and professional sales assistant for Acme Corp." ||
		sa.Config["tts"].(map[string]any)["voice_id"] != "21m00Tcm4TlvDq8ikWAM" {
		t.Fatalf("provider agent: %v", sa.Config)
	}
}

// TestPublishRace: twenty publishes racing for five numbers give exactly five active
// agents and fifteen clear 409s, and no number is assigned twice.
func TestPublishRace(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.newTenant("Racer")
	e.addNumbers("US", 5)
	e.addNumbers("ZA", 3) // another country's numbers must stay untouched
	ids := make([]int64, 20)
	for i := range ids {
		ids[i] = e.newAgent(tn, fmt.Sprintf("Agent %d", i))
	}
	var wg sync.WaitGroup
	results := make([]resp, len(ids))
	start := make(chan struct{})
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = e.do("POST", fmt.Sprintf("/api/agents/%d/publish", id), tn.userKey, map[string]any{"country_code": "US"})
		}()
	}
	close(start)
	wg.Wait()
	var active, conflicts int
	seen := map[string]bool{}
	for i, r := range results {
		switch r.Status {
		case 200:
			active++
			n := r.json(t)["phone_number"].(map[string]any)["number"].(string)
			if seen[n] {
				t.Fatalf("number %s assigned twice", n)
			}
			seen[n] = true
		case 409:
			conflicts++
			if d := r.json(t)["detail"].(string); !strings.Contains(d, "no phone number is available for country US") {
				t.Fatalf("409 detail: %q", d)
			}
			if st := e.must(200, "GET", fmt.Sprintf("/api/agents/%d", ids[i]), tn.userKey, nil).json(t)["status"]; st != "draft" {
				t.Fatalf("a refused publish left the agent %v", st)
			}
		default:
			t.Fatalf("publish: %d %s", r.Status, r.Body)
		}
	}
	if active != 5 || conflicts != 15 {
		t.Fatalf("active=%d conflicts=%d, want 5 and 15", active, conflicts)
	}
	za := e.must(200, "GET", "/api/phone-numbers/available?country_code=ZA", tn.userKey, nil).list(t)
	us := e.must(200, "GET", "/api/phone-numbers/available?country_code=US", tn.userKey, nil).list(t)
	if len(za) != 3 || len(us) != 0 {
		t.Fatalf("available after the race: ZA %d, US %d", len(za), len(us))
	}
	mine := e.must(200, "GET", "/api/phone-numbers/", tn.userKey, nil).list(t)
	var got []string
	for _, m := range mine {
		got = append(got, m.(map[string]any)["number"].(string))
	}
	sort.Strings(got)
	if len(got) != 5 {
		t.Fatalf("company numbers: %v", got)
	}
	if n := e.sim.AgentCount(); n != 5 {
		t.Fatalf("provider has %d agents, want 5 (failed publishes must not leave any behind)", n)
	}
}

// TestRateLimit: a starter company's 101st request in a minute gets 429 with Retry-After,
// shared by all of the company's keys.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, envOpts{now: midMinute})
	tn := e.newTenant("Starter Co") // 2 requests so far: user creation counts (company key)
	other := e.newTenant("Neighbour")
	used := 1
	for ; used < 100; used++ {
		key := tn.userKey
		if used%2 == 0 {
			key = tn.compKey
		}
		path := "/api/voices/"
		r := e.must(200, "GET", path, key, nil)
		if got := r.Header.Get("X-RateLimit-Limit"); got != "100" {
			t.Fatalf("X-RateLimit-Limit %q", got)
		}
	}
	r := e.do("GET", "/api/voices/", tn.userKey, nil)
	if r.Status != 429 {
		t.Fatalf("101st request: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("Retry-After") == "" || r.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("429 headers: %v", r.Header)
	}
	if m := r.json(t); m["error_type"] != "rate_limited" {
		t.Fatalf("429 body: %s", r.Body)
	}
	// Another company is not affected.
	e.must(200, "GET", "/api/voices/", other.userKey, nil)
	// Raising the plan lifts the limit at once.
	e.must(200, "PUT", fmt.Sprintf("/api/agency/companies/%d", tn.id), e.agency, map[string]any{"plan": "growth"})
	r = e.must(200, "GET", "/api/voices/", tn.userKey, nil)
	if r.Header.Get("X-RateLimit-Limit") != "1000" {
		t.Fatalf("growth limit: %v", r.Header.Get("X-RateLimit-Limit"))
	}
}
