package elevenlabssim

import (
	"fmt"
	"strings"
	"time"
)

// events is a set of server event types a client asked for
// (conversation_config.conversation.client_events).
type events uint16

const (
	evAudio events = 1 << iota
	evInterruption
	evAgentResponse
	evUserTranscript
	evPing
	evCorrection
	evToolCall
	evAgentToolResponse
)

var eventNames = map[string]events{
	"audio": evAudio, "interruption": evInterruption, "agent_response": evAgentResponse,
	"user_transcript": evUserTranscript, "ping": evPing, "agent_response_correction": evCorrection,
	"client_tool_call": evToolCall, "agent_tool_response": evAgentToolResponse,
}

// defaultEvents is the AsyncAPI's default when an agent names none
// (ConversationConfigOverride.client_events: audio, interruption, agent_response,
// user_transcript, tentative_user_transcript, conversation_initiation_metadata,
// ping): no tool calls, no tool responses, no corrections.
const defaultEvents = evAudio | evInterruption | evAgentResponse | evUserTranscript | evPing

// clientTool is a `type: "client"` tool of the agent (from prompt.tool_ids).
type clientTool struct {
	name    string
	params  map[string]any // its parameters schema
	timeout time.Duration  // response_timeout_secs (ClientToolConfigInput; 20 s when unset)
	expects bool           // expects_response
}

// settings is what a conversation needs of its agent, copied when it starts.
type settings struct {
	firstMessage string
	in, out      format
	badFormat    string // an audio format the simulator does not speak
	maxDuration  time.Duration
	events       events
	overrides    map[string]any // platform_settings.overrides
	private      bool           // platform_settings.auth.enable_auth
	endCall      bool           // built_in_tools.end_call is set
	tools        []clientTool
}

// settingsLocked reads an agent's settings; the caller holds s.mu (tools are read too).
func (s *Server) settingsLocked(a *Agent) settings {
	cfg := a.Config
	st := settings{events: defaultEvents}
	if v := stringAt(cfg, "agent", "first_message"); v != nil {
		st.firstMessage = *v
	}
	var ok bool
	name := deref(stringAt(cfg, "asr", "user_input_audio_format"))
	if st.in, ok = parseFormat(name); !ok {
		st.in, st.badFormat = ulaw8000, name
	}
	name = deref(stringAt(cfg, "tts", "agent_output_audio_format"))
	if st.out, ok = parseFormat(name); !ok {
		st.out, st.badFormat = ulaw8000, name
	}
	if n, ok := valueAt(cfg, "conversation", "max_duration_seconds").(float64); ok && n > 0 {
		st.maxDuration = time.Duration(n * float64(time.Second))
	}
	if list, ok := valueAt(cfg, "conversation", "client_events").([]any); ok {
		st.events = 0
		for _, v := range list {
			if s, ok := v.(string); ok {
				st.events |= eventNames[s]
			}
		}
	}
	if o, ok := valueAt(a.Platform, "overrides").(map[string]any); ok {
		st.overrides = cloneMap(o)
	}
	st.private = valueAt(a.Platform, "auth", "enable_auth") == true
	st.endCall = valueAt(cfg, "agent", "prompt", "built_in_tools", "end_call") != nil
	for _, v := range asList(valueAt(cfg, "agent", "prompt", "tool_ids")) {
		id, _ := v.(string)
		t, ok := s.tools[id]
		if !ok || t.Config["type"] != "client" {
			continue
		}
		ct := clientTool{name: deref(stringAt(t.Config, "name")), timeout: 20 * time.Second, expects: true}
		ct.params, _ = t.Config["parameters"].(map[string]any)
		if n, ok := t.Config["response_timeout_secs"].(float64); ok && n > 0 {
			ct.timeout = time.Duration(n * float64(time.Second))
		}
		if e, ok := t.Config["expects_response"].(bool); ok {
			ct.expects = e
		}
		st.tools = append(st.tools, ct)
	}
	return st
}

func valueAt(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func stringAt(m map[string]any, path ...string) *string {
	if s, ok := valueAt(m, path...).(string); ok {
		return &s
	}
	return nil
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch t := v.(type) {
		case map[string]any:
			v = cloneMap(t)
		case []any:
			l := make([]any, len(t))
			for i, x := range t {
				if mm, ok := x.(map[string]any); ok {
					x = cloneMap(mm)
				}
				l[i] = x
			}
			v = l
		}
		out[k] = v
	}
	return out
}

// keypad is the keypad characters (0-9, *, #) a text mentions, in order: how the
// test hooks read a user turn that reports key presses, whatever its wording.
func keypad(text string) string {
	var b strings.Builder
	for _, r := range text {
		if r >= '0' && r <= '9' || r == '*' || r == '#' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// substitute fills {{name}} placeholders from the dynamic variables; unknown
// ones stay as they are.
func substitute(text string, vars map[string]any) string {
	if len(vars) == 0 || !strings.Contains(text, "{{") {
		return text
	}
	for k, v := range vars {
		text = strings.ReplaceAll(text, "{{"+k+"}}", fmt.Sprint(v))
	}
	return text
}

// truncate is what the caller heard of text when a fraction of its audio had
// played: whole words, with "..." when cut.
func truncate(text string, frac float64) string {
	r := []rune(text)
	k := int(frac * float64(len(r)))
	if k >= len(r) {
		return text
	}
	cut := strings.LastIndexByte(string(r[:k+1]), ' ')
	if cut <= 0 {
		return ""
	}
	return strings.TrimRight(string(r[:k+1])[:cut], " ,.;:!?") + "..."
}
