package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/store/redistest"
)

// gwClient is a small client for a running gateway.
type gwClient struct {
	t    *testing.T
	base string
}

func (a gwClient) do(method, path, key string, body any) (int, map[string]any) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]any
	if len(bytes.TrimSpace(raw)) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &m); err != nil {
			a.t.Fatalf("%s %s: not JSON: %s", method, path, raw)
		}
	}
	if len(raw) > 0 && raw[0] == '[' {
		var l []any
		_ = json.Unmarshal(raw, &l)
		m = map[string]any{"list": l}
	}
	return res.StatusCode, m
}

func (a gwClient) must(want int, method, path, key string, body any) map[string]any {
	a.t.Helper()
	code, m := a.do(method, path, key, body)
	if code != want {
		a.t.Fatalf("%s %s: %d, want %d: %v", method, path, code, want, m)
	}
	return m
}

func jsonID(m map[string]any) int64 { f, _ := m["id"].(float64); return int64(f) }

var bannerKeyRE = regexp.MustCompile(`Agency key: (cxco_agcy_k_[A-Za-z0-9]+)`)

// TestServeEmbeddedGuide: `cxco serve` with nothing but Go (embedded store, built-in
// simulator) starts, prints its agency key, and serves the reference's three-call
// guide with the keys it hands out.
func TestServeEmbeddedGuide(t *testing.T) {
	bin := cxcotest.Binary(t)
	httpPort, sipPort := cxcotest.FreePort(t), cxcotest.FreeUDPPort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	start := time.Now()
	proc := cxcotest.Start(t, bin, nil, "serve", "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--sip", fmt.Sprintf("127.0.0.1:%d", sipPort), "--public-ip", "127.0.0.1")
	line := proc.WaitStdout(t, "Agency key:", 60*time.Second)
	m := bannerKeyRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("banner line without a key: %q", line)
	}
	agency := m[1]
	if len(agency) < len("cxco_agcy_k_")+22 {
		t.Fatalf("agency key %q is too short", agency)
	}
	a := gwClient{t: t, base: base}
	a.must(200, "GET", "/api/openapi.json", "", nil)
	t.Logf("cxco serve answered its first API request %v after the process started (race detector: %v)", time.Since(start).Round(time.Millisecond), raceBuild)
	out := proc.Stdout()
	for _, want := range []string{base + "/api", "embedded", "lost"} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(proc.Stderr(), "embedded") {
		t.Errorf("the log does not say the store is embedded:\n%s", proc.Stderr())
	}

	// The agency sets up a number and a company; the company creates a user.
	num := a.must(201, "POST", "/api/agency/phone-numbers", agency, map[string]any{"number": "+27211234567", "country_code": "ZA", "provider_slug": "sip_trunk"})
	co := a.must(201, "POST", "/api/agency/companies", agency, map[string]any{"name": "Acme Corp"})
	if co["plan"] != "starter" {
		t.Fatalf("company: %v", co)
	}
	user := a.must(201, "POST", "/api/users/", co["api_key"].(string), map[string]any{"email": "jane@acme.com", "name": "Jane Smith", "role": "admin"})
	key := user["api_key"].(string)

	// The guide, as written.
	voices := a.must(200, "GET", "/api/voices/", key, nil)["list"].([]any)
	rachel := voices[0].(map[string]any)
	if rachel["name"] != "Rachel" || jsonID(rachel) != 1 || rachel["external_voice_id"] != "21m00Tcm4TlvDq8ikWAM" {
		t.Fatalf("voice 1: %v", rachel)
	}
	agent := a.must(201, "POST", "/api/agents/", key, map[string]any{
		"name":         "Sales Assistant",
		"personality":  "You are a friendly and professional sales assistant for Acme Corp. You help customers understand our product range and guide them toward the right solution. Be conversational, never pushy.",
		"opening_line": "Hi there! Thanks for calling Acme Corp. How can I help you today?",
		"voice_id":     1,
		"language":     "en",
		"config":       map[string]any{"temperature": 0.7, "max_call_duration_seconds": 600},
	})
	if agent["status"] != "draft" || agent["voice"].(map[string]any)["name"] != "Rachel" {
		t.Fatalf("draft: %v", agent)
	}
	pub := a.must(200, "POST", fmt.Sprintf("/api/agents/%d/publish", jsonID(agent)), key, map[string]any{"country_code": "ZA"})
	pn, _ := pub["phone_number"].(map[string]any)
	if pub["status"] != "active" || pub["external_agent_id"] == nil || pn["number"] != "+27211234567" || jsonID(pn) != jsonID(num) ||
		pn["whatsapp_status"] != "none" || pn["voice_enabled"] != true {
		t.Fatalf("published: %v", pub)
	}

	// SIGTERM ends it cleanly.
	stop := time.Now()
	proc.Signal(syscall.SIGTERM)
	if code := proc.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	t.Logf("cxco serve exited %v after SIGTERM", time.Since(stop).Round(time.Millisecond))
}

// TestServeTwoNodesPublishRace: two `cxco serve` on one redis-server, twenty publishes
// for five numbers, ten to each process: exactly five active, fifteen 409s, no
// number assigned twice.
func TestServeTwoNodesPublishRace(t *testing.T) {
	bin := cxcotest.Binary(t)
	rd := redistest.StartRedis(t)
	const agency = "cxco_agcy_k_TwoNodesShareThisKey0123456789"
	const secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	var nodes []gwClient
	for i := 0; i < 2; i++ {
		httpPort := cxcotest.FreePort(t)
		proc := cxcotest.Start(t, bin, nil, "serve", "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
			"--sip", fmt.Sprintf("127.0.0.1:%d", cxcotest.FreeUDPPort(t)), "--public-ip", "127.0.0.1",
			"--redis", rd.URL, "--agency-key", agency, "--secret-key", secret, "--node-id", fmt.Sprintf("node-%d", i))
		proc.WaitStdout(t, "API:", 60*time.Second)
		if !cxcotest.WaitTCP(fmt.Sprintf("127.0.0.1:%d", httpPort), 10*time.Second) {
			t.Fatalf("node %d does not listen", i)
		}
		nodes = append(nodes, gwClient{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", httpPort)})
	}
	a, b := nodes[0], nodes[1]
	co := a.must(201, "POST", "/api/agency/companies", agency, map[string]any{"name": "Racers", "plan": "enterprise"})
	user := b.must(201, "POST", "/api/users/", co["api_key"].(string), map[string]any{"email": "race@example.com", "name": "Racer"})
	key := user["api_key"].(string)
	numbers := map[string]bool{}
	for i := 0; i < 5; i++ {
		n := fmt.Sprintf("+2721555%04d", i)
		nodes[i%2].must(201, "POST", "/api/agency/phone-numbers", agency, map[string]any{"number": n, "country_code": "ZA"})
		numbers[n] = true
	}
	var agents []int64
	for i := 0; i < 20; i++ {
		agents = append(agents, jsonID(nodes[i%2].must(201, "POST", "/api/agents/", key, map[string]any{"name": fmt.Sprintf("Agent %d", i),
			"personality": "You race.", "opening_line": "Ready.", "voice_id": 1})))
	}

	type result struct {
		code int
		body map[string]any
	}
	results := make([]result, len(agents))
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, aid := range agents {
		node := nodes[0]
		if i >= 10 {
			node = nodes[1]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			// api.do may only fail the test from the test goroutine: do the request by hand.
			body := strings.NewReader(`{"country_code": "ZA"}`)
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/agents/%d/publish", node.base, aid), body)
			req.Header.Set("X-API-Key", key)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				results[i] = result{code: -1, body: map[string]any{"error": err.Error()}}
				return
			}
			defer res.Body.Close()
			var m map[string]any
			_ = json.NewDecoder(res.Body).Decode(&m)
			results[i] = result{code: res.StatusCode, body: m}
		}()
	}
	close(gate)
	wg.Wait()

	active, conflicts := 0, 0
	taken := map[string]bool{}
	for i, r := range results {
		switch r.code {
		case 200:
			active++
			n := r.body["phone_number"].(map[string]any)["number"].(string)
			if taken[n] || !numbers[n] {
				t.Errorf("agent %d got %s (taken twice or not in the pool)", agents[i], n)
			}
			taken[n] = true
		case 409:
			conflicts++
			if r.body["error_type"] != "conflict" || !strings.Contains(r.body["detail"].(string), "no phone number is available for country ZA") {
				t.Errorf("409 body: %v", r.body)
			}
		default:
			t.Errorf("publish of agent %d: %d %v", agents[i], r.code, r.body)
		}
	}
	if active != 5 || conflicts != 15 {
		t.Fatalf("%d active and %d conflicts, want 5 and 15", active, conflicts)
	}
	// Both nodes agree on the outcome.
	for _, n := range nodes {
		if l := n.must(200, "GET", "/api/phone-numbers/", key, nil)["list"].([]any); len(l) != 5 {
			t.Errorf("%s: company numbers %d", n.base, len(l))
		}
		if l := n.must(200, "GET", "/api/phone-numbers/available?country_code=ZA", key, nil)["list"].([]any); len(l) != 0 {
			t.Errorf("%s: %d numbers still available", n.base, len(l))
		}
		if items := n.must(200, "GET", "/api/agents/?status=active", key, nil)["items"].([]any); len(items) != 5 {
			t.Errorf("%s: %d active agents", n.base, len(items))
		}
		if items := n.must(200, "GET", "/api/agents/?status=draft", key, nil)["items"].([]any); len(items) != 15 {
			t.Errorf("%s: %d drafts", n.base, len(items))
		}
	}
}
