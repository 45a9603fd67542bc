package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge/elevenlabs/elevenlabssim"
	"github.com/cxco/gateway/cmd/cxco/cxcotest"
)

// simConversation is the simulator's record of the conversation with an agent.
func simConversation(t *testing.T, sim, agentID string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, c := range cxcotest.SimConversations(t, sim) {
			if c["agent_id"] == agentID && c["status"] != "in-progress" && c["status"] != "initiated" {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished conversation with %s at the provider", agentID)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPublishedAgentsTakeCalls: against the strict provider simulator (its two
// keypad hooks stand in for the decisions an LLM would make), real SIPp calls to
// published agents: a French agent (published with a multilingual TTS model) gets
// a PIN typed on the keypad as one user_message; an agent with two transfer
// destinations calls the gateway's client transfer tool and the REFER goes to the
// destination it chose; every agent is private, reached only through a signed URL.
// Removing the destinations removes the tool at the provider.
func TestPublishedAgentsTakeCalls(t *testing.T) {
	sim := cxcotest.StartSim(t, "--hooks", elevenlabssim.HookHashEndsCall+","+elevenlabssim.HookZeroCallsTool)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{ProviderURL: sim})
	tn := g.NewTenant("Agents")
	publish := func(number, name, lang string, config map[string]any) (int64, string) {
		g.AddNumber(number, "ZA", false)
		a := g.Must(201, "POST", "/api/agents/", tn.UserKey, map[string]any{"name": name, "personality": "You are " + name + ".",
			"opening_line": "Bonjour, ici " + name + ".", "voice_id": 1, "language": lang, "config": config})
		id := int64(a["id"].(float64))
		p := g.Must(200, "POST", fmt.Sprintf("/api/agents/%d/publish", id), tn.UserKey, map[string]any{"country_code": "ZA"})
		return id, p["external_agent_id"].(string)
	}

	t.Run("a French agent gets a PIN as one user turn", func(t *testing.T) {
		_, ext := publish("+27216660001", "Amélie", "fr", nil)
		code, doc := cxcotest.SimGet(t, sim, "test-platform-key", "/v1/convai/agents/"+ext)
		cc, _ := doc["conversation_config"].(map[string]any)
		tts, _ := cc["tts"].(map[string]any)
		auth, _ := doc["platform_settings"].(map[string]any)["auth"].(map[string]any)
		if code != 200 || tts["model_id"] != "eleven_flash_v2_5" || auth["enable_auth"] != true {
			t.Fatalf("the agent at the provider: %d %v", code, doc)
		}
		sipp(t, g, "uac_pin.xml", "+27216660001")
		c := simConversation(t, sim, ext)
		if um, _ := c["user_messages"].([]any); len(um) != 1 || um[0] != "The caller entered 1234# on the keypad." || c["signed"] != true {
			t.Fatalf("the provider's conversation: %v", c)
		}
		conv := lastConversation(t, g, tn)
		if conv["status"] != "completed" || !hasEntry(conv, "user", "1234#") || !hasEntry(conv, "agent", "You wrote: The caller entered 1234#") {
			t.Fatalf("conversation: %v", conv)
		}
	})

	t.Run("two destinations: the tool picks one, the REFER goes there", func(t *testing.T) {
		id, ext := publish("+27216660002", "Desk", "en", map[string]any{ // the default 2 s pause: # ends the entry
			"transfer": map[string]any{"mode": "refer", "destinations": []any{
				map[string]any{"number": "+27219990001", "condition": "the caller wants sales", "label": "Sales"},
				map[string]any{"number": "+27219990002", "condition": "the caller has a problem", "label": "Support"},
			}}})
		_, doc := cxcotest.SimGet(t, sim, "test-platform-key", "/v1/convai/agents/"+ext)
		prompt := doc["conversation_config"].(map[string]any)["agent"].(map[string]any)["prompt"].(map[string]any)
		toolIDs, _ := prompt["tool_ids"].([]any)
		if len(toolIDs) != 1 {
			t.Fatalf("tool_ids %v", prompt)
		}
		toolPath := "/v1/convai/tools/" + toolIDs[0].(string)
		code, tool := cxcotest.SimGet(t, sim, "test-platform-key", toolPath)
		cfg, _ := tool["tool_config"].(map[string]any)
		if code != 200 || cfg["type"] != "client" || cfg["name"] != "transfer_call" || !strings.Contains(fmt.Sprint(cfg["description"]), "+27219990002 (Support): the caller has a problem") {
			t.Fatalf("the transfer tool: %d %v", code, tool)
		}
		sipp(t, g, "uac_refer_second.xml", "+27216660002")
		conv := lastConversation(t, g, tn)
		if conv["status"] != "transferred" || conv["sip_refer_destination"] != "+27219990002" {
			t.Fatalf("conversation: %v", conv)
		}
		c := simConversation(t, sim, ext)
		calls, _ := c["tool_calls"].([]any)
		if len(calls) != 1 || calls[0].(map[string]any)["tool_name"] != "transfer_call" ||
			calls[0].(map[string]any)["parameters"].(map[string]any)["destination"] != "+27219990002" {
			t.Fatalf("tool calls at the provider: %v", c)
		}
		// No destinations any more: the agent loses the tool, and the tool is gone.
		g.Must(200, "PUT", fmt.Sprintf("/api/agents/%d", id), tn.UserKey, map[string]any{"config": map[string]any{"transfer": nil}})
		_, doc = cxcotest.SimGet(t, sim, "test-platform-key", "/v1/convai/agents/"+ext)
		prompt = doc["conversation_config"].(map[string]any)["agent"].(map[string]any)["prompt"].(map[string]any)
		if ids, _ := prompt["tool_ids"].([]any); len(ids) != 0 {
			t.Fatalf("tool_ids after removing the destinations: %v", prompt)
		}
		if code, _ := cxcotest.SimGet(t, sim, "test-platform-key", toolPath); code != http.StatusNotFound {
			t.Fatalf("the tool is still there: %d", code)
		}
	})

	t.Run("agents are private: the agent id alone opens nothing", func(t *testing.T) {
		_, ext := publish("+27216660003", "Private", "en", nil)
		u := "ws" + strings.TrimPrefix(sim, "http") + "/v1/convai/conversation?agent_id=" + ext
		_, res, err := websocket.DefaultDialer.Dial(u, http.Header{"xi-api-key": {"test-platform-key"}})
		if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
			t.Fatalf("dialled a private agent without a signed URL: %v %v", err, res)
		}
		sipp(t, g, "uac_dtmf_hash.xml", "+27216660003")
		c := simConversation(t, sim, ext)
		if c["signed"] != true || !slices.Contains(c["system_tools"].([]any), any("end_call")) {
			t.Fatalf("the provider's conversation: %v", c)
		}
	})
}
