// Package elevenlabs is the ElevenLabs Agents provider: its REST client (agents,
// tools, signed URLs, conversations), the provisioning of our agents there, and
// the conversation websocket protocol. Its simulator, written from ElevenLabs'
// published material and never from this package, is elevenlabssim beside it;
// contract holds messages to the AsyncAPI contract.
package elevenlabs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/cxco/gateway/bridge"
)

// Client speaks the provider's REST API (the ElevenLabs Agents API).
type Client struct {
	BaseURL string
	HTTP    *http.Client
}

// NewClient makes a REST client for base (e.g. https://api.elevenlabs.io, or a
// residency host such as https://api.eu.residency.elevenlabs.io).
func NewClient(base string) *Client {
	return &Client{BaseURL: strings.TrimRight(base, "/"), HTTP: &http.Client{Timeout: 10 * time.Second}}
}

// AgentSpec is what we tell the provider about an agent.
type AgentSpec struct {
	Name         string
	Prompt       string
	FirstMessage string
	Language     string
	VoiceID      string // the provider's voice id
	Temperature  *float64
	MaxDuration  int    // seconds
	AudioFormat  string // ulaw_8000 or pcm_16000, both directions
	Transfers    []Transfer
	Tags         []string
}

// Transfer is one destination of the transfer tool.
type Transfer struct {
	Destination string // E.164 number or sip: URI, as the agent's config has it
	Label       string
	Condition   string
}

// TransferTool is the name of the client tool the gateway declares for transfers.
// Not the provider's built-in transfer_to_number: built-in (system) tools run
// inside the provider and never reach a websocket client.
const TransferTool = bridge.ToolTransfer

// ClientEvents are the server events the gateway asks for (the provider's default
// leaves out tool calls, tool responses and corrections).
var ClientEvents = []string{"conversation_initiation_metadata", "audio", "interruption", "user_transcript",
	"agent_response", "agent_response_correction", "client_tool_call", "agent_tool_response", "ping"}

// TTSModel is the TTS model for an agent's language: English agents get
// eleven_flash_v2, every other language the multilingual eleven_flash_v2_5 (the
// provider refuses a non-English agent on an English-only model). Flash for the
// lowest latency, which a phone call hears.
func TTSModel(language string) string {
	if language == "" || language == "en" {
		return "eleven_flash_v2"
	}
	return "eleven_flash_v2_5"
}

// body is the create and PATCH body. It is always whole, and says null where
// something must go (an older gateway's built-in transfer tool), so that the
// provider ends in the same state whether PATCH merges nested objects or replaces
// them. toolIDs are the provider ids of the client tools the agent uses.
func (s AgentSpec) body(toolIDs []string) map[string]any {
	prompt := map[string]any{"prompt": s.Prompt, "tool_ids": append([]string{}, toolIDs...),
		"built_in_tools": map[string]any{
			"end_call":           map[string]any{"type": "system", "name": "end_call", "description": "", "params": map[string]any{"system_tool_type": "end_call"}},
			"transfer_to_number": nil,
		}}
	if s.Temperature != nil {
		prompt["temperature"] = *s.Temperature
	}
	conv := map[string]any{"client_events": ClientEvents}
	if s.MaxDuration > 0 {
		conv["max_duration_seconds"] = s.MaxDuration
	}
	return map[string]any{
		"name": s.Name,
		"tags": s.Tags,
		"conversation_config": map[string]any{
			"agent":        map[string]any{"first_message": s.FirstMessage, "language": s.Language, "prompt": prompt},
			"asr":          map[string]any{"user_input_audio_format": s.AudioFormat},
			"tts":          map[string]any{"voice_id": s.VoiceID, "model_id": TTSModel(s.Language), "agent_output_audio_format": s.AudioFormat},
			"conversation": conv,
		},
		"platform_settings": map[string]any{
			// Private: reached only through a signed URL that our credentials get.
			"auth": map[string]any{"enable_auth": true},
			// A reconnect asks the agent not to greet again: first_message only.
			"overrides": map[string]any{
				"conversation_config_override": map[string]any{"agent": map[string]any{"first_message": true}},
			},
		},
	}
}

// transferTool is the client tool's tool_config: the destination constrained to
// the agent's own (an enum), a reason, and a description that lists each
// destination with its condition.
func (s AgentSpec) transferTool() map[string]any {
	var b strings.Builder
	b.WriteString("Transfer the caller to a human. Call it only when one of these conditions is met, with that destination:")
	dests := make([]any, 0, len(s.Transfers))
	for _, t := range s.Transfers {
		dests = append(dests, t.Destination)
		b.WriteString("\n- " + t.Destination)
		if t.Label != "" {
			b.WriteString(" (" + t.Label + ")")
		}
		b.WriteString(": " + t.Condition)
	}
	b.WriteString("\nTell the caller you are transferring them before you call it.")
	return map[string]any{"tool_config": map[string]any{
		"type":                  "client",
		"name":                  TransferTool,
		"description":           b.String(),
		"expects_response":      true,
		"response_timeout_secs": 120, // a REFER may ring a while; the provider's maximum
		"parameters": map[string]any{
			"type":     "object",
			"required": []any{"destination", "reason"},
			"properties": map[string]any{
				"destination": map[string]any{"type": "string", "description": "Where to transfer the caller: one of the listed destinations, exactly as written.", "enum": dests},
				"reason":      map[string]any{"type": "string", "description": "Why the caller is being transferred, in a few words."},
			},
		},
	}}
}

// CreateAgent creates an agent that uses the given client tools and returns its id.
func (c *Client) CreateAgent(ctx context.Context, apiKey string, spec AgentSpec, toolIDs []string) (string, error) {
	var out struct {
		AgentID string `json:"agent_id"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/convai/agents/create", apiKey, spec.body(toolIDs), &out); err != nil {
		return "", err
	}
	if out.AgentID == "" {
		return "", fmt.Errorf("%w: create agent returned no agent_id", ErrProvider)
	}
	return out.AgentID, nil
}

// UpdateAgent pushes a changed agent (the whole configuration).
func (c *Client) UpdateAgent(ctx context.Context, apiKey, id string, spec AgentSpec, toolIDs []string) error {
	return c.do(ctx, http.MethodPatch, "/v1/convai/agents/"+url.PathEscape(id), apiKey, spec.body(toolIDs), nil)
}

// DeleteAgent removes an agent; one that is already gone is fine.
func (c *Client) DeleteAgent(ctx context.Context, apiKey, id string) error {
	return ignoreNotFound(c.do(ctx, http.MethodDelete, "/v1/convai/agents/"+url.PathEscape(id), apiKey, nil, nil))
}

// CreateTool creates a workspace tool ({"tool_config": ...}) and returns its id.
func (c *Client) CreateTool(ctx context.Context, apiKey string, tool map[string]any) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/convai/tools", apiKey, tool, &out); err != nil {
		return "", err
	}
	if out.ID == "" {
		return "", fmt.Errorf("%w: create tool returned no id", ErrProvider)
	}
	return out.ID, nil
}

// UpdateTool replaces a tool's configuration.
func (c *Client) UpdateTool(ctx context.Context, apiKey, id string, tool map[string]any) error {
	return c.do(ctx, http.MethodPatch, "/v1/convai/tools/"+url.PathEscape(id), apiKey, tool, nil)
}

// DeleteTool removes a tool; one that is already gone is fine. force also takes it
// off any agent still using it.
func (c *Client) DeleteTool(ctx context.Context, apiKey, id string) error {
	return ignoreNotFound(c.do(ctx, http.MethodDelete, "/v1/convai/tools/"+url.PathEscape(id)+"?force=true", apiKey, nil, nil))
}

// SignedURL asks for a signed websocket URL for a conversation with the agent
// (valid 15 minutes): the only way into a private agent, and it names the host to
// dial.
func (c *Client) SignedURL(ctx context.Context, apiKey, agentID string) (string, error) {
	var out struct {
		SignedURL string `json:"signed_url"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/convai/conversation/get-signed-url?agent_id="+url.QueryEscape(agentID), apiKey, nil, &out); err != nil {
		return "", err
	}
	u, err := url.Parse(out.SignedURL)
	if err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
		return "", fmt.Errorf("%w: get-signed-url returned %q, not a websocket URL", ErrProvider, out.SignedURL)
	}
	return out.SignedURL, nil
}

func ignoreNotFound(err error) error {
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusNotFound {
		return nil
	}
	return err
}

// ConversationInfo is the provider's record of a finished conversation.
type ConversationInfo struct {
	AgentID        string `json:"agent_id"`
	ConversationID string `json:"conversation_id"`
	Status         string `json:"status"` // initiated, in-progress, processing, done, failed
	Transcript     []struct {
		Role           string  `json:"role"`
		Message        *string `json:"message"`
		TimeInCallSecs float64 `json:"time_in_call_secs"`
	} `json:"transcript"`
	Metadata map[string]any `json:"metadata"`
	Analysis *struct {
		CallSuccessful    string `json:"call_successful"` // success, failure, unknown
		TranscriptSummary string `json:"transcript_summary"`
	} `json:"analysis"`
}

// GetConversation reads a conversation and its post-call analysis.
func (c *Client) GetConversation(ctx context.Context, apiKey, id string) (*ConversationInfo, error) {
	var out ConversationInfo
	if err := c.do(ctx, http.MethodGet, "/v1/convai/conversations/"+url.PathEscape(id), apiKey, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StatusError is a non-2xx answer from the provider.
type StatusError struct {
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", ErrProvider, e.Status, e.Body)
}

// Unwrap makes every StatusError an ErrProvider.
func (e *StatusError) Unwrap() error { return ErrProvider }

// Unavailable: the provider failed (5xx), timed out or asked us to slow down; a
// 4xx answer is the provider refusing what we sent, not an outage.
func (e *StatusError) Unavailable() bool {
	return e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests
}

// Refused is the provider's own message when it refused the request (4xx), for
// the customer to read; "" otherwise.
func (e *StatusError) Refused() string {
	if e.Unavailable() {
		return ""
	}
	if m := providerMessage([]byte(e.Body)); m != "" {
		return m
	}
	return fmt.Sprintf("HTTP %d", e.Status)
}

// providerMessage reads the provider's error body: {"detail": "text"},
// {"detail": {"status", "message"}} or FastAPI's {"detail": [{loc, msg, type}]}.
func providerMessage(body []byte) string {
	var v struct {
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &v) != nil || len(v.Detail) == 0 {
		return strings.TrimSpace(string(body))
	}
	var s string
	if json.Unmarshal(v.Detail, &s) == nil {
		return s
	}
	var o struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if json.Unmarshal(v.Detail, &o) == nil && (o.Message != "" || o.Status != "") {
		if o.Message != "" {
			return o.Message
		}
		return o.Status
	}
	var list []struct {
		Loc []any  `json:"loc"`
		Msg string `json:"msg"`
	}
	if json.Unmarshal(v.Detail, &list) == nil && len(list) > 0 {
		parts := make([]string, 0, len(list))
		for _, d := range list {
			loc := make([]string, 0, len(d.Loc))
			for _, l := range d.Loc {
				if s := fmt.Sprint(l); s != "body" {
					loc = append(loc, s)
				}
			}
			parts = append(parts, strings.Join(loc, ".")+": "+d.Msg)
		}
		sort.Strings(parts)
		return strings.Join(parts, "; ")
	}
	return strings.TrimSpace(string(v.Detail))
}

func (c *Client) do(ctx context.Context, method, path, apiKey string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("xi-api-key", apiKey)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrProvider, method, strings.SplitN(path, "?", 2)[0], err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrProvider, method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return &StatusError{Status: resp.StatusCode, Body: strings.TrimSpace(string(raw[:min(len(raw), 2048)]))}
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%w: %s %s: bad JSON: %w", ErrProvider, method, path, err)
		}
	}
	return nil
}
