package contract

import (
	"testing"
)

// TestContract: messages as the contract describes them pass; an invented field,
// a wrong type, a missing field or an unknown type fails.
func TestContract(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		client bool
		msg    string
		ok     bool
	}{
		{"user audio", true, `{"user_audio_chunk":"AAEC"}`, true},
		{"user audio not base64", true, `{"user_audio_chunk":"!!"}`, false},
		{"pong", true, `{"type":"pong","event_id":3}`, true},
		{"pong with an invented field", true, `{"type":"pong","event_id":3,"ping_ms":4}`, false},
		{"user_message", true, `{"type":"user_message","text":"The caller entered 1234# on the keypad."}`, true},
		{"user_message null text", true, `{"type":"user_message","text":null}`, true},
		{"contextual_update without text", true, `{"type":"contextual_update"}`, false},
		{"client_tool_result", true, `{"type":"client_tool_result","tool_call_id":"t","result":"ok","is_error":false}`, true},
		{"client_tool_result result not a string", true, `{"type":"client_tool_result","tool_call_id":"t","result":{"a":1},"is_error":false}`, false},
		{"initiation", true, `{"type":"conversation_initiation_client_data","conversation_config_override":{"agent":{"first_message":""}},"dynamic_variables":{"a":"b"}}`, true},
		{"initiation invented override", true, `{"type":"conversation_initiation_client_data","conversation_config_override":{"agent":{"greeting":""}}}`, false},
		{"unknown client type", true, `{"type":"dtmf","digit":"1"}`, false},
		{"audio", false, `{"type":"audio","audio_event":{"audio_base_64":"AAEC","event_id":1}}`, true},
		{"audio without event_id", false, `{"type":"audio","audio_event":{"audio_base_64":"AAEC"}}`, false},
		{"interruption", false, `{"type":"interruption","interruption_event":{"event_id":4}}`, true},
		{"error with nulls", false, `{"type":"error","error_event":{"code":1008,"message":"x","error_type":"invalid_message","reason":"x","debug_message":null,"details":null}}`, true},
		{"error bad code", false, `{"type":"error","error_event":{"code":4000}}`, false},
		{"metadata bad format", false, `{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":{"conversation_id":"c","agent_output_audio_format":"mp3","user_input_audio_format":"ulaw_8000"}}`, false},
		{"agent_tool_response", false, `{"type":"agent_tool_response","agent_tool_response":{"tool_name":"end_call","tool_call_id":"x","tool_type":"system","is_error":false,"is_called":true,"event_id":2}}`, true},
	} {
		check := c.Server
		if tc.client {
			check = c.Client
		}
		err := check([]byte(tc.msg))
		if (err == nil) != tc.ok {
			t.Errorf("%s: ok=%v, err=%v", tc.name, tc.ok, err)
		}
	}
}

// TestChecker: the asynchronous checker sees every message and reports the bad ones.
func TestChecker(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	k := c.Checker()
	for range 100 {
		k.Check(true, []byte(`{"user_audio_chunk":"AAEC"}`))
	}
	k.Check(true, []byte(`{"type":"pong","event_id":1,"invented":true}`))
	k.Check(false, []byte(`{"type":"ping","ping_event":{"event_id":1,"ping_ms":null}}`))
	if errs := k.Close(); len(errs) != 1 {
		t.Fatalf("errors %v, want the one with the invented field", errs)
	}
}
