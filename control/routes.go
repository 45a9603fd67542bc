package control

import (
	"net/http"
	"strings"

	"github.com/cxco/gateway/control/apidocs"
)

// route is one API operation: how it is served and how it is documented. The mux and
// the OpenAPI document are both built from this table, and a test checks the two
// against each other.
type route struct {
	method, path string
	auth         authKind
	role         role // the least role the caller must hold; required
	tag          string
	summary      string
	resource     string // what a 404 names
	query        []param
	body         string // request schema ("" = none)
	resp         string // response schema ("" = none)
	status       int    // success status
	errors       []int  // documented error statuses besides 401/403/429/503
	h            func(*call) (result, error)
	page         http.Handler      // serves an HTML page instead of h (GET /api/docs)
	stream       func(*call) error // streams the response itself instead of h (server-sent events)
}

type param struct {
	name, typ, desc string
	required        bool
}

func (rt *route) pattern() string { return rt.method + " " + rt.path }

func q(name, typ, desc string) param { return param{name: name, typ: typ, desc: desc} }
func qreq(name, typ, desc string) param {
	return param{name: name, typ: typ, desc: desc, required: true}
}
func pageParams(extra ...param) []param {
	return append(extra, q("limit", "integer", "page size, 1–100 (default 30)"), q("cursor", "string", "next_cursor of the previous page"))
}

func (s *Server) table() []*route {
	r := func(method, path string, auth authKind, rl role, tag, summary, resource string, status int, h func(*call) (result, error)) *route {
		return &route{method: method, path: path, auth: auth, role: rl, tag: tag, summary: summary, resource: resource, status: status, h: h}
	}
	with := func(rt *route, body, resp string, query []param, errs ...int) *route {
		rt.body, rt.resp, rt.query, rt.errors = body, resp, query, errs
		return rt
	}
	const get, post, put, del = "GET", "POST", "PUT", "DELETE"
	routes := []*route{
		// Agency
		with(r(get, "/api/agency", authAgency, roleViewer, "Agency", "Get the agency profile", "agency", 200, s.getAgency), "", "Agency", nil),
		with(r(put, "/api/agency", authAgency, roleOwner, "Agency", "Update the agency profile", "agency", 200, s.putAgency), "AgencyUpdate", "Agency", nil, 422),
		with(r(post, "/api/agency/companies", authAgency, roleOwner, "Agency", "Create a company and its API key (shown once)", "company", 201, s.createCompany), "CompanyCreate", "CompanyWithKey", nil, 422),
		with(r(get, "/api/agency/companies", authAgency, roleViewer, "Agency", "List companies", "company", 200, s.listCompanies), "", "CompanyPage", pageParams(), 422),
		with(r(get, "/api/agency/companies/{company_id}", authAgency, roleViewer, "Agency", "Get a company", "company", 200, s.agencyGetCompany), "", "Company", nil, 404, 422),
		with(r(put, "/api/agency/companies/{company_id}", authAgency, roleOwner, "Agency", "Update a company's name, status, plan or rate limit", "company", 200, s.agencyPutCompany), "AgencyCompanyUpdate", "Company", nil, 404, 422),
		with(r(post, "/api/agency/companies/{company_id}/rotate-key", authAgency, roleOwner, "Agency", "Issue a new company key; the old one stops working at once", "company", 200, s.rotateCompanyKey), "", "CompanyWithKey", nil, 404, 422),
		with(r(post, "/api/agency/phone-numbers", authAgency, roleOwner, "Agency", "Add a number to the pool", "phone number", 201, s.addPoolNumber), "PoolNumberCreate", "PhoneNumber", nil, 409, 422),
		with(r(get, "/api/agency/phone-numbers", authAgency, roleViewer, "Agency", "List the number pool", "phone number", 200, s.listPool), "", "PhoneNumberPage",
			pageParams(q("status", "string", "available, assigned or echo"), q("country_code", "string", "ISO 3166-1 alpha-2")), 422),
		with(r(put, "/api/agency/phone-numbers/{phone_number_id}", authAgency, roleOwner, "Agency", "Make a pool number an echo test line, or a normal number again", "phone number", 200, s.putPoolNumber), "PoolNumberUpdate", "PhoneNumber", nil, 404, 409, 422),
		with(r(del, "/api/agency/phone-numbers/{phone_number_id}", authAgency, roleOwner, "Agency", "Remove a number that is not assigned", "phone number", 204, s.deletePoolNumber), "", "", nil, 404, 409, 422),
		with(r(post, "/api/agency/voices", authAgency, roleOwner, "Agency", "Add a voice to the catalogue", "voice", 201, s.createVoice), "VoiceCreate", "Voice", nil, 422),
		with(r(put, "/api/agency/voices/{voice_id}", authAgency, roleOwner, "Agency", "Update a voice", "voice", 200, s.putVoice), "VoiceUpdate", "Voice", nil, 404, 422),
		with(r(del, "/api/agency/voices/{voice_id}", authAgency, roleOwner, "Agency", "Retire a voice (agents using it keep it)", "voice", 204, s.deleteVoice), "", "", nil, 404, 422),

		// Companies
		with(r(get, "/api/companies/{company_id}", authAny, roleViewer, "Companies", "Get company details", "company", 200, s.getCompany), "", "Company", nil, 404, 422),
		with(r(put, "/api/companies/{company_id}", authAny, roleAdmin, "Companies", "Update company", "company", 200, s.putCompany), "CompanyUpdate", "Company", nil, 404, 422),
		with(r(get, "/api/companies/{company_id}/usage", authAny, roleViewer, "Companies", "Get company usage", "company", 200, s.companyUsage), "", "CompanyUsage", dateParams(false), 404, 422),

		// Users
		with(r(post, "/api/users", authCompany, roleOwner, "Users", "Create a user (the API key is shown once)", "user", 201, s.createUser), "UserCreate", "UserWithKey", nil, 409, 422),
		with(r(get, "/api/users", authCompany, roleViewer, "Users", "List users", "user", 200, s.listUsers), "", "UserPage", pageParams(), 422),
		with(r(get, "/api/users/me", authUser, roleViewer, "Users", "Get current user", "user", 200, s.getMe), "", "User", nil),
		with(r(get, "/api/users/{user_id}", authCompany, roleViewer, "Users", "Get user by ID", "user", 200, s.getUser), "", "User", nil, 404, 422),
		with(r(put, "/api/users/{user_id}", authCompany, roleOwner, "Users", "Update user", "user", 200, s.putUser), "UserUpdate", "User", nil, 404, 422),
		with(r(del, "/api/users/{user_id}", authCompany, roleOwner, "Users", "Delete user and revoke their key", "user", 204, s.deleteUser), "", "", nil, 404, 422),

		// Agents
		with(r(post, "/api/agents", authUser, roleMember, "Agents", "Create a draft agent", "agent", 201, s.createAgent), "AgentCreate", "Agent", nil, 422),
		with(r(get, "/api/agents", authUser, roleViewer, "Agents", "List agents", "agent", 200, s.listAgents), "", "AgentPage",
			pageParams(q("status", "string", "draft, active, paused or archived")), 422),
		with(r(get, "/api/agents/{agent_id}", authUser, roleViewer, "Agents", "Get agent details", "agent", 200, s.getAgent), "", "Agent", nil, 404, 422),
		with(r(put, "/api/agents/{agent_id}", authUser, roleMember, "Agents", "Update agent (only provided fields)", "agent", 200, s.putAgent), "AgentUpdate", "Agent", nil, 404, 409, 422),
		with(r(del, "/api/agents/{agent_id}", authUser, roleAdmin, "Agents", "Archive agent (releases its number)", "agent", 200, s.archiveAgent), "", "Agent", nil, 404, 409, 422),
		with(r(post, "/api/agents/{agent_id}/publish", authUser, roleMember, "Agents", "Publish agent: take a number from the pool and go live", "agent", 200, s.publishAgent), "Publish", "Agent", nil, 404, 409, 422),
		with(r(post, "/api/agents/{agent_id}/pause", authUser, roleMember, "Agents", "Pause agent", "agent", 200, s.pauseAgent), "", "Agent", nil, 404, 409, 422),
		with(r(post, "/api/agents/{agent_id}/resume", authUser, roleMember, "Agents", "Resume agent", "agent", 200, s.resumeAgent), "", "Agent", nil, 404, 409, 422),
		with(r(get, "/api/agents/{agent_id}/conversations", authUser, roleViewer, "Agents", "List agent conversations", "agent", 200, s.agentConversations), "", "ConversationPage",
			pageParams(q("channel", "string", "voice or whatsapp")), 404, 422),
		with(r(get, "/api/agents/{agent_id}/usage", authUser, roleViewer, "Agents", "Get agent usage", "agent", 200, s.agentUsage), "", "AgentUsage", dateParams(false), 404, 422),

		// Voices
		with(r(get, "/api/voices", authAll, roleViewer, "Voices", "List voices", "voice", 200, s.listVoices), "", "VoiceList",
			[]param{q("language", "string", ""), q("gender", "string", ""), q("accent", "string", "")}, 422),
		with(r(get, "/api/voices/{voice_id}", authAll, roleViewer, "Voices", "Get voice details", "voice", 200, s.getVoice), "", "Voice", nil, 404, 422),

		// Phone numbers
		with(r(get, "/api/phone-numbers/available", authUser, roleViewer, "Phone Numbers", "List available phone numbers", "phone number", 200, s.availableNumbers), "", "PhoneNumberList",
			[]param{q("country_code", "string", "ISO 3166-1 alpha-2"), q("limit", "integer", "at most this many (1–100, default 100)")}, 422),
		with(r(get, "/api/phone-numbers", authUser, roleViewer, "Phone Numbers", "List company phone numbers", "phone number", 200, s.companyNumbers), "", "PhoneNumberList", nil),
		with(r(get, "/api/phone-numbers/{phone_number_id}", authUser, roleViewer, "Phone Numbers", "Get a company phone number", "phone number", 200, s.getCompanyNumber), "", "PhoneNumber", nil, 404, 422),
		with(r(post, "/api/phone-numbers/{phone_number_id}/enable-whatsapp", authUser, roleMember, "Phone Numbers", "Enable WhatsApp (starts verification)", "phone number", 200, s.enableWhatsApp), "", "PhoneNumber", nil, 404, 409, 422),
		with(r(get, "/api/phone-numbers/{phone_number_id}/whatsapp-status", authUser, roleViewer, "Phone Numbers", "Check WhatsApp status", "phone number", 200, s.whatsAppStatus), "", "WhatsAppStatus", nil, 404, 422),

		// Conversations
		with(r(get, "/api/conversations", authUser, roleViewer, "Conversations", "List conversations", "conversation", 200, s.listConversations), "", "ConversationPage",
			pageParams(q("agent_id", "string", "only this agent's"), q("channel", "string", "voice or whatsapp")), 422),
		with(r(get, "/api/conversations/{conversation_id}", authUser, roleViewer, "Conversations", "Get conversation details with transcript", "conversation", 200, s.getConversation), "", "ConversationDetail", nil, 404, 422),
		with(r(get, "/api/conversations/{conversation_id}/sip-trace", authUser, roleViewer, "Conversations",
			"The call's SIP ladder: every SIP message in and out, in order, secrets redacted (kept for --sip-trace-keep)", "conversation", 200, s.conversationSIPTrace), "", "SIPTrace", nil, 404, 422),

		// Contacts
		with(r(get, "/api/contacts", authAny, roleViewer, "Contacts", "List contacts", "contact", 200, s.listContacts), "", "ContactPage",
			pageParams(q("search", "string", "part of the phone number")), 422),
		with(r(get, "/api/contacts/{contact_id}", authAny, roleViewer, "Contacts", "Get a contact with its recent conversations", "contact", 200, s.getContact), "", "ContactDetail", nil, 404, 422),
		with(r(put, "/api/contacts/{contact_id}", authAny, roleMember, "Contacts", "Update a contact", "contact", 200, s.putContact), "ContactUpdate", "Contact", nil, 404, 422),

		// Usage
		with(r(get, "/api/usage/summary", authAny, roleViewer, "Usage", "Get usage summary", "usage", 200, s.usageSummary), "", "UsageSummary", dateParams(false), 422),
		with(r(get, "/api/usage/daily", authAny, roleViewer, "Usage", "Get daily usage breakdown", "usage", 200, s.usageDaily), "", "DailyUsageList",
			append(dateParams(true), q("agent_id", "string", "only this agent's")), 404, 422),

		// Webhooks
		with(r(get, "/api/webhooks", authCompany, roleViewer, "Webhooks", "List webhooks", "webhook", 200, s.listWebhooks), "", "WebhookList", nil),
		with(r(post, "/api/webhooks", authCompany, roleOwner, "Webhooks", "Register webhook", "webhook", 201, s.createWebhook), "WebhookCreate", "Webhook", nil, 422),
		with(r(get, "/api/webhooks/{webhook_id}", authCompany, roleViewer, "Webhooks", "Get webhook", "webhook", 200, s.getWebhook), "", "Webhook", nil, 404, 422),
		with(r(put, "/api/webhooks/{webhook_id}", authCompany, roleOwner, "Webhooks", "Update webhook (URL, events, status, secret)", "webhook", 200, s.putWebhook), "WebhookUpdate", "Webhook", nil, 404, 422),
		with(r(del, "/api/webhooks/{webhook_id}", authCompany, roleOwner, "Webhooks", "Delete webhook", "webhook", 204, s.deleteWebhook), "", "", nil, 404, 422),

		// Providers
		with(r(get, "/api/providers", authCompany, roleViewer, "Providers", "List providers", "provider", 200, s.listProviders), "", "ProviderList", nil),
		with(r(post, "/api/providers/{slug}/credentials", authCompany, roleOwner, "Providers", "Store provider credentials (encrypted, never readable back)", "provider", 201, s.createCredential), "CredentialCreate", "Credential", nil, 404, 409, 422),
		with(r(del, "/api/providers/{slug}/credentials", authCompany, roleOwner, "Providers", "Delete stored provider credentials", "credentials", 204, s.deleteCredential), "", "", nil, 404),

		// The document itself, where to find things, and the reference page
		with(r(get, "/api/openapi.json", authNone, rolePublic, "Meta", "This OpenAPI document", "", 200, s.openAPI), "", "", nil),
		with(r(get, "/api", authNone, rolePublic, "Meta", "Where things are: the API reference, this document, health checks, metrics", "", 200, s.apiIndex), "", "APIIndex", nil),
		{method: get, path: apidocs.Path, auth: authNone, role: rolePublic, tag: "Meta", summary: "The API reference in the browser (HTML, rendered from this document)",
			status: 200, page: apidocs.Handler(nil)},
	}
	return append(routes, s.extraRoutes()...)
}

func dateParams(required bool) []param {
	if required {
		return []param{qreq("start_date", "string", "YYYY-MM-DD"), qreq("end_date", "string", "YYYY-MM-DD")}
	}
	return []param{q("start_date", "string", "YYYY-MM-DD (default: first day of this month)"), q("end_date", "string", "YYYY-MM-DD (default: today)")}
}

// pathParams lists the {names} of a path.
func pathParams(path string) []string {
	var out []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			out = append(out, strings.Trim(seg, "{}"))
		}
	}
	return out
}
