package elevenlabs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/cxco/gateway/bridge/internal/b64"
)

// The ElevenLabs Conversational AI websocket protocol, as much as the gateway uses.

// serverEvent is one message from the provider. Only the payload of its type is set.
type serverEvent struct {
	Type string `json:"type"`
	Meta *struct {
		ConversationID         string `json:"conversation_id"`
		AgentOutputAudioFormat string `json:"agent_output_audio_format"`
		UserInputAudioFormat   string `json:"user_input_audio_format"`
	} `json:"conversation_initiation_metadata_event"`
	UserTranscript *struct {
		Text string `json:"user_transcript"`
	} `json:"user_transcription_event"`
	AgentResponse *struct {
		Text string `json:"agent_response"`
	} `json:"agent_response_event"`
	Correction *struct {
		Original  string `json:"original_agent_response"`
		Corrected string `json:"corrected_agent_response"`
	} `json:"agent_response_correction_event"`
	Interruption *struct {
		EventID int64 `json:"event_id"`
	} `json:"interruption_event"`
	Ping *struct {
		EventID int64  `json:"event_id"`
		PingMS  *int64 `json:"ping_ms"`
	} `json:"ping_event"`
	ToolCall *struct {
		ToolName   string         `json:"tool_name"`
		ToolCallID string         `json:"tool_call_id"`
		Parameters map[string]any `json:"parameters"`
	} `json:"client_tool_call"`
	AgentToolResponse *struct {
		ToolName   string `json:"tool_name"`
		ToolCallID string `json:"tool_call_id"`
		ToolType   string `json:"tool_type"`
		IsError    bool   `json:"is_error"`
	} `json:"agent_tool_response"`
	Error *struct {
		Code      int    `json:"code"`
		Message   string `json:"message"`
		ErrorType string `json:"error_type"`
	} `json:"error_event"`
}

var (
	audioKey   = []byte(`"audio_base_64"`)
	eventIDKey = []byte(`"event_id"`)
	typeAudio  = []byte(`"audio_event"`)
)

// parseAudio is the fast path for the most frequent message, `audio`: it decodes
// the base64 audio into dst (grown as needed) without building the event, and
// returns the audio, its event_id, and ok=false when msg is not an audio event.
func parseAudio(msg, dst []byte) (audio []byte, eventID int64, ok bool) {
	if !bytes.Contains(msg, typeAudio) {
		return nil, 0, false
	}
	i := bytes.Index(msg, audioKey)
	if i < 0 {
		return nil, 0, false
	}
	rest := msg[i+len(audioKey):]
	q := bytes.IndexByte(rest, '"')
	if q < 0 {
		return nil, 0, false
	}
	rest = rest[q+1:]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil, 0, false
	}
	b64 := rest[:end]
	need := base64.StdEncoding.DecodedLen(len(b64))
	if cap(dst) < need {
		dst = make([]byte, need)
	}
	n, err := base64.StdEncoding.Decode(dst[:need], b64)
	if err != nil {
		return nil, 0, false
	}
	if j := bytes.Index(msg, eventIDKey); j >= 0 {
		num := bytes.TrimLeft(msg[j+len(eventIDKey):], ": ")
		k := 0
		for k < len(num) && num[k] >= '0' && num[k] <= '9' {
			k++
		}
		eventID, _ = strconv.ParseInt(string(num[:k]), 10, 64)
	}
	return dst[:n], eventID, true
}

// appendAudioChunk builds {"user_audio_chunk":"<base64>"} into buf.
func appendAudioChunk(buf, audio []byte) []byte {
	buf = append(buf[:0], `{"user_audio_chunk":"`...)
	n := b64.EncodedLen(len(audio))
	start := len(buf)
	buf = slices.Grow(buf, n+2)[:start+n]
	b64.Encode(buf[start:], audio)
	return append(buf, `"}`...)
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func pongMsg(eventID int64) []byte {
	return []byte(`{"type":"pong","event_id":` + strconv.FormatInt(eventID, 10) + `}`)
}

func contextualUpdate(text string) []byte {
	return mustMarshal(map[string]any{"type": "contextual_update", "text": text})
}

// userMessage is a user turn in text (the agent answers it).
func userMessage(text string) []byte {
	return mustMarshal(map[string]any{"type": "user_message", "text": text})
}

func toolResult(id, result string, isError bool) []byte {
	return mustMarshal(map[string]any{"type": "client_tool_result", "tool_call_id": id, "result": result, "is_error": isError})
}
