package control_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/cxco/gateway/bridge/elevenlabs"
	"github.com/cxco/gateway/bridge/elevenlabs/elevenlabssim"
	"github.com/cxco/gateway/cmd/cxco/cxcotest"
)

// simPrompt is the agent's conversation_config.agent.prompt at the simulator.
func simPrompt(t *testing.T, e *env, ext string) map[string]any {
	t.Helper()
	a, ok := e.sim.AgentByID(ext)
	if !ok {
		t.Fatalf("agent %s is not at the provider", ext)
	}
	return a.Config["agent"].(map[string]any)["prompt"].(map[string]any)
}

// TestPublishEveryLanguage: every language the API takes publishes at the
// provider, which refuses a non-English agent on an English-only TTS model: each
// gets the model for its language, and every agent is private.
func TestPublishEveryLanguage(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Polyglot")
	langs := strings.Fields("en ja zh de hi fr ko pt pt-br it es id nl tr pl sv bg ro ar cs el fi ms da ta uk ru hu hr sk no vi tl")
	e.addNumbers("ZA", len(langs))
	for _, lang := range langs {
		a := e.must(201, "POST", "/api/agents/", tn.userKey, map[string]any{"name": "Agent " + lang, "personality": "p",
			"opening_line": "hi", "voice_id": 1, "language": lang}).json(t)
		pub := e.publish(tn, int64(a["id"].(float64)))
		sa, _ := e.sim.AgentByID(pub["external_agent_id"].(string))
		if m := sa.Config["tts"].(map[string]any)["model_id"]; m != elevenlabs.TTSModel(lang) || (lang != "en") != (m == "eleven_flash_v2_5") {
			t.Errorf("%s: model %v", lang, m)
		}
		if sa.Platform["auth"].(map[string]any)["enable_auth"] != true {
			t.Errorf("%s: agent is public: %v", lang, sa.Platform)
		}
	}
}

// TestProviderRefusal: a provider 4xx on publish or update is a 422 carrying the
// provider's message (the customer can act on it); a 5xx or no answer stays 503.
func TestProviderRefusal(t *testing.T) {
	for _, tc := range []struct {
		name, body, errType, contains string
		status, want                  int
	}{
		{"400 with a message", `{"detail":{"status":"invalid_conversation_config","message":"Invalid conversation config: Non-english Agents must use turbo or flash v2_5."}}`,
			"validation_error", "refused the agent: Invalid conversation config: Non-english Agents must use turbo or flash v2_5.", 400, 422},
		{"422 with a field list", `{"detail":[{"loc":["body","conversation_config","agent","language"],"msg":"Input should be 'en'","type":"enum"}]}`,
			"validation_error", "conversation_config.agent.language: Input should be 'en'", 422, 422},
		{"401 for a bad key", `{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}`, "validation_error", "Invalid API key", 401, 422},
		{"500", `{"detail":"boom"}`, "unavailable", "provider", 500, 503},
		{"429", `{"detail":"slow down"}`, "unavailable", "provider", 429, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer stub.Close()
			e := newEnv(t, envOpts{providerURL: stub.URL})
			tn := e.bigTenant("Refused")
			e.addNumbers("ZA", 1)
			id := e.newAgent(tn, "Refused Agent")
			r := e.do("POST", p("/api/agents/%d/publish", id), tn.userKey, map[string]any{"country_code": "ZA"})
			isError(t, "publish", r, tc.want, tc.errType, tc.contains)
			if a := e.must(200, "GET", p("/api/agents/%d", id), tn.userKey, nil).json(t); a["status"] != "draft" {
				t.Fatalf("after a refused publish: %v", a)
			}
		})
	}
}

// TestArchiveNeedsTheProvider: archive deletes the agent at the provider first;
// when that fails the archive fails and nothing changes, unless force=true.
func TestArchiveNeedsTheProvider(t *testing.T) {
	e := newEnv(t, envOpts{})
	down := newEnv(t, envOpts{redis: e.redis, providerURL: p("http://127.0.0.1:%d", cxcotest.FreePort(t))})
	e.agency = down.agency
	tn := e.bigTenant("Archiver")
	e.addNumbers("ZA", 1)
	id := e.newAgent(tn, "Sticky")
	ext := e.publish(tn, id)["external_agent_id"].(string)
	isError(t, "archive with the provider down", down.do("DELETE", p("/api/agents/%d", id), tn.userKey, nil), 503, "unavailable", "not archived")
	if a := e.must(200, "GET", p("/api/agents/%d", id), tn.userKey, nil).json(t); a["status"] != "active" || a["phone_number"] == nil {
		t.Fatalf("a failed archive changed the agent: %v", a)
	}
	isError(t, "a bad force", down.do("DELETE", p("/api/agents/%d?force=maybe", id), tn.userKey, nil), 422, "validation_error", "force")
	if a := down.must(200, "DELETE", p("/api/agents/%d?force=true", id), tn.userKey, nil).json(t); a["status"] != "archived" {
		t.Fatalf("forced archive: %v", a)
	}
	if _, ok := e.sim.AgentByID(ext); !ok {
		t.Fatal("the forced archive reached the provider it could not reach")
	}
	// An agent already gone at the provider archives fine.
	id2 := e.newAgent(tn, "Gone")
	e.addNumbers("ZA", 1)
	ext2 := e.publish(tn, id2)["external_agent_id"].(string)
	req, _ := http.NewRequest(http.MethodDelete, e.simURL+"/v1/convai/agents/"+ext2, nil)
	req.Header.Set("xi-api-key", "test-platform-key")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("delete at the provider: %v %v", err, res)
	}
	e.must(200, "DELETE", p("/api/agents/%d", id2), tn.userKey, nil)
}

// TestCompanyKeys: an agent lives in the provider account of the key that created
// it, and keeps being reached with that key when the company adds its own key,
// and again when it replaces that key; the keys are never stored in plain text.
func TestCompanyKeys(t *testing.T) {
	e := newEnv(t, envOpts{}) // the simulator: every key is an account of its own
	tn := e.bigTenant("Keyholder")
	e.addNumbers("ZA", 3)
	update := func(id int64) {
		e.must(200, "PUT", p("/api/agents/%d", id), tn.userKey, map[string]any{"opening_line": "Updated."})
	}

	a := e.newAgent(tn, "On the platform key")
	extA := e.publish(tn, a)["external_agent_id"].(string)
	e.must(201, "POST", "/api/providers/elevenlabs/credentials", tn.compKey, map[string]any{"company_id": tn.id, "credentials": map[string]any{"api_key": "sk_company_first_0001"}})
	b := e.newAgent(tn, "On the company key")
	extB := e.publish(tn, b)["external_agent_id"].(string)
	update(a) // still the platform's agent: reached with the platform key
	update(b)
	// The company replaces its key.
	e.must(204, "DELETE", "/api/providers/elevenlabs/credentials", tn.compKey, nil)
	e.must(201, "POST", "/api/providers/elevenlabs/credentials", tn.compKey, map[string]any{"company_id": tn.id, "credentials": map[string]any{"api_key": "sk_company_second_0002"}})
	c := e.newAgent(tn, "On the new key")
	extC := e.publish(tn, c)["external_agent_id"].(string)
	update(a)
	update(b) // with the key that created it, kept sealed
	update(c)
	for ext, first := range map[string]string{extA: "Updated.", extB: "Updated.", extC: "Updated."} {
		if sa, ok := e.sim.AgentByID(ext); !ok || sa.Config["agent"].(map[string]any)["first_message"] != first {
			t.Errorf("agent %s at the provider: %v", ext, sa.Config)
		}
	}
	// No key in plain text anywhere in Redis.
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(e.redis.URL, "redis://")})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		dump, _ := rdb.Dump(context.Background(), k).Result()
		if strings.Contains(dump, "sk_company_") {
			t.Errorf("a key in plain text in %s", k)
		}
	}
	for _, id := range []int64{a, b, c} {
		e.must(200, "DELETE", p("/api/agents/%d", id), tn.userKey, nil)
	}
	if n := e.sim.AgentCount(); n != 0 {
		t.Errorf("%d agents left at the provider after archiving all", n)
	}
}

// TestTransferToolLifecycle: the transfer is a client tool the agent lists by id
// (never the provider's built-in transfer_to_number); an update changes its
// destinations, and removing them removes the tool from the agent and the
// provider, whether the provider's PATCH merges or replaces nested objects.
func TestTransferToolLifecycle(t *testing.T) {
	for _, mode := range []elevenlabssim.PatchMode{elevenlabssim.PatchMerge, elevenlabssim.PatchReplace} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t, envOpts{sim: elevenlabssim.Options{PatchMode: mode}})
			tn := e.bigTenant("Transferrer")
			e.addNumbers("ZA", 1)
			dest := func(n ...string) map[string]any {
				var l []any
				for _, x := range n {
					l = append(l, map[string]any{"number": x, "condition": "asked for " + x})
				}
				return map[string]any{"transfer": map[string]any{"destinations": l}}
			}
			a := e.must(201, "POST", "/api/agents/", tn.userKey, map[string]any{"name": "T", "personality": "p", "opening_line": "hi",
				"voice_id": 1, "config": dest("+27219990001", "sip:desk@pbx.example.com")}).json(t)
			id := int64(a["id"].(float64))
			ext := e.publish(tn, id)["external_agent_id"].(string)
			enum := func() []any {
				pr := simPrompt(t, e, ext)
				if bt, _ := pr["built_in_tools"].(map[string]any); bt["transfer_to_number"] != nil {
					t.Errorf("a built-in transfer_to_number: %v", bt)
				}
				ids, _ := pr["tool_ids"].([]any)
				if len(ids) == 0 {
					return nil
				}
				tool, ok := e.sim.ToolByID(ids[0].(string))
				if !ok || tool.Config["type"] != "client" || tool.Config["name"] != elevenlabs.TransferTool {
					t.Fatalf("tool %v", tool)
				}
				return tool.Config["parameters"].(map[string]any)["properties"].(map[string]any)["destination"].(map[string]any)["enum"].([]any)
			}
			if got := enum(); !slices.Equal(got, []any{"+27219990001", "sip:desk@pbx.example.com"}) {
				t.Fatalf("destinations %v", got)
			}
			e.must(200, "PUT", p("/api/agents/%d", id), tn.userKey, map[string]any{"config": dest("+27219990002")})
			if got := enum(); !slices.Equal(got, []any{"+27219990002"}) || e.sim.ToolCount() != 1 {
				t.Fatalf("after the update: %v, %d tools", got, e.sim.ToolCount())
			}
			e.must(200, "PUT", p("/api/agents/%d", id), tn.userKey, map[string]any{"config": map[string]any{"transfer": nil}})
			if got := enum(); got != nil || e.sim.ToolCount() != 0 {
				t.Fatalf("after removing the destinations: %v, %d tools", got, e.sim.ToolCount())
			}
			e.must(200, "PUT", p("/api/agents/%d", id), tn.userKey, map[string]any{"config": dest("+27219990003")})
			if got := enum(); !slices.Equal(got, []any{"+27219990003"}) {
				t.Fatalf("after adding one back: %v", got)
			}
			e.must(200, "DELETE", p("/api/agents/%d", id), tn.userKey, nil)
			if e.sim.ToolCount() != 0 || e.sim.AgentCount() != 0 {
				t.Fatalf("after archive: %d tools, %d agents", e.sim.ToolCount(), e.sim.AgentCount())
			}
		})
	}
}
