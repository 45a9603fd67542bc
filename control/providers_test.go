package control_test

import (
	"context"
	"slices"
	"testing"
)

// TestAgentProviders: an agent's voice-AI provider is its voice's unless it
// names one; a fallback must differ; your own bot needs config.bot.url; only
// agents that use ElevenLabs (as provider or fallback) are made there, also
// when a live agent starts using it; each voice provider's credentials have
// their own shape.
func TestAgentProviders(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Providers")
	e.addNumbers("ZA", 2)

	var slugs []string
	for _, pr := range e.must(200, "GET", "/api/providers/", tn.compKey, nil).list(t) {
		if pr := pr.(map[string]any); pr["type"] == "voice_provider" {
			slugs = append(slugs, pr["slug"].(string))
		}
	}
	if !slices.Equal(slugs, []string{"elevenlabs", "openai", "mediastream"}) {
		t.Fatalf("voice providers: %v", slugs)
	}

	// The voice's provider: an ElevenLabs voice, an OpenAI voice (Marin, 7).
	el := e.must(201, "POST", "/api/agents", tn.userKey, agentBody(nil)).json(t)
	oa := e.must(201, "POST", "/api/agents", tn.userKey, agentBody(map[string]any{"voice_id": 7})).json(t)
	if el["provider"] != "elevenlabs" || oa["provider"] != "openai" || oa["fallback_provider"] != nil {
		t.Fatalf("providers from the voice: %v, %v", el["provider"], oa["provider"])
	}
	for _, c := range []struct {
		name     string
		body     map[string]any
		contains string
	}{
		{"unknown provider", agentBody(map[string]any{"provider": "acme"}), "provider"},
		{"not a voice provider", agentBody(map[string]any{"provider": "sip_trunk"}), "provider"},
		{"fallback is the provider", agentBody(map[string]any{"provider": "openai", "fallback_provider": "openai"}), "fallback_provider: must differ"},
		{"fallback is the voice's provider", agentBody(map[string]any{"fallback_provider": "elevenlabs"}), "fallback_provider"},
		{"bot without a URL", agentBody(map[string]any{"provider": "mediastream"}), "config.bot.url"},
		{"bot fallback without a URL", agentBody(map[string]any{"fallback_provider": "mediastream"}), "config.bot.url"},
		{"bot URL not a websocket", agentBody(map[string]any{"provider": "mediastream", "config": map[string]any{"bot": map[string]any{"url": "https://bot.example.com"}}}), "config.bot.url"},
		{"bad turn detection", agentBody(map[string]any{"provider": "openai", "config": map[string]any{"turn_detection": "telepathy"}}), "config.turn_detection"},
	} {
		isError(t, c.name, e.do("POST", "/api/agents", tn.userKey, c.body), 422, "validation_error", c.contains)
	}
	bot := e.must(201, "POST", "/api/agents", tn.userKey, agentBody(map[string]any{"provider": "mediastream", "fallback_provider": "openai",
		"config": map[string]any{"bot": map[string]any{"url": "wss://bot.example.com/stream", "parameters": map[string]any{"tier": "gold"}}}})).json(t)
	if bot["provider"] != "mediastream" || bot["fallback_provider"] != "openai" {
		t.Fatalf("bot agent: %v", bot)
	}

	// Publishing an OpenAI agent makes nothing at ElevenLabs.
	oaID := int64(oa["id"].(float64))
	pub := e.must(200, "POST", p("/api/agents/%d/publish", oaID), tn.userKey, map[string]any{"country_code": "ZA"}).json(t)
	if pub["status"] != "active" || pub["external_agent_id"] != nil || pub["phone_number"] == nil {
		t.Fatalf("published OpenAI agent: %v", pub)
	}
	// It names ElevenLabs as its fallback: now it is made there, so a failed-over
	// call finds it; and removing the fallback keeps the provider.
	up := e.must(200, "PUT", p("/api/agents/%d", oaID), tn.userKey, map[string]any{"fallback_provider": "elevenlabs"}).json(t)
	ext, _ := up["external_agent_id"].(string)
	if up["fallback_provider"] != "elevenlabs" || up["provider"] != "openai" || ext == "" {
		t.Fatalf("after naming ElevenLabs as the fallback: %v", up)
	}
	if _, ok := e.sim.AgentByID(ext); !ok {
		t.Fatalf("the fallback agent %s is not at ElevenLabs", ext)
	}
	up = e.must(200, "PUT", p("/api/agents/%d", oaID), tn.userKey, map[string]any{"fallback_provider": nil}).json(t)
	if up["fallback_provider"] != nil || up["provider"] != "openai" {
		t.Fatalf("after removing the fallback: %v", up)
	}

	// Credentials: an api_key for OpenAI; headers for your own bots.
	for _, c := range []struct {
		name, slug string
		creds      any
		contains   string
	}{
		{"openai without api_key", "openai", map[string]any{"key": "sk-1"}, "credentials.api_key"},
		{"bot headers not an object", "mediastream", map[string]any{"headers": "Bearer x"}, "credentials.headers"},
		{"bot header name with a space", "mediastream", map[string]any{"headers": map[string]any{"X Token": "1"}}, "credentials.headers.X Token"},
		{"bot header value with a newline", "mediastream", map[string]any{"headers": map[string]any{"X-Token": "1\r\nEvil: 1"}}, "credentials.headers.X-Token"},
		{"bot unknown field", "mediastream", map[string]any{"headers": map[string]any{"X-Token": "1"}, "api_key": "x"}, "credentials.api_key"},
	} {
		isError(t, c.name, e.do("POST", "/api/providers/"+c.slug+"/credentials", tn.compKey, map[string]any{"company_id": tn.id, "credentials": c.creds}),
			422, "validation_error", c.contains)
	}
	e.must(201, "POST", "/api/providers/openai/credentials", tn.compKey, map[string]any{"company_id": tn.id, "credentials": map[string]any{"api_key": "sk-openai-1"}})
	e.must(201, "POST", "/api/providers/mediastream/credentials", tn.compKey, map[string]any{"company_id": tn.id,
		"credentials": map[string]any{"headers": map[string]any{"Authorization": "Bearer bot-secret"}}})
	got, err := e.st.CredentialSecrets(context.Background(), tn.id, "mediastream")
	if h, _ := got["headers"].(map[string]any); err != nil || h["Authorization"] != "Bearer bot-secret" {
		t.Fatalf("bot credentials open to %v, %v", got, err)
	}
}
