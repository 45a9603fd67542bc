// Package bridge connects one answered call to the voice-AI provider and records
// what happened; it also holds the provider's REST client and simulator.
package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client speaks the provider's REST API (the ElevenLabs Conversational AI API).
type Client struct {
	BaseURL string
	HTTP    *http.Client
}

// NewClient makes a REST client for base (e.g. https://api.elevenlabs.io).
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

// Transfer is one destination of the transfer_to_number tool.
type Transfer struct {
	Number    string `json:"phone_number"`
	Condition string `json:"condition"`
}

// ClientEvents are the server events the gateway needs (the provider's default leaves
// out tool calls and corrections).
var ClientEvents = []string{"conversation_initiation_metadata", "audio", "interruption", "user_transcript",
	"agent_response", "agent_response_correction", "client_tool_call", "agent_tool_response", "ping"}

func (s AgentSpec) body() map[string]any {
	prompt := map[string]any{"prompt": s.Prompt}
	if s.Temperature != nil {
		prompt["temperature"] = *s.Temperature
	}
	tools := map[string]any{
		"end_call": map[string]any{"type": "system", "name": "end_call", "description": "",
			"params": map[string]any{"system_tool_type": "end_call"}},
	}
	if len(s.Transfers) > 0 {
		tools["transfer_to_number"] = map[string]any{"type": "system", "name": "transfer_to_number", "description": "",
			"params": map[string]any{"system_tool_type": "transfer_to_number", "transfers": s.Transfers}}
	}
	prompt["built_in_tools"] = tools
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
			"tts":          map[string]any{"voice_id": s.VoiceID, "agent_output_audio_format": s.AudioFormat},
			"conversation": conv,
		},
		"platform_settings": map[string]any{
			"overrides": map[string]any{
				"conversation_config_override": map[string]any{
					"agent": map[string]any{"prompt": map[string]any{"prompt": true}, "first_message": true, "language": true},
					"tts":   map[string]any{"voice_id": true},
				},
				"custom_llm_extra_body": true,
			},
		},
	}
}

// CreateAgent creates an agent and returns the provider's agent id.
func (c *Client) CreateAgent(ctx context.Context, apiKey string, spec AgentSpec) (string, error) {
	var out struct {
		AgentID string `json:"agent_id"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/convai/agents/create", apiKey, spec.body(), &out); err != nil {
		return "", err
	}
	if out.AgentID == "" {
		return "", fmt.Errorf("%w: create agent returned no agent_id", ErrProvider)
	}
	return out.AgentID, nil
}

// UpdateAgent pushes a changed agent.
func (c *Client) UpdateAgent(ctx context.Context, apiKey, id string, spec AgentSpec) error {
	return c.do(ctx, http.MethodPatch, "/v1/convai/agents/"+id, apiKey, spec.body(), nil)
}

// DeleteAgent removes an agent; one that is already gone is fine.
func (c *Client) DeleteAgent(ctx context.Context, apiKey, id string) error {
	err := c.do(ctx, http.MethodDelete, "/v1/convai/agents/"+id, apiKey, nil, nil)
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
	if err := c.do(ctx, http.MethodGet, "/v1/convai/conversations/"+id, apiKey, nil, &out); err != nil {
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
		return fmt.Errorf("%w: %s %s: %w", ErrProvider, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrProvider, method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return &StatusError{Status: resp.StatusCode, Body: strings.TrimSpace(string(raw[:min(len(raw), 512)]))}
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%w: %s %s: bad JSON: %w", ErrProvider, method, path, err)
		}
	}
	return nil
}
