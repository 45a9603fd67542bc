package store

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Audio formats an agent talks with the provider in (config.audio_format).
const (
	FormatULaw8000 = "ulaw_8000"
	FormatPCM16000 = "pcm_16000"
)

// Defaults of an agent's config.
const (
	DefaultMaxCallDuration = 600
	DefaultChunkMS         = 20
	DefaultInterDigitMS    = 2000
)

// KeypadMode is how keypad digits reach the agent (config.keypad.mode).
type KeypadMode string

// Keypad modes.
const (
	KeypadUserMessage      KeypadMode = "user_message"      // one user turn per entry (the default): the agent answers it
	KeypadContextualUpdate KeypadMode = "contextual_update" // background context the agent does not answer
	KeypadOff              KeypadMode = "off"               // not sent
)

// KeypadModes lists every keypad mode, for validation and the API document.
var KeypadModes = []string{string(KeypadUserMessage), string(KeypadContextualUpdate), string(KeypadOff)}

// TransferMode is how a transfer hands the caller over (config.transfer.mode).
type TransferMode string

// Transfer modes.
const (
	TransferRefer  TransferMode = "refer"  // a SIP REFER to the trunk (the default)
	TransferBridge TransferMode = "bridge" // an outbound call through the trunk, bridged by the gateway
)

// TurnDetection is how an OpenAI Realtime agent knows the caller finished
// speaking (config.turn_detection).
type TurnDetection string

// Turn detections.
const (
	TurnServerVAD   TurnDetection = "server_vad"   // silence after speech (the default)
	TurnSemanticVAD TurnDetection = "semantic_vad" // a model judges whether the caller is done
)

// AgentConfig is the typed form of an agent's `config` object, decoded once
// (DecodeAgentConfig) with its defaults applied.
type AgentConfig struct {
	Temperature     *float64
	MaxCallDuration int    // seconds
	AudioFormat     string // ulaw_8000 (default) or pcm_16000
	ChunkMS         int    // user_audio_chunk size in ms (20 default)
	Transfer        TransferConfig
	Keypad          KeypadConfig
	TurnDetection   TurnDetection // OpenAI Realtime agents (default server_vad)
	Bot             BotConfig     // agents whose provider is your own bot (mediastream)
}

// BotConfig is config.bot: where an agent's own bot listens, and the custom
// parameters its start message carries.
type BotConfig struct {
	URL        string            // ws:// or wss://
	Parameters map[string]string // start.customParameters, besides the gateway's own
}

// KeypadConfig is config.keypad: digits are collected until # or a pause of
// InterDigitMS, then sent as one message.
type KeypadConfig struct {
	Mode         KeypadMode
	InterDigitMS int
}

// TransferConfig is config.transfer.
type TransferConfig struct {
	Mode             TransferMode
	FallbackToBridge bool
	Destinations     []TransferDestination
}

// TransferDestination is one place the agent may hand a caller to.
type TransferDestination struct {
	Number    string // E.164 or sip: URI
	Condition string
	Label     string
}

// ConfigError is what is wrong with an agent's config object, naming the field.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

func configErr(format string, args ...any) error {
	return &ConfigError{Msg: fmt.Sprintf(format, args...)}
}

// DefaultAgentConfig is the config of an agent that sets nothing.
func DefaultAgentConfig() AgentConfig {
	return AgentConfig{MaxCallDuration: DefaultMaxCallDuration, AudioFormat: FormatULaw8000, ChunkMS: DefaultChunkMS, TurnDetection: TurnServerVAD,
		Transfer: TransferConfig{Mode: TransferRefer}, Keypad: KeypadConfig{Mode: KeypadUserMessage, InterDigitMS: DefaultInterDigitMS}}
}

// DecodeAgentConfig reads an agent's config object (as JSON decodes it): only
// known keys, with typed and bounded values; defaults for what it leaves out. An
// error is a *ConfigError that names the field.
func DecodeAgentConfig(m map[string]any) (AgentConfig, error) {
	c := DefaultAgentConfig()
	for k, v := range m {
		field := "config." + k
		switch k {
		case "temperature":
			n, ok := v.(float64)
			if !ok || n < 0 || n > 2 {
				return c, configErr("%s: must be a number between 0 and 2", field)
			}
			c.Temperature = &n
		case "max_call_duration_seconds":
			n, ok := wholeNumber(v)
			if !ok || n < 10 || n > 14400 {
				return c, configErr("%s: must be an integer between 10 and 14400", field)
			}
			c.MaxCallDuration = n
		case "audio_format":
			s, _ := v.(string)
			if err := oneOf(field, s, FormatULaw8000, FormatPCM16000); err != nil {
				return c, err
			}
			c.AudioFormat = s
		case "user_audio_chunk_ms":
			n, ok := wholeNumber(v)
			if !ok || n < 20 || n > 1000 || n%20 != 0 {
				return c, configErr("%s: must be a multiple of 20 between 20 and 1000", field)
			}
			c.ChunkMS = n
		case "transfer":
			if err := c.Transfer.decode(v); err != nil {
				return c, err
			}
		case "keypad":
			if err := c.Keypad.decode(v); err != nil {
				return c, err
			}
		case "bot":
			if err := c.Bot.decode(v); err != nil {
				return c, err
			}
		case "turn_detection":
			s, _ := v.(string)
			if err := oneOf(field, s, string(TurnServerVAD), string(TurnSemanticVAD)); err != nil {
				return c, err
			}
			c.TurnDetection = TurnDetection(s)
		default:
			return c, configErr("%s: unknown field (known: temperature, max_call_duration_seconds, audio_format, user_audio_chunk_ms, transfer, keypad, turn_detection, bot)", field)
		}
	}
	return c, c.Validate()
}

// Validate checks a config built in code (DecodeAgentConfig checks each field
// of one read from JSON as it reads it).
func (c AgentConfig) Validate() error {
	switch {
	case c.MaxCallDuration <= 0:
		return configErr("config.max_call_duration_seconds: must be positive")
	case c.ChunkMS <= 0 || c.ChunkMS%20 != 0:
		return configErr("config.user_audio_chunk_ms: must be a positive multiple of 20")
	case c.AudioFormat != FormatULaw8000 && c.AudioFormat != FormatPCM16000:
		return configErr("config.audio_format: must be one of %s, %s", FormatULaw8000, FormatPCM16000)
	case c.Keypad.InterDigitMS <= 0:
		return configErr("config.keypad.inter_digit_timeout_ms: must be positive")
	case !slices.Contains(KeypadModes, string(c.Keypad.Mode)):
		return configErr("config.keypad.mode: must be one of %s", strings.Join(KeypadModes, ", "))
	case c.Transfer.Mode != TransferRefer && c.Transfer.Mode != TransferBridge:
		return configErr("config.transfer.mode: must be refer or bridge")
	}
	return nil
}

// ParseAgentConfig reads a stored config object (validated when it was
// written), applying defaults; a value it cannot read keeps its default, and
// numbers are taken as they are (tests store short durations).
func ParseAgentConfig(m map[string]any) AgentConfig {
	if c, err := DecodeAgentConfig(m); err == nil {
		return c
	}
	c := DefaultAgentConfig()
	if k, ok := m["keypad"].(map[string]any); ok {
		if v, ok := k["mode"].(string); ok && slices.Contains(KeypadModes, v) {
			c.Keypad.Mode = KeypadMode(v)
		}
		if v, ok := k["inter_digit_timeout_ms"].(float64); ok && v > 0 {
			c.Keypad.InterDigitMS = int(v)
		}
	}
	if v, ok := m["temperature"].(float64); ok {
		c.Temperature = &v
	}
	if v, ok := m["max_call_duration_seconds"].(float64); ok && v > 0 {
		c.MaxCallDuration = int(v)
	}
	if v, ok := m["audio_format"].(string); ok && (v == FormatULaw8000 || v == FormatPCM16000) {
		c.AudioFormat = v
	}
	if v, ok := m["user_audio_chunk_ms"].(float64); ok && v > 0 {
		c.ChunkMS = int(v)
	}
	if v, ok := m["bot"]; ok {
		var b BotConfig
		if b.decode(v) == nil {
			c.Bot = b
		}
	}
	if v, ok := m["turn_detection"].(string); ok && (v == string(TurnServerVAD) || v == string(TurnSemanticVAD)) {
		c.TurnDetection = TurnDetection(v)
	}
	if t, ok := m["transfer"].(map[string]any); ok {
		var tc TransferConfig
		if tc.decode(t) == nil {
			if tc.Mode == "" {
				tc.Mode = TransferRefer
			}
			c.Transfer = tc
		}
	}
	return c
}

func (b *BotConfig) decode(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return configErr("config.bot: must be an object")
	}
	for k, bv := range m {
		switch k {
		case "url":
			s, _ := bv.(string)
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" || len(s) > 2000 {
				return configErr("config.bot.url: must be a ws:// or wss:// URL")
			}
			b.URL = s
		case "parameters":
			pm, ok := bv.(map[string]any)
			if !ok || len(pm) > 20 {
				return configErr("config.bot.parameters: must be an object of at most 20 strings")
			}
			b.Parameters = map[string]string{}
			for pk, pv := range pm {
				s, ok := pv.(string)
				if !ok || len(pk) == 0 || len(pk) > 64 || len(s) > 1000 || strings.HasPrefix(pk, "cxco_") {
					return configErr("config.bot.parameters.%s: must be a string of at most 1000 characters under a name of 1-64 characters not starting cxco_", pk)
				}
				b.Parameters[pk] = s
			}
		default:
			return configErr("config.bot.%s: unknown field (known: url, parameters)", k)
		}
	}
	if b.URL == "" {
		return configErr("config.bot.url: required")
	}
	return nil
}

func (t *TransferConfig) decode(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return configErr("config.transfer: must be an object")
	}
	for k, tv := range m {
		switch k {
		case "mode":
			s, _ := tv.(string)
			if err := oneOf("config.transfer.mode", s, string(TransferRefer), string(TransferBridge)); err != nil {
				return err
			}
			t.Mode = TransferMode(s)
		case "fallback_to_bridge":
			b, ok := tv.(bool)
			if !ok {
				return configErr("config.transfer.fallback_to_bridge: must be true or false")
			}
			t.FallbackToBridge = b
		case "destinations":
			list, ok := tv.([]any)
			if !ok {
				return configErr("config.transfer.destinations: must be an array")
			}
			if len(list) > 20 {
				return configErr("config.transfer.destinations: at most 20")
			}
			t.Destinations = make([]TransferDestination, 0, len(list))
			for i, d := range list {
				dest, err := decodeDestination(i, d)
				if err != nil {
					return err
				}
				t.Destinations = append(t.Destinations, dest)
			}
		default:
			return configErr("config.transfer.%s: unknown field (known: mode, fallback_to_bridge, destinations)", k)
		}
	}
	return nil
}

func decodeDestination(i int, d any) (TransferDestination, error) {
	m, ok := d.(map[string]any)
	prefix := fmt.Sprintf("config.transfer.destinations[%d]", i)
	if !ok {
		return TransferDestination{}, configErr("%s: must be an object", prefix)
	}
	for k := range m {
		if k != "number" && k != "condition" && k != "label" {
			return TransferDestination{}, configErr("%s.%s: unknown field (known: number, condition, label)", prefix, k)
		}
	}
	var td TransferDestination
	td.Number, _ = m["number"].(string)
	if !ValidDestination(td.Number) {
		return td, configErr("%s.number: %q must be an E.164 number or a sip: URI", prefix, td.Number)
	}
	td.Condition, _ = m["condition"].(string)
	if strings.TrimSpace(td.Condition) == "" || len(td.Condition) > 1000 {
		return td, configErr("%s.condition: required, at most 1000 characters", prefix)
	}
	if l, present := m["label"]; present {
		s, ok := l.(string)
		if !ok || len(s) > 100 {
			return td, configErr("%s.label: must be a string of at most 100 characters", prefix)
		}
		td.Label = s
	}
	return td, nil
}

func (k *KeypadConfig) decode(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return configErr("config.keypad: must be an object")
	}
	for key, kv := range m {
		switch key {
		case "mode":
			s, _ := kv.(string)
			if err := oneOf("config.keypad.mode", s, KeypadModes...); err != nil {
				return err
			}
			k.Mode = KeypadMode(s)
		case "inter_digit_timeout_ms":
			n, ok := wholeNumber(kv)
			if !ok || n < 200 || n > 10000 {
				return configErr("config.keypad.inter_digit_timeout_ms: must be an integer between 200 and 10000")
			}
			k.InterDigitMS = n
		default:
			return configErr("config.keypad.%s: unknown field (known: mode, inter_digit_timeout_ms)", key)
		}
	}
	return nil
}

func wholeNumber(v any) (int, bool) {
	n, ok := v.(float64)
	if !ok || n != math.Trunc(n) || math.Abs(n) > 1e9 {
		return 0, false
	}
	return int(n), true
}

func oneOf(field, s string, allowed ...string) error {
	if !slices.Contains(allowed, s) {
		return configErr("%s: must be one of %s (got %q)", field, strings.Join(allowed, ", "), s)
	}
	return nil
}

var e164Pattern = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// NormalizeE164 accepts "+27211234567" (spaces, dashes, dots and brackets
// ignored) and returns it in E.164 form, or false.
func NormalizeE164(s string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			b.WriteRune(r)
		}
	}
	n := b.String()
	return n, e164Pattern.MatchString(n)
}

// ValidDestination accepts an E.164 number or a sip:/sips: URI with a host.
func ValidDestination(s string) bool {
	if _, ok := NormalizeE164(s); ok && strings.HasPrefix(s, "+") {
		return true
	}
	lower := strings.ToLower(s)
	if !strings.HasPrefix(lower, "sip:") && !strings.HasPrefix(lower, "sips:") {
		return false
	}
	rest := s[strings.IndexByte(s, ':')+1:]
	if strings.ContainsAny(rest, " <>\"") {
		return false
	}
	host := rest
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if at == 0 {
			return false
		}
		host = rest[at+1:]
	}
	host, _, _ = strings.Cut(host, ";")
	u, err := url.Parse("sip://" + host)
	return err == nil && u.Hostname() != ""
}
