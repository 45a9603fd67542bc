package store

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestDecodeAgentConfig: an agent's config object decodes into its typed form
// with defaults, and every bad value is refused naming its field.
func TestDecodeAgentConfig(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		err        string // a part of the error; "" decodes
		check      func(AgentConfig) bool
	}{
		{name: "empty is the defaults", json: `{}`, check: func(c AgentConfig) bool {
			return c.MaxCallDuration == 600 && c.AudioFormat == FormatULaw8000 && c.ChunkMS == 20 && c.Transfer.Mode == TransferRefer &&
				c.Keypad.Mode == KeypadUserMessage && c.Keypad.InterDigitMS == 2000 && c.Temperature == nil
		}},
		{name: "everything", json: `{"temperature": 0.4, "max_call_duration_seconds": 120, "audio_format": "pcm_16000", "user_audio_chunk_ms": 100,
			"transfer": {"mode": "bridge", "destinations": [{"number": "+27215550100", "condition": "asks for sales", "label": "Sales"}, {"number": "sip:desk@pbx.example.com", "condition": "asks for support"}]},
			"keypad": {"mode": "contextual_update", "inter_digit_timeout_ms": 500}}`, check: func(c AgentConfig) bool {
			return *c.Temperature == 0.4 && c.MaxCallDuration == 120 && c.AudioFormat == FormatPCM16000 && c.ChunkMS == 100 &&
				c.Transfer.Mode == TransferBridge && len(c.Transfer.Destinations) == 2 && c.Transfer.Destinations[0].Label == "Sales" &&
				c.Keypad.Mode == KeypadContextualUpdate && c.Keypad.InterDigitMS == 500
		}},
		{name: "unknown field", json: `{"colour": "red"}`, err: "config.colour: unknown field"},
		{name: "temperature", json: `{"temperature": 3}`, err: "config.temperature"},
		{name: "duration not whole", json: `{"max_call_duration_seconds": 60.5}`, err: "config.max_call_duration_seconds"},
		{name: "format", json: `{"audio_format": "mp3"}`, err: "config.audio_format: must be one of"},
		{name: "chunk", json: `{"user_audio_chunk_ms": 30}`, err: "config.user_audio_chunk_ms"},
		{name: "transfer mode", json: `{"transfer": {"mode": "teleport"}}`, err: "config.transfer.mode"},
		{name: "destination", json: `{"transfer": {"destinations": [{"number": "12345", "condition": "x"}]}}`, err: "config.transfer.destinations[0].number"},
		{name: "condition", json: `{"transfer": {"destinations": [{"number": "+27215550100"}]}}`, err: "config.transfer.destinations[0].condition"},
		{name: "keypad mode", json: `{"keypad": {"mode": "shout"}}`, err: "config.keypad.mode"},
		{name: "keypad pause", json: `{"keypad": {"inter_digit_timeout_ms": 50}}`, err: "config.keypad.inter_digit_timeout_ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal([]byte(tc.json), &m); err != nil {
				t.Fatal(err)
			}
			c, err := DecodeAgentConfig(m)
			if tc.err != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one about %s", err, tc.err)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("decoded %+v, %v", c, err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A stored config that a newer rule refuses still reads, key by key.
	if c := ParseAgentConfig(map[string]any{"max_call_duration_seconds": 1.0, "colour": "red"}); c.MaxCallDuration != 1 || c.AudioFormat != FormatULaw8000 {
		t.Fatalf("lenient read: %+v", c)
	}
}
