package store

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

// How keypad digits reach the agent (config.keypad.mode).
const (
	KeypadUserMessage      = "user_message"      // one user turn per entry (the default): the agent answers it
	KeypadContextualUpdate = "contextual_update" // background context the agent does not answer
	KeypadOff              = "off"               // not sent
)

// KeypadModes lists every keypad mode, for validation.
var KeypadModes = []string{KeypadUserMessage, KeypadContextualUpdate, KeypadOff}

// AgentConfig is the typed form of an agent's `config` object. The control plane
// validates the object; this reads it with defaults applied.
type AgentConfig struct {
	Temperature     *float64
	MaxCallDuration int    // seconds
	AudioFormat     string // ulaw_8000 (default) or pcm_16000
	ChunkMS         int    // user_audio_chunk size in ms (20 default)
	Transfer        TransferConfig
	Keypad          KeypadConfig
}

// KeypadConfig is config.keypad: digits are collected until # or a pause of
// InterDigitMS, then sent as one message.
type KeypadConfig struct {
	Mode         string // KeypadUserMessage (default), KeypadContextualUpdate or KeypadOff
	InterDigitMS int
}

// TransferConfig is config.transfer.
type TransferConfig struct {
	Mode             string // refer (default) or bridge
	FallbackToBridge bool
	Destinations     []TransferDestination
}

// TransferDestination is one place the agent may hand a caller to.
type TransferDestination struct {
	Number    string // E.164 or sip: URI
	Condition string
	Label     string
}

// ParseAgentConfig reads a stored config object, applying defaults.
func ParseAgentConfig(m map[string]any) AgentConfig {
	c := AgentConfig{MaxCallDuration: DefaultMaxCallDuration, AudioFormat: FormatULaw8000, ChunkMS: DefaultChunkMS,
		Transfer: TransferConfig{Mode: "refer"}, Keypad: KeypadConfig{Mode: KeypadUserMessage, InterDigitMS: DefaultInterDigitMS}}
	if k, ok := m["keypad"].(map[string]any); ok {
		if v, ok := k["mode"].(string); ok && v != "" {
			c.Keypad.Mode = v
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
	if v, ok := m["audio_format"].(string); ok && v != "" {
		c.AudioFormat = v
	}
	if v, ok := m["user_audio_chunk_ms"].(float64); ok && v > 0 {
		c.ChunkMS = int(v)
	}
	if t, ok := m["transfer"].(map[string]any); ok {
		if v, ok := t["mode"].(string); ok && v != "" {
			c.Transfer.Mode = v
		}
		if v, ok := t["fallback_to_bridge"].(bool); ok {
			c.Transfer.FallbackToBridge = v
		}
		if ds, ok := t["destinations"].([]any); ok {
			for _, d := range ds {
				dm, _ := d.(map[string]any)
				td := TransferDestination{}
				td.Number, _ = dm["number"].(string)
				td.Condition, _ = dm["condition"].(string)
				td.Label, _ = dm["label"].(string)
				c.Transfer.Destinations = append(c.Transfer.Destinations, td)
			}
		}
	}
	return c
}
