package elevenlabssim

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
)

// REST validation, as the real API answers a body it cannot take: 422 with
// FastAPI/pydantic's {"detail": [{loc, msg, type}]}. The shapes below follow the
// request models of the official Python SDK (elevenlabs-python, src/elevenlabs/types,
// generated from the API definition): AgentConfig, PromptAgentApiModelInput,
// BuiltInToolsInput, SystemToolConfigInput(+Params), PhoneNumberTransfer(+
// TransferDestination), TransferTypeEnum, TtsConversationalConfigInput,
// AsrConversationalConfig, ConversationConfig, AgentPlatformSettingsRequestModel,
// ToolRequestModel, ClientToolConfigInput, ObjectJsonSchemaPropertyInput and
// LiteralJsonSchemaProperty; the enums (languages, audio formats, client events)
// are the AsyncAPI contract's.
//
// Stricter than the docs on one point, on purpose: a field the shapes do not know
// is refused (extra_forbidden), so a field name the gateway invents fails a test
// instead of being silently ignored by a lenient service.

// detail is one entry of a 422 body.
type detail struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

func unprocessable(w http.ResponseWriter, errs []detail) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": errs})
}

// badRequest is the 400 the API gives for a config that parses but does not
// work, e.g. "Non-english Agents must use turbo or flash v2_5".
func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"detail": map[string]any{"status": "invalid_conversation_config", "message": msg}})
}

// shape is the expected form of a JSON value.
type shape struct {
	kind     string            // object, array, string, number, integer, boolean, any
	props    map[string]*shape // object: known fields; nil with kind object: any fields
	required []string
	elem     *shape   // array
	enum     []string // string
	nullable bool
	min, max float64 // number, integer: inclusive bounds when max > min
	tag      string  // object: discriminator field choosing one of variants
	variants map[string]*shape
}

func obj(props map[string]*shape, required ...string) *shape {
	return &shape{kind: "object", props: props, required: required}
}
func str() *shape                   { return &shape{kind: "string"} }
func enum(vals ...string) *shape    { return &shape{kind: "string", enum: vals} }
func boolean() *shape               { return &shape{kind: "boolean"} }
func number(lo, hi float64) *shape  { return &shape{kind: "number", min: lo, max: hi} }
func integer(lo, hi float64) *shape { return &shape{kind: "integer", min: lo, max: hi} }
func list(elem *shape) *shape       { return &shape{kind: "array", elem: elem} }
func anyObject() *shape             { return &shape{kind: "object"} }
func null(s *shape) *shape          { c := *s; c.nullable = true; return &c }
func tagged(tag string, v map[string]*shape) *shape {
	return &shape{kind: "object", tag: tag, variants: v}
}

// The AsyncAPI contract's enums.
var (
	languages = strings.Fields(`en ja zh de hi fr ko pt pt-br it es id nl tr pl sv bg ro ar cs el fi ms da ta uk ru hu hr sk
		no vi tl af hy as az be bn bs ca et gl ka gu ha he is ga jv kn kk ky lv lt lb mk ml mr ne ps fa pa sr sd sl so sw te th ur cy`)
	audioFormats = []string{"pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000", "ulaw_8000"}
	clientEvents = strings.Fields(`audio agent_response agent_response_correction agent_chat_response_part agent_reasoning_response_part
		interruption user_transcript tentative_user_transcript conversation_initiation_metadata client_tool_call rich_content
		agent_tool_request agent_tool_response agent_tool_response_full_payload mcp_tool_call mcp_connection_status vad_score ping
		context_usage asr_initiation_metadata guardrail_triggered internal_turn_probability internal_tentative_agent_response
		agent_typing external_agent_connected external_agent_disconnected`)
)

// TTS models an agent can use (TtsConversationalModel). The English-only ones are
// eleven_turbo_v2 and eleven_flash_v2; an agent whose language is not English
// needs a multilingual one (the API answers 400 "Non-english Agents must use
// turbo or flash v2_5" otherwise). With no model_id the agent gets the English
// default, eleven_flash_v2.
var (
	ttsModels        = []string{"eleven_turbo_v2", "eleven_turbo_v2_5", "eleven_flash_v2", "eleven_flash_v2_5", "eleven_multilingual_v2", "eleven_v3_conversational"}
	englishOnlyModel = []string{"eleven_turbo_v2", "eleven_flash_v2"}
)

const defaultTTSModel = "eleven_flash_v2"

// modelFitsLanguage is the 400 message for a model that cannot speak the agent's language.
func modelFitsLanguage(cfg map[string]any) string {
	lang := deref(stringAt(cfg, "agent", "language"))
	model := deref(stringAt(cfg, "tts", "model_id"))
	if model == "" {
		model = defaultTTSModel
	}
	if lang != "" && lang != "en" && slices.Contains(englishOnlyModel, model) {
		return "Invalid conversation config: Non-english Agents must use turbo or flash v2_5."
	}
	return ""
}

// A system tool (SystemToolConfigInput): its params are chosen by system_tool_type.
func systemTool(params *shape) *shape {
	return obj(map[string]*shape{
		"type": enum("system"), "name": str(), "description": null(str()),
		"response_timeout_secs": integer(1, 120), "disable_interruptions": boolean(), "force_pre_tool_speech": boolean(),
		"assignments": list(anyObject()), "params": params,
	}, "name", "params")
}

// phoneTransfer is PhoneNumberTransfer: the destination in transfer_destination
// (the bare phone_number is deprecated), a condition, and transfer_type.
var phoneTransfer = obj(map[string]*shape{
	"transfer_destination": tagged("type", map[string]*shape{
		"phone":                    obj(map[string]*shape{"type": str(), "phone_number": str()}, "phone_number"),
		"phone_dynamic_variable":   obj(map[string]*shape{"type": str(), "phone_number": str()}, "phone_number"),
		"sip_uri":                  obj(map[string]*shape{"type": str(), "sip_uri": str()}, "sip_uri"),
		"sip_uri_dynamic_variable": obj(map[string]*shape{"type": str(), "sip_uri": str()}, "sip_uri"),
	}),
	"phone_number":  str(),
	"condition":     str(),
	"transfer_type": enum("conference", "sip_refer"),
}, "transfer_destination", "condition")

var builtInTools = func() *shape {
	params := func(typ string, extra map[string]*shape, required ...string) *shape {
		p := map[string]*shape{"system_tool_type": enum(typ)}
		for k, v := range extra {
			p[k] = v
		}
		return obj(p, append([]string{"system_tool_type"}, required...)...)
	}
	return obj(map[string]*shape{
		"end_call":           null(systemTool(params("end_call", nil))),
		"language_detection": null(systemTool(params("language_detection", nil))),
		"transfer_to_agent":  null(systemTool(params("transfer_to_agent", map[string]*shape{"transfers": list(anyObject())}, "transfers"))),
		"transfer_to_number": null(systemTool(params("transfer_to_number",
			map[string]*shape{"transfers": list(phoneTransfer), "enable_client_message": boolean()}, "transfers"))),
		"skip_turn":              null(systemTool(params("skip_turn", nil))),
		"play_keypad_touch_tone": null(systemTool(params("play_keypad_touch_tone", map[string]*shape{"use_out_of_band_dtmf": boolean(), "suppress_turn_after_dtmf": boolean()}))),
		"voicemail_detection":    null(systemTool(params("voicemail_detection", map[string]*shape{"voicemail_message": str()}))),
	})
}()

var agentShape = obj(map[string]*shape{
	"name": null(str()),
	"tags": null(list(str())),
	"conversation_config": obj(map[string]*shape{
		"agent": obj(map[string]*shape{
			"first_message":                       str(),
			"language":                            enum(languages...),
			"disable_first_message_interruptions": boolean(),
			"dynamic_variables":                   anyObject(),
			"prompt": obj(map[string]*shape{
				"prompt":                     str(),
				"llm":                        str(),
				"temperature":                number(0, 2),
				"max_tokens":                 integer(-1, 1e6),
				"tool_ids":                   list(str()),
				"built_in_tools":             builtInTools,
				"mcp_server_ids":             list(str()),
				"knowledge_base":             list(anyObject()),
				"ignore_default_personality": boolean(),
				"timezone":                   null(str()),
				// prompt.tools was removed on 2025-07-23 ("Agent tools deprecation"):
				// requests that still carry it are rejected (see checks below).
			}),
		}),
		"asr": obj(map[string]*shape{"quality": str(), "provider": str(), "user_input_audio_format": enum(audioFormats...), "keywords": list(str())}),
		"tts": obj(map[string]*shape{
			"model_id": enum(ttsModels...), "voice_id": str(), "agent_output_audio_format": enum(audioFormats...),
			"optimize_streaming_latency": integer(0, 4), "stability": number(0, 1), "speed": number(0.7, 1.2), "similarity_boost": number(0, 1),
		}),
		"turn":             anyObject(),
		"vad":              anyObject(),
		"conversation":     obj(map[string]*shape{"text_only": boolean(), "max_duration_seconds": integer(1, 36000), "client_events": list(enum(clientEvents...))}),
		"language_presets": anyObject(),
	}),
	"platform_settings": obj(map[string]*shape{
		"auth": obj(map[string]*shape{"enable_auth": boolean(), "allowlist": list(obj(map[string]*shape{"hostname": str()}, "hostname")), "shareable_token": null(str())}),
		"overrides": obj(map[string]*shape{
			"conversation_config_override": obj(map[string]*shape{
				"agent":        obj(map[string]*shape{"first_message": boolean(), "language": boolean(), "prompt": obj(map[string]*shape{"prompt": boolean(), "llm": boolean()})}),
				"tts":          obj(map[string]*shape{"voice_id": boolean(), "stability": boolean(), "speed": boolean(), "similarity_boost": boolean()}),
				"conversation": obj(map[string]*shape{"text_only": boolean()}),
			}),
			"custom_llm_extra_body":                                   boolean(),
			"enable_conversation_initiation_client_data_from_webhook": boolean(),
		}),
		"call_limits":     anyObject(),
		"privacy":         anyObject(),
		"evaluation":      anyObject(),
		"data_collection": anyObject(),
		"widget":          anyObject(),
	}),
})

// validateAgent checks a create (full) or PATCH body.
func validateAgent(body map[string]any, create bool) []detail {
	var errs []detail
	s := agentShape
	if create {
		c := *s
		c.required = []string{"conversation_config"}
		s = &c
	}
	s.check(body, []any{"body"}, &errs)
	if v := valueAt(body, "conversation_config", "agent", "prompt", "tools"); v != nil {
		errs = append(errs, detail{Loc: []any{"body", "conversation_config", "agent", "prompt", "tools"},
			Msg: "prompt.tools is no longer supported: create the tools with POST /v1/convai/tools and list their ids in prompt.tool_ids", Type: "value_error"})
	}
	// A SIP URI destination is transferred with SIP REFER; a conference (the
	// default) dials a phone number.
	for i, t := range asList(valueAt(body, "conversation_config", "agent", "prompt", "built_in_tools", "transfer_to_number", "params", "transfers")) {
		tm, _ := t.(map[string]any)
		if deref(stringAt(tm, "transfer_destination", "type")) == "sip_uri" && tm["transfer_type"] != "sip_refer" {
			errs = append(errs, detail{Loc: []any{"body", "conversation_config", "agent", "prompt", "built_in_tools", "transfer_to_number", "params", "transfers", i, "transfer_type"},
				Msg: "Value error, SIP URI transfers require transfer_type 'sip_refer'", Type: "value_error"})
		}
	}
	return errs
}

// jsonProperty is a tool parameter's schema (LiteralJsonSchemaProperty, or an
// object or array of them): a type, and a description, dynamic_variable or
// constant_value; enum only for strings.
var jsonProperty = &shape{kind: "object"} // checked by checkProperty

var toolRequest = obj(map[string]*shape{
	"tool_config": tagged("type", map[string]*shape{
		// ClientToolConfigInput
		"client": obj(map[string]*shape{
			"type": str(), "name": str(), "description": str(),
			"response_timeout_secs": integer(1, 120), "disable_interruptions": boolean(), "force_pre_tool_speech": boolean(),
			"assignments": list(anyObject()), "parameters": jsonProperty, "expects_response": boolean(), "dynamic_variables": anyObject(),
		}, "name", "description"),
		// WebhookToolConfigInput (accepted; the simulator never calls out)
		"webhook": obj(map[string]*shape{
			"type": str(), "name": str(), "description": str(), "response_timeout_secs": integer(1, 120),
			"disable_interruptions": boolean(), "force_pre_tool_speech": boolean(), "assignments": list(anyObject()),
			"api_schema": anyObject(), "dynamic_variables": anyObject(),
		}, "name", "description", "api_schema"),
	}),
}, "tool_config")

func validateToolRequest(body map[string]any) []detail {
	var errs []detail
	toolRequest.check(body, []any{"body"}, &errs)
	if p, ok := valueAt(body, "tool_config", "parameters").(map[string]any); ok {
		checkProperty(p, []any{"body", "tool_config", "parameters"}, true, &errs)
	}
	return errs
}

// checkProperty checks a tool parameter schema: the top is an object.
func checkProperty(p map[string]any, loc []any, top bool, errs *[]detail) {
	typ, _ := p["type"].(string)
	if top && typ != "object" && typ != "" {
		*errs = append(*errs, detail{Loc: append(loc, "type"), Msg: "Input should be 'object'", Type: "literal_error"})
		return
	}
	switch typ {
	case "", "object":
		allowed := []string{"type", "required", "description", "properties"}
		for k := range p {
			if !slices.Contains(allowed, k) {
				*errs = append(*errs, detail{Loc: append(slices.Clone(loc), k), Msg: "Extra inputs are not permitted", Type: "extra_forbidden"})
			}
		}
		props, _ := p["properties"].(map[string]any)
		for _, r := range asList(p["required"]) {
			if name, _ := r.(string); props[name] == nil {
				*errs = append(*errs, detail{Loc: append(slices.Clone(loc), "required"), Msg: fmt.Sprintf("Value error, required property %q is not defined", r), Type: "value_error"})
			}
		}
		for name, v := range props {
			m, ok := v.(map[string]any)
			if !ok {
				*errs = append(*errs, detail{Loc: append(slices.Clone(loc), "properties", name), Msg: "Input should be a valid dictionary", Type: "dict_type"})
				continue
			}
			checkProperty(m, append(slices.Clone(loc), "properties", name), false, errs)
		}
	case "array":
		if items, ok := p["items"].(map[string]any); ok {
			checkProperty(items, append(slices.Clone(loc), "items"), false, errs)
		} else {
			*errs = append(*errs, detail{Loc: append(slices.Clone(loc), "items"), Msg: "Field required", Type: "missing"})
		}
	case "string", "integer", "number", "boolean":
		allowed := []string{"type", "description", "enum", "dynamic_variable", "constant_value"}
		for k := range p {
			if !slices.Contains(allowed, k) {
				*errs = append(*errs, detail{Loc: append(slices.Clone(loc), k), Msg: "Extra inputs are not permitted", Type: "extra_forbidden"})
			}
		}
		if _, ok := p["enum"]; ok && typ != "string" {
			*errs = append(*errs, detail{Loc: append(slices.Clone(loc), "enum"), Msg: "Value error, enum is only allowed for string properties", Type: "value_error"})
		}
		for _, e := range asList(p["enum"]) {
			if _, ok := e.(string); !ok {
				*errs = append(*errs, detail{Loc: append(slices.Clone(loc), "enum"), Msg: "Input should be a valid string", Type: "string_type"})
			}
		}
		if deref(stringAt(p, "description")) == "" && p["dynamic_variable"] == nil && p["constant_value"] == nil {
			*errs = append(*errs, detail{Loc: slices.Clone(loc), Msg: "Value error, one of description, dynamic_variable or constant_value must be set", Type: "value_error"})
		}
	default:
		*errs = append(*errs, detail{Loc: append(slices.Clone(loc), "type"), Msg: "Input should be 'string', 'integer', 'number', 'boolean', 'object' or 'array'", Type: "literal_error"})
	}
}

// check appends to errs what is wrong with v, pydantic style.
func (s *shape) check(v any, loc []any, errs *[]detail) {
	add := func(msg, typ string) { *errs = append(*errs, detail{Loc: slices.Clone(loc), Msg: msg, Type: typ}) }
	if v == nil {
		if !s.nullable && s.kind != "any" {
			add("Input should not be None", "none_forbidden")
		}
		return
	}
	switch s.kind {
	case "any":
	case "string":
		str, ok := v.(string)
		if !ok {
			add("Input should be a valid string", "string_type")
			return
		}
		if len(s.enum) > 0 && !slices.Contains(s.enum, str) {
			add("Input should be "+quoteList(s.enum), "enum")
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			add("Input should be a valid boolean", "bool_type")
		}
	case "number", "integer":
		n, ok := v.(float64)
		if !ok {
			add("Input should be a valid number", s.kind[:3]+"_type")
			return
		}
		if s.kind == "integer" && n != math.Trunc(n) {
			add("Input should be a valid integer", "int_type")
			return
		}
		if s.max > s.min && (n < s.min || n > s.max) {
			add(fmt.Sprintf("Input should be between %g and %g", s.min, s.max), "value_error")
		}
	case "array":
		l, ok := v.([]any)
		if !ok {
			add("Input should be a valid list", "list_type")
			return
		}
		for i, x := range l {
			s.elem.check(x, append(slices.Clone(loc), i), errs)
		}
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			add("Input should be a valid dictionary or object to extract fields from", "dict_type")
			return
		}
		if s.tag != "" {
			t, _ := m[s.tag].(string)
			variant, ok := s.variants[t]
			if !ok {
				keys := make([]string, 0, len(s.variants))
				for k := range s.variants {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				*errs = append(*errs, detail{Loc: append(slices.Clone(loc), s.tag), Msg: "Input tag '" + t + "' found using '" + s.tag + "' does not match any of the expected tags: " + quoteList(keys), Type: "union_tag_invalid"})
				return
			}
			variant.check(m, append(slices.Clone(loc), t), errs)
			return
		}
		for _, r := range s.required {
			if _, ok := m[r]; !ok {
				*errs = append(*errs, detail{Loc: append(slices.Clone(loc), r), Msg: "Field required", Type: "missing"})
			}
		}
		if s.props == nil {
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub, ok := s.props[k]
			if !ok {
				if s == agentShape.props["conversation_config"].props["agent"].props["prompt"] && k == "tools" {
					continue // reported with its own message
				}
				*errs = append(*errs, detail{Loc: append(slices.Clone(loc), k), Msg: "Extra inputs are not permitted", Type: "extra_forbidden"})
				continue
			}
			if sub == jsonProperty {
				continue // checked by checkProperty
			}
			sub.check(m[k], append(slices.Clone(loc), k), errs)
		}
	}
}

func quoteList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = "'" + v + "'"
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
