package control

import (
	"maps"
	"net/http"
	"strconv"
	"strings"

	"github.com/cxco/gateway/store"
)

// The OpenAPI 3.1 document is built from the route table (so every served route is
// documented) and the schemas below.

type js = map[string]any

func str(desc ...string) js {
	s := js{"type": "string"}
	if len(desc) > 0 {
		s["description"] = desc[0]
	}
	return s
}
func strEnum(vals ...string) js { return js{"type": "string", "enum": vals} }

// strLen is a string of minLen to maxLen characters (the limits the handlers enforce).
func strLen(minLen, maxLen int, desc ...string) js {
	s := str(desc...)
	if minLen > 0 {
		s["minLength"] = minLen
	}
	s["maxLength"] = maxLen
	return s
}

// orNull lets a schema also be null (a PUT field that clears or keeps a value).
func orNull(s js) js {
	s["type"] = []string{s["type"].(string), "null"}
	return s
}

// intRange is an integer from lo to hi (hi 0: no upper bound).
func intRange(lo, hi int) js {
	s := js{"type": "integer", "minimum": lo}
	if hi > 0 {
		s["maximum"] = hi
	}
	return s
}
func nullable(t string) js { return js{"type": []string{t, "null"}} }
func integer() js          { return js{"type": "integer"} }
func number() js           { return js{"type": "number"} }
func boolean() js          { return js{"type": "boolean"} }
func ref(name string) js   { return js{"$ref": "#/components/schemas/" + name} }
func arrayOf(s js) js      { return js{"type": "array", "items": s} }
func freeObject() js       { return js{"type": "object", "additionalProperties": true} }
func dateTime() js         { return js{"type": "string", "format": "date-time"} }
func date() js             { return js{"type": "string", "format": "date"} }

func object(required []string, props js) js {
	o := js{"type": "object", "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func strict(o js) js { o["additionalProperties"] = false; return o }

func page(item string) js {
	return object([]string{"items", "has_more", "next_cursor"}, js{
		"items": arrayOf(ref(item)), "has_more": boolean(), "next_cursor": nullable("string")})
}

func schemas() js {
	company := object([]string{"id", "name", "status", "created_at", "updated_at"}, js{
		"id": integer(), "name": str(), "status": strEnum(store.CompanyActive, store.CompanySuspended),
		"plan": strEnum(store.PlanStarter, store.PlanGrowth, store.PlanEnterprise), "rate_limit_per_minute": integer(),
		"meta_business_id": nullable("string"), "settings": freeObject(), "created_at": dateTime(), "updated_at": dateTime(),
		"outbound_limits": outboundLimitsSchema()})
	companyWithKey := object([]string{"id", "name", "status", "api_key"}, js{})
	for k, v := range company["properties"].(js) {
		companyWithKey["properties"].(js)[k] = v
	}
	companyWithKey["properties"].(js)["api_key"] = str("cxco_comp_k_…, shown only in this response")

	user := object([]string{"id", "company_id", "email", "name", "role", "status", "created_at", "updated_at"}, js{
		"id": integer(), "company_id": integer(), "email": str(), "name": str(), "role": strEnum(store.Roles...),
		"status": str(), "created_at": dateTime(), "updated_at": dateTime()})
	userWithKey := object([]string{"id", "company_id", "email", "name", "role", "status", "created_at", "updated_at", "api_key"}, js{})
	for k, v := range user["properties"].(js) {
		userWithKey["properties"].(js)[k] = v
	}
	userWithKey["properties"].(js)["api_key"] = str("cxco_user_k_…, shown only in this response")

	transfer := strict(object(nil, js{
		"mode": strEnum("refer", "bridge"), "fallback_to_bridge": boolean(),
		"destinations": arrayOf(strict(object([]string{"number", "condition"}, js{
			"number": str("E.164 number or sip: URI"), "condition": str("when the AI should transfer, in words"), "label": str()})))}))
	agentConfig := strict(object(nil, js{
		"temperature":               js{"type": "number", "minimum": 0, "maximum": 2},
		"max_call_duration_seconds": js{"type": "integer", "minimum": 10, "maximum": 14400, "default": 600},
		"audio_format":              js{"type": "string", "enum": []string{"ulaw_8000", "pcm_16000"}, "default": "ulaw_8000"},
		"user_audio_chunk_ms":       js{"type": "integer", "minimum": 20, "maximum": 1000, "multipleOf": 20, "default": 20},
		"transfer":                  transfer,
		"keypad": strict(object(nil, js{
			"mode":                   js{"type": "string", "enum": store.KeypadModes, "default": store.KeypadUserMessage, "description": "how keypad entries reach the agent: a user turn, background context, or not at all"},
			"inter_digit_timeout_ms": js{"type": "integer", "minimum": 200, "maximum": 10000, "default": store.DefaultInterDigitMS, "description": "a keypad entry ends at # or after this pause"}})),
		"turn_detection": js{"type": "string", "enum": []string{string(store.TurnServerVAD), string(store.TurnSemanticVAD)}, "default": string(store.TurnServerVAD),
			"description": "OpenAI Realtime agents: how the model knows the caller finished (silence after speech, or a model's judgement)"},
		"bot": strict(object([]string{"url"}, js{
			"url":        js{"type": "string", "maxLength": 2000, "description": "your own bot's wss:// URL (provider mediastream); the gateway dials it for every call and speaks the Twilio Media Streams format"},
			"parameters": js{"type": "object", "maxProperties": 20, "additionalProperties": js{"type": "string", "maxLength": 1000}, "description": "sent in start.customParameters with the gateway's own cxco_* parameters"}}))}))
	agent := object([]string{"id", "company_id", "name", "personality", "opening_line", "voice", "language", "status",
		"voice_enabled", "whatsapp_enabled", "created_at", "updated_at"}, js{
		"id": integer(), "company_id": integer(), "name": str(), "personality": str(), "opening_line": str(),
		"voice":    object([]string{"id", "name"}, js{"id": integer(), "name": str()}),
		"language": str(), "status": strEnum(store.AgentStatuses...), "voice_enabled": boolean(), "whatsapp_enabled": boolean(),
		"external_agent_id": nullable("string"),
		"provider":          js{"type": "string", "enum": store.VoiceProviders, "description": "the voice-AI provider the agent's calls go to"},
		"fallback_provider": js{"type": []string{"string", "null"}, "enum": append(anySlice(store.VoiceProviders), nil), "description": "where calls go when provider cannot be reached at the INVITE"},
		"phone_number": object([]string{"id", "number"}, js{"id": integer(), "number": str(), "voice_enabled": boolean(),
			"whatsapp_enabled": boolean(), "whatsapp_status": str()}),
		"config": agentConfig, "created_at": dateTime(), "updated_at": dateTime()})
	agentCreate := strict(object([]string{"name", "personality", "opening_line", "voice_id"}, js{
		"name": strLen(1, 200), "personality": strLen(1, 20000),
		"opening_line": strLen(1, 2000), "voice_id": intRange(1, 0),
		"language": js{"type": "string", "enum": languages, "default": "en"}, "config": agentConfig,
		"provider": js{"type": "string", "enum": store.VoiceProviders,
			"description": "the voice-AI provider the agent's calls go to: elevenlabs, openai (OpenAI Realtime) or mediastream (your own bot, config.bot.url); default: the voice's provider"},
		"fallback_provider": js{"type": []string{"string", "null"}, "enum": append(anySlice(store.VoiceProviders), nil),
			"description": "a second provider the call is bridged to when the first cannot be reached at the INVITE (the conversation's source says which served it); null removes it"}}))
	agentUpdate := strict(object(nil, agentCreate["properties"].(js)))

	phone := object([]string{"id", "number", "provider_slug", "country_code", "status", "company_id", "agent_id",
		"whatsapp_status", "whatsapp_external_id", "trunk_id", "created_at", "updated_at"}, js{
		"id": integer(), "number": str("E.164"), "provider_slug": str(), "country_code": str(),
		"status":     strEnum(store.NumberAvailable, store.NumberAssigned, store.NumberEcho),
		"company_id": nullable("integer"), "agent_id": nullable("integer"),
		"trunk_id":             js{"type": []string{"integer", "null"}, "description": "the trunk (carrier) the number belongs to: outbound calls from it go through that trunk; null: the default trunk"},
		"whatsapp_status":      strEnum(store.WhatsAppNone, store.WhatsAppPending, store.WhatsAppActive, store.WhatsAppFailed),
		"whatsapp_external_id": nullable("string"), "created_at": dateTime(), "updated_at": dateTime()})

	voice := object([]string{"id", "provider_id", "external_voice_id", "name", "language", "status"}, js{
		"id": integer(), "provider_id": integer(), "external_voice_id": str(), "name": str(),
		"gender": nullable("string"), "accent": nullable("string"), "language": str(), "preview_url": nullable("string"),
		"tags": freeObject(), "status": str()})
	voiceCreate := strict(object([]string{"name", "external_voice_id", "language"}, js{
		"provider_id": integer(), "external_voice_id": strLen(1, 100), "name": strLen(1, 200), "gender": strLen(1, 20), "accent": strLen(1, 50),
		"language": strEnum(languages...), "preview_url": strLen(1, 2000), "tags": freeObject(), "status": strEnum("active", "inactive")}))

	conversation := object([]string{"id", "agent_id", "company_id", "channel", "direction", "started_at", "status", "source", "created_at"}, js{
		"id": integer(), "agent_id": integer(), "company_id": integer(), "channel": strEnum("voice", "whatsapp"),
		"caller_number": nullable("string"), "called_number": nullable("string"), "direction": strEnum("inbound", "outbound"),
		"started_at": dateTime(), "answered_at": dateTime(), "ended_at": nullable("string"),
		"duration_seconds": nullable("integer"), "message_count": nullable("integer"),
		"status": strEnum(store.ConvInProgress, store.ConvCompleted, store.ConvTransferred, store.ConvFailed, store.ConvCancelled,
			store.ConvQueued, store.ConvRinging, store.ConvBusy, store.ConvNoAnswer, store.ConvRejected),
		"sip_status": js{"type": "integer", "description": "an unanswered outbound call's final SIP status (486 busy, 487 after our CANCEL, 603 declined, ...)"},
		"end_reason": nullable("string"), "call_successful": nullable("boolean"), "sip_refer_destination": nullable("string"),
		"sip_refer_seconds": integer(), "transcript_summary": nullable("string"), "source": str(),
		"external_conversation_id": nullable("string"), "contact_id": integer(), "created_at": dateTime(),
		"audio_quality": js{"type": "object", "required": []string{"mos", "r_factor", "rating", "poor"},
			"description": "the caller's audio as the ITU-T G.107 E-model rates it (set when a call with media ends; detail in metadata_.rtp)",
			"properties": js{"mos": js{"type": "number"}, "r_factor": js{"type": "number"},
				"rating": strEnum("best", "high", "medium", "low", "poor"), "poor": js{"type": "boolean"}}},
		"node_id": js{"type": "string", "description": "the gateway node (--node-id) that carries or carried the call"}})
	entry := object([]string{"role", "message", "timestamp"}, js{"role": strEnum("agent", "user", "system"), "message": str(),
		"timestamp": js{"type": "number", "description": "seconds since the call was answered"}})
	detail := object(nil, js{})
	for k, v := range conversation["properties"].(js) {
		detail["properties"].(js)[k] = v
	}
	detail["required"] = conversation["required"]
	detail["properties"].(js)["transcript"] = arrayOf(ref("TranscriptEntry"))
	detail["properties"].(js)["metadata_"] = freeObject()

	contact := object([]string{"id", "company_id", "phone_number", "created_at"}, js{
		"id": integer(), "company_id": integer(), "phone_number": str(), "name": nullable("string"), "email": nullable("string"),
		"notes": nullable("string"), "tags": arrayOf(str()), "first_seen_at": dateTime(), "last_seen_at": nullable("string"),
		"conversation_count": integer(), "created_at": dateTime(), "updated_at": dateTime()})
	contactDetail := object(nil, js{"recent_conversations": arrayOf(ref("Conversation"))})
	for k, v := range contact["properties"].(js) {
		contactDetail["properties"].(js)[k] = v
	}

	periodS := object([]string{"start_date", "end_date"}, js{"start_date": date(), "end_date": date()})
	voiceU := object([]string{"total_conversations", "total_minutes", "total_sip_refer_minutes"}, js{
		"total_conversations":      integer(),
		"total_minutes":            js{"type": "number", "description": "answered time with the AI agent, in minutes"},
		"total_sip_refer_minutes":  js{"type": "number", "description": "time transferred callers spent with a human while the gateway still carried the call"},
		"average_duration_seconds": js{"type": "number", "description": "average answered call, transfer time included"},
		"outbound_conversations":   js{"type": "integer", "description": "of total_conversations, the answered calls the agents placed"},
		"outbound_minutes":         js{"type": "number", "description": "of total_minutes, the time on calls the agents placed (inbound is the rest)"},
		"success_rate":             js{"type": []string{"number", "null"}, "description": "share of analysed calls the provider judged successful"}})
	waU := object([]string{"total_conversations", "total_messages"}, js{"total_conversations": integer(), "total_messages": integer()})
	byAgent := object([]string{"agent_id", "agent_name", "voice_minutes", "total_conversations"}, js{
		"agent_id": integer(), "agent_name": str(), "voice_minutes": number(), "sip_refer_minutes": number(), "outbound_minutes": number(), "total_conversations": integer()})
	summary := object([]string{"period", "voice"}, js{"period": periodS, "voice": voiceU, "whatsapp": waU,
		"agents_active": js{"type": "integer", "default": 0, "description": "agents with conversations in the period"},
		"by_agent":      js{"type": "array", "items": byAgent, "default": []any{}}})

	webhook := object([]string{"id", "company_id", "url", "events", "status", "created_at", "updated_at"}, js{
		"id": integer(), "company_id": integer(), "url": str(), "events": arrayOf(strEnum(store.EventTypes...)),
		"status": strEnum(store.WebhookActive, store.WebhookDisabled), "has_secret": boolean(),
		"disabled_reason": str(), "disabled_at": dateTime(), "created_at": dateTime(), "updated_at": dateTime()})

	return js{
		"Error": object([]string{"detail", "error_type"}, js{"detail": str(), "error_type": strEnum(typeValidation, typeAuth,
			typePermission, typeNotFound, typeMethod, typeConflict, typeRateLimited, typeUnavailable, typeInternal, typeTimeout)}),
		"Agency":       object([]string{"name", "settings"}, js{"name": str(), "settings": freeObject(), "created_at": dateTime(), "updated_at": dateTime()}),
		"AgencyUpdate": strict(object(nil, js{"name": strLen(1, 200), "settings": freeObject()})),
		"Company":      company, "CompanyWithKey": companyWithKey, "CompanyPage": page("Company"),
		"CompanyCreate": strict(object([]string{"name"}, js{"name": strLen(1, 200), "plan": strEnum(store.PlanStarter, store.PlanGrowth, store.PlanEnterprise),
			"settings": freeObject(), "rate_limit_per_minute": intRange(1, 1_000_000), "meta_business_id": strLen(1, 100)})),
		"CompanyUpdate": strict(object(nil, js{"name": orNull(strLen(1, 200)), "settings": freeObject()})),
		"AgencyCompanyUpdate": strict(object(nil, js{"name": strLen(1, 200), "status": strEnum(store.CompanyActive, store.CompanySuspended),
			"plan": strEnum(store.PlanStarter, store.PlanGrowth, store.PlanEnterprise), "rate_limit_per_minute": intRange(1, 1_000_000),
			"settings": freeObject(), "meta_business_id": strLen(1, 100), "outbound_limits": strict(outboundLimitsSchema())})),
		"User": user, "UserWithKey": userWithKey, "UserPage": page("User"),
		"UserCreate": strict(object([]string{"email", "name"}, js{"email": js{"type": "string", "format": "email", "minLength": 1, "maxLength": 254},
			"name": strLen(1, 200), "role": js{"type": "string", "enum": store.Roles, "default": store.RoleMember}})),
		"UserUpdate": strict(object(nil, js{"name": orNull(strLen(1, 200)), "role": js{"type": []string{"string", "null"}, "enum": append(append([]any{}, anySlice(store.Roles)...), nil)}})),
		"Agent":      agent, "AgentPage": page("Agent"), "AgentCreate": agentCreate, "AgentUpdate": agentUpdate,
		"Publish": strict(object(nil, js{"country_code": js{"type": "string", "pattern": "^[A-Za-z]{2}$", "default": "ZA", "description": "ISO 3166-1 alpha-2"}})),
		"Voice":   voice, "VoiceList": arrayOf(ref("Voice")), "VoiceCreate": voiceCreate, "VoiceUpdate": strict(object(nil, voiceCreate["properties"].(js))),
		"PhoneNumber": phone, "PhoneNumberList": arrayOf(ref("PhoneNumber")), "PhoneNumberPage": page("PhoneNumber"),
		"PoolNumberCreate": strict(object([]string{"number", "country_code"}, js{"number": strLen(1, 32, "E.164 (+ and 7 to 15 digits); spaces, dashes, dots and brackets are ignored"),
			"country_code":  js{"type": "string", "pattern": "^[A-Za-z]{2}$", "description": "ISO 3166-1 alpha-2"},
			"provider_slug": js{"type": "string", "minLength": 1, "maxLength": 50, "default": "sip_trunk"}, "echo_line": boolean(),
			"trunk_id": js{"type": "integer", "minimum": 0, "description": "the trunk the number belongs to (GET /api/agency/trunks): calls from it go out through that trunk"}})),
		"PoolNumberUpdate": strict(object(nil, js{"echo_line": boolean(),
			"trunk_id": js{"type": "integer", "minimum": 0, "description": "the trunk the number belongs to; 0: none (the default trunk)"}})),
		"WhatsAppStatus": object([]string{"id", "number", "whatsapp_status"}, js{"id": integer(), "number": str(), "whatsapp_status": str()}),
		"Conversation":   conversation, "ConversationDetail": detail, "ConversationPage": page("Conversation"), "TranscriptEntry": entry,
		"Contact": contact, "ContactDetail": contactDetail, "ContactPage": page("Contact"),
		"ContactUpdate": strict(object(nil, js{"name": strLen(0, 200), "email": strLen(0, 254), "notes": strLen(0, 10000), "tags": arrayOf(str())})),
		"UsageSummary":  summary, "CompanyUsage": summary,
		"AgentUsage":     object([]string{"agent_id", "period", "voice"}, js{"agent_id": integer(), "period": periodS, "voice": voiceU, "whatsapp": waU}),
		"DailyUsageList": arrayOf(object([]string{"date", "voice"}, js{"date": date(), "voice": voiceU, "whatsapp": waU})),
		"Webhook":        webhook, "WebhookList": arrayOf(ref("Webhook")),
		"WebhookDelivery": webhookDeliverySchema(), "WebhookDeliveryPage": page("WebhookDelivery"),
		"WebhookCreate": strict(object([]string{"url", "events"}, js{"url": webhookURL(), "events": webhookEvents(),
			"secret": orNull(strLen(8, 256, "signs every delivery (X-CXCO-Signature)"))})),
		"WebhookUpdate": strict(object(nil, js{"url": webhookURL(), "events": webhookEvents(),
			"status": strEnum(store.WebhookActive, store.WebhookDisabled), "secret": orNull(strLen(8, 256))})),
		"Provider":     object([]string{"id", "slug", "name", "type", "status"}, js{"id": integer(), "slug": str(), "name": str(), "type": str(), "status": str(), "config": freeObject()}),
		"ProviderList": arrayOf(ref("Provider")),
		"CredentialCreate": strict(object([]string{"company_id", "credentials"}, js{"company_id": intRange(1, 0),
			"credentials": js{"type": "object", "minProperties": 1, "description": "elevenlabs and openai: {\"api_key\": \"...\"}; mediastream: {\"headers\": {\"Authorization\": \"Bearer ...\"}}, sent when the gateway dials the company's bots"}})),
		"SIPTrace": object([]string{"conversation_id", "sip_call_id", "kept_until", "items"}, js{"conversation_id": integer(),
			"sip_call_id": str(), "kept_until": js{"type": []string{"string", "null"}, "format": "date-time", "description": "when the ladder expires; null when there is none"},
			"items": arrayOf(object([]string{"at", "direction", "transport", "local", "remote", "sip_call_id", "first_line", "cseq", "message"}, js{
				"at":        js{"type": "string", "format": "date-time", "description": "when it was read or written, RFC 3339 with fractions of a second"},
				"direction": js{"type": "string", "enum": []string{"in", "out"}, "description": "in: to the gateway"},
				"transport": str("UDP, TCP or TLS"), "local": str("the gateway's address, ip:port"), "remote": str("the far end's address, ip:port"),
				"sip_call_id": str("the call's, or its bridged transfer leg's"), "first_line": str("request line or status line"),
				"cseq": str(), "message": str("the whole message; Authorization values and SDP key lines are [redacted]")}))}),
		"APIIndex": object([]string{"name", "version", "docs", "openapi"}, js{"name": str(), "version": str(),
			"docs": str("the API reference, rendered in the browser"), "openapi": str("this API's OpenAPI 3.1 document"),
			"health":  object(nil, js{"liveness": str("200 while the process runs"), "readiness": str("200 while it takes calls and the store answers")}),
			"metrics": str("Prometheus text format"), "dashboard": str("the web dashboard")}),
		"Credential": object([]string{"id", "company_id", "provider_id", "status", "created_at"}, js{"id": integer(), "company_id": integer(),
			"provider_id": integer(), "status": str(), "created_at": dateTime()}),
	}
}

// OpenAPI builds the document.
func (s *Server) OpenAPI() js {
	sch := schemas()
	maps.Copy(sch, testCallSchemas())
	maps.Copy(sch, outboundSchemas())
	maps.Copy(sch, batchSchemas())
	maps.Copy(sch, trunkSchemas())
	maps.Copy(sch, liveSchemas())
	paths := js{}
	errResp := func(desc string) js {
		return js{"description": desc, "content": js{"application/json": js{"schema": ref("Error")}}}
	}
	errDesc := map[int]string{400: "Bad request", 401: "Missing or invalid API key", 403: "Wrong key type, a user role below the route's (x-cxco-role), or company suspended",
		404: "Not found (or another company's)", 408: "The request body did not arrive within the read timeout", 409: "Conflict with the resource's state", 413: "Request body over 1 MiB",
		422: "Validation error", 429: "Rate limit exceeded, or too many requests of this key in progress (see Retry-After)", 503: "Data store or provider unavailable"}
	for _, rt := range s.routes {
		op := js{"summary": rt.summary, "tags": []string{rt.tag}, "operationId": opID(rt)}
		var params []js
		for _, p := range pathParams(rt.path) {
			typ := "integer"
			if p == "slug" {
				typ = "string"
			}
			params = append(params, js{"name": p, "in": "path", "required": true, "schema": js{"type": typ}})
		}
		for _, p := range rt.query {
			sch := js{"type": p.typ}
			switch {
			case p.name == "limit":
				sch["minimum"], sch["maximum"] = 1, maxPageLimit
			case strings.HasSuffix(p.name, "_date"):
				sch["format"] = "date"
			}
			params = append(params, js{"name": p.name, "in": "query", "required": p.required, "description": p.desc, "schema": sch})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if rt.body != "" {
			// An empty body is an empty object: the body is required only when the schema has required fields.
			_, needed := sch[rt.body].(js)["required"]
			op["requestBody"] = js{"required": needed, "content": js{"application/json": js{"schema": ref(rt.body)}}}
		}
		resps := js{}
		okResp := js{"description": http.StatusText(rt.status)}
		if rt.resp != "" {
			okResp["content"] = js{"application/json": js{"schema": ref(rt.resp)}}
		} else if rt.path == "/api/openapi.json" {
			okResp["content"] = js{"application/json": js{"schema": freeObject()}}
		} else if rt.page != nil {
			okResp["content"] = js{"text/html": js{"schema": str()}}
		} else if rt.stream != nil {
			okResp["content"] = js{"text/event-stream": js{"schema": str("events `snapshot` {items: [LiveCall]}, `upsert` {items: [LiveCall]}, `end` {conversation_ids: [integer]}; a comment line every 15 s")}}
		}
		resps[strconv.Itoa(rt.status)] = okResp
		codes := append([]int{}, rt.errors...)
		if rt.auth != authNone {
			codes = append(codes, 401, 403, 503)
			if rt.auth != authAgency {
				codes = append(codes, 429)
			}
		}
		if rt.body != "" {
			codes = append(codes, 408, 413, 422)
		}
		for _, code := range codes {
			resps[strconv.Itoa(code)] = errResp(errDesc[code])
		}
		op["responses"] = resps
		if rt.auth != authNone {
			op["security"] = []js{{"ApiKey": []string{}}, {"Authorization": []string{}}}
			op["description"] = roleDoc(rt)
			op["x-cxco-role"] = rt.role.String()
		}
		item, _ := paths[rt.path].(js)
		if item == nil {
			item = js{}
			paths[rt.path] = item
		}
		item[strings.ToLower(rt.method)] = op
	}
	// Tags in the route table's order, so renderers show the API as the table groups it.
	var tags []js
	seenTag := map[string]bool{}
	for _, rt := range s.routes {
		if !seenTag[rt.tag] {
			seenTag[rt.tag] = true
			tags = append(tags, js{"name": rt.tag})
		}
	}
	return js{
		"openapi": "3.1.0",
		"tags":    tags,
		"info": js{"title": "CXCo API", "version": "1.0.0",
			"description": "AI voice agents on real phone numbers. Errors are {detail, error_type}. Lists that page return {items, has_more, next_cursor}. " +
				"A user key carries its user's role: viewer (reads only), member (agents, contacts, test calls), admin (also the company profile and archiving agents), owner (as admin). " +
				"Each operation's x-cxco-role is the least role it needs; a lower role gets 403 permission_denied. The company and agency keys hold owner on the routes their key type opens."},
		"servers": []js{{"url": "/"}},
		"paths":   paths,
		"components": js{
			"schemas": sch,
			"securitySchemes": js{
				"ApiKey":        js{"type": "apiKey", "in": "header", "name": "X-API-Key"},
				"Authorization": js{"type": "apiKey", "in": "header", "name": "Authorization", "description": "the key itself; a Bearer prefix is tolerated"},
			},
		},
	}
}

func opID(rt *route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.method))
	for _, seg := range strings.Split(strings.TrimPrefix(rt.path, "/api/"), "/") {
		seg = strings.Trim(seg, "{}")
		for _, part := range strings.FieldsFunc(seg, func(r rune) bool { return r == '-' || r == '_' || r == '.' }) {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

func (s *Server) openAPI(c *call) (result, error) { return ok(s.OpenAPI()) }

func webhookURL() js {
	return js{"type": "string", "format": "uri", "minLength": 1, "maxLength": 2000,
		"description": "https:// endpoint on a public address (no loopback, private, link-local or metadata address, also after DNS)"}
}

func webhookEvents() js {
	return js{"type": "array", "items": strEnum(store.EventTypes...), "minItems": 1}
}

func anySlice[T any](v []T) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
}
