package contract

import (
	"strings"
	"testing"
)

// TestContract: the schemas load, and an invented field, a wrong type or an
// unknown event fails while the published shapes pass.
func TestContract(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, msg string
		client    bool
		ok        bool
	}{
		{"append", `{"type":"input_audio_buffer.append","audio":"AAAA"}`, true, true},
		{"append not base64", `{"type":"input_audio_buffer.append","audio":"!!"}`, true, false},
		{"session.update", `{"type":"session.update","session":{"type":"realtime","instructions":"x","audio":{"input":{"format":{"type":"audio/pcmu"},"turn_detection":{"type":"semantic_vad"}},"output":{"format":{"type":"audio/pcmu"},"voice":"marin"}},"tools":[{"type":"function","name":"end_call","parameters":{"type":"object"}}]}}`, true, true},
		{"invented field", `{"type":"session.update","session":{"type":"realtime","temperature":0.7}}`, true, false},
		{"beta format name", `{"type":"session.update","session":{"type":"realtime","audio":{"input":{"format":"g711_ulaw"}}}}`, true, false},
		{"truncate", `{"type":"conversation.item.truncate","item_id":"i","content_index":0,"audio_end_ms":1200}`, true, true},
		{"truncate without ms", `{"type":"conversation.item.truncate","item_id":"i","content_index":0}`, true, false},
		{"unknown event", `{"type":"conversation.reset"}`, true, false},
		{"function output", `{"type":"conversation.item.create","item":{"type":"function_call_output","call_id":"c","output":"ok"}}`, true, true},
		{"delta", `{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"AAAA"}`, false, true},
		{"speech started without item", `{"type":"input_audio_buffer.speech_started","event_id":"e","audio_start_ms":10}`, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := c.Server
			if tc.client {
				check = c.Client
			}
			err := check([]byte(tc.msg))
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "event") {
				t.Fatalf("unclear error: %v", err)
			}
		})
	}
}
