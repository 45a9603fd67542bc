package elevenlabssim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// set returns body with the value at path (dot-separated) replaced.
func set(body map[string]any, path string, v any) map[string]any {
	b := cloneMap(body)
	keys := strings.Split(path, ".")
	m := b
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[keys[len(keys)-1]] = v
	return b
}

func sysTransfer(transfers ...map[string]any) map[string]any {
	l := make([]any, len(transfers))
	for i, t := range transfers {
		l[i] = t
	}
	return map[string]any{"type": "system", "name": "transfer_to_number", "description": "",
		"params": map[string]any{"system_tool_type": "transfer_to_number", "transfers": l}}
}

// TestCreateValidation: the create body is held to the API's request models: 422
// with {"detail": [{loc, msg, type}]} naming the field, or 400 for a model that
// cannot speak the language.
func TestCreateValidation(t *testing.T) {
	e := newEnv(t, Options{})
	base := agentBody("Hi.", "ulaw_8000")
	tools := "conversation_config.agent.prompt.built_in_tools.transfer_to_number"
	cases := []struct {
		name string
		body map[string]any
		code int
		loc  string // a part of the first error's loc, joined with dots
	}{
		{"valid", base, 200, ""},
		{"no conversation_config", map[string]any{"name": "x"}, 422, "body.conversation_config"},
		{"a bad language", set(base, "conversation_config.agent.language", "xx"), 422, "agent.language"},
		{"a bad audio format", set(base, "conversation_config.tts.agent_output_audio_format", "mp3_44100_128"), 422, "tts.agent_output_audio_format"},
		{"a bad client event", set(base, "conversation_config.conversation.client_events", []any{"audio", "dtmf"}), 422, "client_events.1"},
		{"an unknown TTS model", set(base, "conversation_config.tts.model_id", "eleven_v1"), 422, "tts.model_id"},
		{"a field that does not exist", set(base, "conversation_config.agent.greeting", "Hi."), 422, "agent.greeting"},
		{"the removed prompt.tools", set(base, "conversation_config.agent.prompt.tools", []any{}), 422, "prompt.tools"},
		{"temperature out of range", set(base, "conversation_config.agent.prompt.temperature", 3.0), 422, "prompt.temperature"},
		{"a tool id of nobody", set(base, "conversation_config.agent.prompt.tool_ids", []any{"tool_nope"}), 422, "prompt.tool_ids.0"},
		{"enable_auth not a boolean", set(base, "platform_settings.auth.enable_auth", "yes"), 422, "auth.enable_auth"},
		{"a transfer without transfer_destination", set(base, tools, sysTransfer(map[string]any{"phone_number": "+15551230001", "condition": "asked"})),
			422, "transfers.0.transfer_destination"},
		{"a transfer without a condition", set(base, tools, sysTransfer(map[string]any{"transfer_destination": map[string]any{"type": "phone", "phone_number": "+15551230001"}})),
			422, "transfers.0.condition"},
		{"a bad destination type", set(base, tools, sysTransfer(map[string]any{"transfer_destination": map[string]any{"type": "email", "to": "x"}, "condition": "c"})),
			422, "transfer_destination.type"},
		{"a sip_uri without sip_refer", set(base, tools, sysTransfer(map[string]any{"transfer_destination": map[string]any{"type": "sip_uri", "sip_uri": "sip:a@b"}, "condition": "c"})),
			422, "transfers.0.transfer_type"},
		{"a sip_uri with sip_refer", set(base, tools, sysTransfer(map[string]any{"transfer_destination": map[string]any{"type": "sip_uri", "sip_uri": "sip:a@b"}, "condition": "c", "transfer_type": "sip_refer"})),
			200, ""},
		{"French on an English-only model", set(base, "conversation_config.agent.language", "fr"), 400, ""},
		{"French with no model_id (the default is English-only)", set(set(base, "conversation_config.agent.language", "fr"), "conversation_config.tts", map[string]any{"voice_id": "v1"}), 400, ""},
		{"French on eleven_flash_v2_5", set(set(base, "conversation_config.agent.language", "fr"), "conversation_config.tts.model_id", "eleven_flash_v2_5"), 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, b := e.do(http.MethodPost, "/v1/convai/agents/create", tc.body)
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, b, tc.code)
			}
			switch code {
			case 422:
				var out struct {
					Detail []detail `json:"detail"`
				}
				if json.Unmarshal(b, &out) != nil || len(out.Detail) == 0 {
					t.Fatalf("422 body %s", b)
				}
				var locs []string
				for _, d := range out.Detail {
					parts := make([]string, len(d.Loc))
					for i, l := range d.Loc {
						b, _ := json.Marshal(l)
						parts[i] = strings.Trim(string(b), `"`)
					}
					locs = append(locs, strings.Join(parts, "."))
					if d.Msg == "" || d.Type == "" {
						t.Errorf("detail without msg or type: %s", b)
					}
				}
				if !strings.Contains(strings.Join(locs, " "), tc.loc) {
					t.Errorf("locs %v, want one with %q", locs, tc.loc)
				}
			case 400:
				if !strings.Contains(string(b), "Non-english Agents must use turbo or flash v2_5") {
					t.Errorf("400 body %s", b)
				}
			}
		})
	}
	t.Run("every language publishes on a multilingual model", func(t *testing.T) {
		for _, lang := range languages {
			body := set(base, "conversation_config.agent.language", lang)
			if lang != "en" {
				body = set(body, "conversation_config.tts.model_id", "eleven_flash_v2_5")
			}
			if code, b := e.do(http.MethodPost, "/v1/convai/agents/create", body); code != 200 {
				t.Errorf("%s: %d %s", lang, code, b)
			}
		}
	})
}

// TestPatch: a PATCH merges nested objects (null removes) or replaces the sections
// it names (PatchMode); either way the result must still be a valid agent.
func TestPatch(t *testing.T) {
	for _, mode := range []PatchMode{PatchMerge, PatchReplace} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t, Options{PatchMode: mode})
			base := agentBody("Hi.", "ulaw_8000")
			base = set(base, "conversation_config.agent.prompt.built_in_tools.transfer_to_number", sysTransfer(map[string]any{
				"transfer_destination": map[string]any{"type": "phone", "phone_number": "+15551230001"}, "condition": "asked"}))
			id := e.createAgent(base)
			// A partial patch: only the first message, and a null for the transfer tool.
			patch := map[string]any{"conversation_config": map[string]any{"agent": map[string]any{"first_message": "Hello again.",
				"prompt": map[string]any{"built_in_tools": map[string]any{"transfer_to_number": nil}}}}}
			code, b := e.do(http.MethodPatch, "/v1/convai/agents/"+id, patch)
			if code != 200 {
				t.Fatalf("PATCH: %d %s", code, b)
			}
			a, _ := e.sim.AgentByID(id)
			if deref(stringAt(a.Config, "agent", "first_message")) != "Hello again." {
				t.Errorf("first_message not patched: %v", a.Config)
			}
			if valueAt(a.Config, "agent", "prompt", "built_in_tools", "transfer_to_number") != nil {
				t.Errorf("transfer tool still there: %v", a.Config)
			}
			_, hasTTS := a.Config["tts"]
			_, hasLang := valueAt(a.Config, "agent").(map[string]any)["language"]
			if mode == PatchMerge && (!hasTTS || !hasLang) || mode == PatchReplace && (hasTTS || hasLang) {
				t.Errorf("%s: tts kept %v, language kept %v", mode, hasTTS, hasLang)
			}
			// A patch that leaves an invalid agent is refused as a whole.
			code, b = e.do(http.MethodPatch, "/v1/convai/agents/"+id, map[string]any{"conversation_config": map[string]any{"agent": map[string]any{"language": "de"},
				"tts": map[string]any{"model_id": "eleven_turbo_v2"}}})
			if code != 400 {
				t.Errorf("German on turbo_v2: %d %s", code, b)
			}
			if a2, _ := e.sim.AgentByID(id); valueAt(a2.Config, "agent", "language") == "de" {
				t.Errorf("the refused patch changed the agent")
			}
		})
	}
}

// TestTools: client tools are workspace records an agent lists by id; they belong
// to an account; system tools cannot be made this way; a tool in use is only
// deleted with force, which takes it off the agent.
func TestTools(t *testing.T) {
	e := newEnv(t, Options{})
	tool := e.createTool(transferTool(30, "+15551230001"))
	for name, body := range map[string]map[string]any{
		"a system tool":               {"tool_config": map[string]any{"type": "system", "name": "end_call"}},
		"no description":              {"tool_config": map[string]any{"type": "client", "name": "x"}},
		"a timeout beyond 120 s":      transferTool(121, "+1"),
		"an enum on an integer":       set(transferTool(30, "+1"), "tool_config.parameters.properties.n", map[string]any{"type": "integer", "description": "n", "enum": []any{"1"}}),
		"a property without a say":    set(transferTool(30, "+1"), "tool_config.parameters.properties.n", map[string]any{"type": "string"}),
		"required but not a property": set(transferTool(30, "+1"), "tool_config.parameters.required", []any{"destination", "nope"}),
	} {
		if code, b := e.do(http.MethodPost, "/v1/convai/tools", body); code != 422 {
			t.Errorf("%s: %d %s, want 422", name, code, b)
		}
	}
	if code, _ := e.doKey(otherKey, http.MethodGet, "/v1/convai/tools/"+tool, nil); code != 404 {
		t.Errorf("another account sees the tool: %d", code)
	}
	if code, b := e.doKey(otherKey, http.MethodPost, "/v1/convai/agents/create", agentBody("", "ulaw_8000", tool)); code != 422 {
		t.Errorf("another account uses the tool: %d %s", code, b)
	}
	id := e.createAgent(agentBody("", "ulaw_8000", tool))
	if code, b := e.do(http.MethodPatch, "/v1/convai/tools/"+tool, transferTool(60, "+15551230001", "+15551230002")); code != 200 {
		t.Errorf("PATCH tool: %d %s", code, b)
	}
	if tl, _ := e.sim.ToolByID(tool); len(asList(valueAt(tl.Config, "parameters", "properties", "destination", "enum"))) != 2 {
		t.Errorf("tool not replaced: %v", tl.Config)
	}
	if code, _ := e.do(http.MethodDelete, "/v1/convai/tools/"+tool, nil); code != 400 {
		t.Errorf("deleting a tool in use: %d, want 400", code)
	}
	if code, _ := e.do(http.MethodDelete, "/v1/convai/tools/"+tool+"?force=true", nil); code != 200 {
		t.Errorf("force delete: %d", code)
	}
	if a, _ := e.sim.AgentByID(id); len(asList(valueAt(a.Config, "agent", "prompt", "tool_ids"))) != 0 || e.sim.ToolCount() != 0 {
		t.Errorf("after force delete: agent tools %v, %d tools", valueAt(a.Config, "agent", "prompt", "tool_ids"), e.sim.ToolCount())
	}
	if code, _ := e.do(http.MethodDelete, "/v1/convai/tools/"+tool, nil); code != 404 {
		t.Errorf("deleting again: %d, want 404", code)
	}
}
