package providersim

import (
	"fmt"
	"regexp"
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
)

var eventNames = map[string]events{
	"audio": evAudio, "interruption": evInterruption, "agent_response": evAgentResponse,
	"user_transcript": evUserTranscript, "ping": evPing, "agent_response_correction": evCorrection,
	"client_tool_call": evToolCall,
}

// defaultEvents is the real service's default when an agent names none: no tool
// calls and no corrections.
const defaultEvents = evAudio | evInterruption | evAgentResponse | evUserTranscript | evPing

// settings is what a conversation needs of its agent, copied when it starts.
type settings struct {
	firstMessage string
	in, out      format
	badFormat    string // an audio format the simulator does not speak
	transferTo   string // the transfer_to_number tool's first destination
	maxDuration  time.Duration
	events       events
	overrides    map[string]any // platform_settings.overrides
}

func settingsOf(a *Agent) settings {
	cfg := a.Config
	st := settings{events: defaultEvents}
	if s := stringAt(cfg, "agent", "first_message"); s != nil {
		st.firstMessage = *s
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
	if ts, ok := valueAt(cfg, "agent", "prompt", "built_in_tools", "transfer_to_number", "params", "transfers").([]any); ok && len(ts) > 0 {
		if t, ok := ts[0].(map[string]any); ok {
			for _, s := range []*string{stringAt(t, "phone_number"), stringAt(t, "transfer_destination", "phone_number"),
				stringAt(t, "transfer_destination", "sip_uri")} {
				if s != nil && *s != "" {
					st.transferTo = *s
					break
				}
			}
		}
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

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if mm, ok := v.(map[string]any); ok {
			v = cloneMap(mm)
		}
		out[k] = v
	}
	return out
}

// digitRE finds a keypad digit mentioned in a contextual update. The gateway
// sends "The caller pressed the key # on the keypad."; "pressed 5", "digit: *",
// "DTMF 0" and the like work too.
var digitRE = regexp.MustCompile(`(?i)\b(?:press(?:ed|es|ing)?|digit|dtmf|key|keypad|button|tone|enter(?:ed)?|typed|dial(?:l?ed)?)\b\D{0,24}?([0-9#*])`)

// parseDigit returns the first keypad digit text mentions, if any.
func parseDigit(text string) (byte, bool) {
	m := digitRE.FindStringSubmatchIndex(text)
	if m == nil {
		return 0, false
	}
	return text[m[2]], true
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
