package control_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestVoices: the catalogue with its language/gender/accent filters, and one voice.
func TestVoices(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Listeners")
	names := func(q string) []string {
		var out []string
		for _, v := range e.must(200, "GET", "/api/voices/"+q, tn.userKey, nil).list(t) {
			out = append(out, v.(map[string]any)["name"].(string))
		}
		return out
	}
	for _, c := range []struct {
		q    string
		want []string
	}{
		// ElevenLabs' premade voices, then OpenAI Realtime's.
		{"", append([]string{"Rachel", "James", "Domi", "Antoni", "Lily", "Daniel"}, openAIVoices...)},
		{"?language=en", append([]string{"Rachel", "James", "Domi", "Antoni", "Lily", "Daniel"}, openAIVoices...)},
		{"?language=fr", nil},
		{"?gender=female", []string{"Rachel", "Domi", "Lily"}},
		{"?gender=Male", []string{"James", "Antoni", "Daniel"}},
		{"?accent=british", []string{"James", "Lily", "Daniel"}},
		{"?gender=male&accent=british", []string{"James", "Daniel"}},
		{"?gender=female&accent=american&language=en", []string{"Rachel", "Domi"}},
		{"?accent=klingon", nil},
	} {
		if got := names(c.q); !slices.Equal(got, c.want) {
			t.Errorf("voices%s: %v, want %v", c.q, got, c.want)
		}
	}
	// Any key of a company reads the catalogue.
	e.must(200, "GET", "/api/voices", tn.compKey, nil)

	v := e.must(200, "GET", "/api/voices/2", tn.userKey, nil).json(t)
	want := map[string]any{"id": 2.0, "provider_id": 1.0, "external_voice_id": "29vD33N1CtxCmqQRPOHJ", "name": "James",
		"gender": "male", "accent": "british", "language": "en", "preview_url": "https://cdn.example.com/voices/james_preview.mp3", "status": "active"}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("voice 2 %s = %v, want %v", k, v[k], w)
		}
	}
	if tags := v["tags"].(map[string]any); tags["style"] != "authoritative" || tags["tone"] != "calm" {
		t.Errorf("voice 2 tags: %v", tags)
	}
	o := e.must(200, "GET", "/api/voices/7", tn.userKey, nil).json(t)
	if o["provider_id"] != 4.0 || o["external_voice_id"] != "marin" || o["name"] != "Marin" || o["gender"] != nil {
		t.Errorf("voice 7: %v", o)
	}
	e.fails(404, "not_found", "voice", "GET", "/api/voices/999", tn.userKey, nil)
	e.fails(422, "validation_error", "voice_id", "GET", "/api/voices/rachel", tn.userKey, nil)
}

var openAIVoices = []string{"Marin", "Cedar", "Alloy", "Ash", "Ballad", "Coral", "Echo", "Sage", "Shimmer", "Verse"}

// TestPhoneNumbersAndWhatsApp: available numbers by country, the company's numbers,
// one number, WhatsApp enablement through the built-in verifier and its status.
func TestPhoneNumbersAndWhatsApp(t *testing.T) {
	e := newEnv(t, envOpts{verifyDelay: 50 * time.Millisecond})
	tn := e.bigTenant("Chatty")
	other := e.bigTenant("Neighbour")
	za := e.addNumbers("ZA", 3)
	e.addNumbers("US", 2)

	for _, c := range []struct {
		q    string
		want int
	}{{"", 5}, {"?country_code=ZA", 3}, {"?country_code=us", 2}, {"?country_code=GB", 0}, {"?country_code=ZA&limit=2", 2}} {
		l := e.must(200, "GET", "/api/phone-numbers/available"+c.q, tn.userKey, nil).list(t)
		if len(l) != c.want {
			t.Errorf("available%s: %d numbers, want %d", c.q, len(l), c.want)
		}
		for _, n := range l {
			n := n.(map[string]any)
			if n["status"] != "available" || n["company_id"] != nil || n["agent_id"] != nil || n["whatsapp_status"] != "none" {
				t.Errorf("available number: %v", n)
			}
		}
	}
	isError(t, "available bad country", e.do("GET", "/api/phone-numbers/available?country_code=XX", tn.userKey, nil), 422, "validation_error", "country_code")
	isError(t, "available bad limit", e.do("GET", "/api/phone-numbers/available?limit=101", tn.userKey, nil), 422, "validation_error", "limit")
	e.fails(403, "permission_denied", "user key", "GET", "/api/phone-numbers/available", tn.compKey, nil)

	if l := e.must(200, "GET", "/api/phone-numbers/", tn.userKey, nil).list(t); len(l) != 0 {
		t.Fatalf("a new company has numbers: %v", l)
	}
	aid := e.newAgent(tn, "WhatsApp Agent")
	a := e.publish(tn, aid)
	pnID := num(a["phone_number"].(map[string]any)["id"])

	mine := e.must(200, "GET", "/api/phone-numbers", tn.userKey, nil).list(t)
	if len(mine) != 1 {
		t.Fatalf("company numbers: %v", mine)
	}
	n := mine[0].(map[string]any)
	if num(n["id"]) != pnID || n["number"] != za[0] || n["status"] != "assigned" || num(n["agent_id"]) != aid || num(n["company_id"]) != tn.id ||
		n["whatsapp_status"] != "none" || n["country_code"] != "ZA" || n["provider_slug"] != "sip_trunk" {
		t.Fatalf("company number: %v", n)
	}
	one := e.must(200, "GET", p("/api/phone-numbers/%d", pnID), tn.userKey, nil).json(t)
	if one["number"] != za[0] {
		t.Fatalf("one number: %v", one)
	}
	free := e.must(200, "GET", "/api/phone-numbers/available?country_code=ZA", tn.userKey, nil).list(t)
	freeID := num(free[0].(map[string]any)["id"])

	// A number that is not the company's (free in the pool, or another's) is 404.
	e.fails(404, "not_found", "phone number", "GET", p("/api/phone-numbers/%d", freeID), tn.userKey, nil)
	e.fails(404, "not_found", "phone number", "POST", p("/api/phone-numbers/%d/enable-whatsapp", freeID), tn.userKey, nil)
	e.fails(404, "not_found", "phone number", "GET", p("/api/phone-numbers/%d/whatsapp-status", freeID), tn.userKey, nil)
	e.fails(404, "not_found", "phone number", "POST", "/api/phone-numbers/424242/enable-whatsapp", tn.userKey, nil)
	e.fails(404, "not_found", "phone number", "POST", p("/api/phone-numbers/%d/enable-whatsapp", pnID), other.userKey, nil)
	e.fails(422, "validation_error", "phone_number_id", "POST", "/api/phone-numbers/five/enable-whatsapp", tn.userKey, nil)
	e.fails(422, "validation_error", "phone_number_id", "GET", "/api/phone-numbers/five/whatsapp-status", tn.userKey, nil)

	st := e.must(200, "GET", p("/api/phone-numbers/%d/whatsapp-status", pnID), tn.userKey, nil).json(t)
	if len(st) != 3 || num(st["id"]) != pnID || st["number"] != za[0] || st["whatsapp_status"] != "none" {
		t.Fatalf("whatsapp-status: %v", st)
	}

	// Enable: pending at once, active after the verifier's delay.
	en := e.must(200, "POST", p("/api/phone-numbers/%d/enable-whatsapp", pnID), tn.userKey, nil).json(t)
	if en["whatsapp_status"] != "pending" || en["status"] != "assigned" || num(en["agent_id"]) != aid || en["number"] != za[0] {
		t.Fatalf("enable-whatsapp: %v", en)
	}
	e.fails(409, "conflict", "pending", "POST", p("/api/phone-numbers/%d/enable-whatsapp", pnID), tn.userKey, nil)
	waitFor(t, 10*time.Second, "WhatsApp verification", func() bool {
		return e.must(200, "GET", p("/api/phone-numbers/%d/whatsapp-status", pnID), tn.userKey, nil).json(t)["whatsapp_status"] == "active"
	})
	ag := e.must(200, "GET", p("/api/agents/%d", aid), tn.userKey, nil).json(t)
	if ag["whatsapp_enabled"] != true || ag["phone_number"].(map[string]any)["whatsapp_status"] != "active" ||
		ag["phone_number"].(map[string]any)["whatsapp_enabled"] != true {
		t.Fatalf("agent after verification: %v", ag)
	}
	n = e.must(200, "GET", p("/api/phone-numbers/%d", pnID), tn.userKey, nil).json(t)
	if n["whatsapp_status"] != "active" || n["whatsapp_external_id"] == nil {
		t.Fatalf("number after verification: %v", n)
	}
	evs := eventsOf(e.outbox(tn.id), "phone_number.whatsapp_verified")
	if len(evs) != 1 {
		t.Fatalf("whatsapp_verified events: %+v", evs)
	}
	if d := evs[0].Data; num(d["id"]) != pnID || d["whatsapp_status"] != "active" || d["number"] != za[0] {
		t.Fatalf("whatsapp_verified data: %v", d)
	}
	e.fails(409, "conflict", "already active", "POST", p("/api/phone-numbers/%d/enable-whatsapp", pnID), tn.userKey, nil)
	// The agency's view of the pool shows the same WhatsApp state.
	pool, _, _ := pageOf(t, e.must(200, "GET", "/api/agency/phone-numbers?status=assigned", e.agency, nil))
	if len(pool) != 1 || num(pool[0].(map[string]any)["id"]) != pnID || pool[0].(map[string]any)["whatsapp_status"] != "active" {
		t.Fatalf("agency pool after verification: %v", pool)
	}

	// Archiving the agent releases the number: it is no longer the company's, and a
	// new company that gets it starts without WhatsApp.
	e.must(200, "DELETE", p("/api/agents/%d", aid), tn.userKey, nil)
	e.fails(404, "not_found", "phone number", "GET", p("/api/phone-numbers/%d/whatsapp-status", pnID), tn.userKey, nil)
	e.fails(404, "not_found", "phone number", "POST", p("/api/phone-numbers/%d/enable-whatsapp", pnID), tn.userKey, nil)
	oa := e.publish(other, e.newAgent(other, "Next Owner"))
	if pn := oa["phone_number"].(map[string]any); num(pn["id"]) != pnID || pn["whatsapp_status"] != "none" {
		t.Fatalf("re-assigned number: %v", pn)
	}
}

// TestWebhooksCRUD: https only, no private or loopback targets, known events, the
// secret never returned and rotated by PUT.
func TestWebhooksCRUD(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Hooked")
	const secret = "whsec_first-secret-value"
	w := e.must(201, "POST", "/api/webhooks/", tn.compKey, map[string]any{"url": "https://hooks.example.com/cxco",
		"events": []string{"conversation.completed", "agent.status_changed"}, "secret": secret})
	wm := w.json(t)
	id := num(wm["id"])
	if wm["url"] != "https://hooks.example.com/cxco" || wm["status"] != "active" || num(wm["company_id"]) != tn.id ||
		!slices.Equal(toStrings(wm["events"]), []string{"conversation.completed", "agent.status_changed"}) || wm["has_secret"] != true {
		t.Fatalf("webhook: %v", wm)
	}
	noSecret := func(what string, body []byte) {
		t.Helper()
		if s := string(body); strings.Contains(s, "whsec_") || strings.Contains(s, `"secret"`) || strings.Contains(s, "sealed") {
			t.Fatalf("%s shows the secret: %s", what, s)
		}
	}
	noSecret("create", w.Body)
	noSecret("get", e.must(200, "GET", p("/api/webhooks/%d", id), tn.compKey, nil).Body)
	l := e.must(200, "GET", "/api/webhooks/", tn.compKey, nil)
	noSecret("list", l.Body)
	if got := ids(l.list(t)); !slices.Equal(got, []int64{id}) {
		t.Fatalf("webhooks: %v", got)
	}
	stored, err := e.st.GetWebhook(context.Background(), tn.id, id)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := e.st.WebhookSecret(stored); got != secret {
		t.Fatalf("stored secret opens to %q", got)
	}
	e.must(201, "POST", "/api/webhooks", tn.compKey, map[string]any{"url": "https://93.184.216.34/hook", "events": []string{"phone_number.whatsapp_verified"}})

	for _, c := range []struct {
		name  string
		body  any
		field string
	}{
		{"http", map[string]any{"url": "http://hooks.example.com/cxco", "events": []string{"agent.status_changed"}}, "https"},
		{"loopback v4", map[string]any{"url": "https://127.0.0.1/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"loopback v6", map[string]any{"url": "https://[::1]:8443/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"localhost", map[string]any{"url": "https://localhost/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"private 10/8", map[string]any{"url": "https://10.1.2.3/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"private 192.168/16", map[string]any{"url": "https://192.168.0.10/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"private 172.16/12", map[string]any{"url": "https://172.20.0.1/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"link-local metadata", map[string]any{"url": "https://169.254.169.254/latest", "events": []string{"agent.status_changed"}}, "url"},
		{"unique-local v6", map[string]any{"url": "https://[fd00::1]/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"v4-mapped loopback", map[string]any{"url": "https://[::ffff:127.0.0.1]/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"unspecified", map[string]any{"url": "https://0.0.0.0/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"v4-compatible loopback", map[string]any{"url": "https://[::127.0.0.1]/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"6to4 loopback", map[string]any{"url": "https://[2002:7f00:1::]/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"NAT64 local-use", map[string]any{"url": "https://[64:ff9b:1::a00:1]/hook", "events": []string{"agent.status_changed"}}, "url"},
		{"not a URL", map[string]any{"url": "hooks", "events": []string{"agent.status_changed"}}, "url"},
		{"credentials in URL", map[string]any{"url": "https://u:p@hooks.example.com/", "events": []string{"agent.status_changed"}}, "url"},
		{"url missing", map[string]any{"events": []string{"agent.status_changed"}}, "url"},
		{"events missing", map[string]any{"url": "https://hooks.example.com/x"}, "events"},
		{"events empty", map[string]any{"url": "https://hooks.example.com/x", "events": []string{}}, "events"},
		{"event unknown", map[string]any{"url": "https://hooks.example.com/x", "events": []string{"agent.status_changed", "call.started"}}, "events[1]"},
		{"events not an array", map[string]any{"url": "https://hooks.example.com/x", "events": "agent.status_changed"}, "events"},
		{"secret too short", map[string]any{"url": "https://hooks.example.com/x", "events": []string{"agent.status_changed"}, "secret": "abc"}, "secret"},
		{"unknown field", map[string]any{"url": "https://hooks.example.com/x", "events": []string{"agent.status_changed"}, "status": "active"}, "status"},
	} {
		isError(t, c.name, e.do("POST", "/api/webhooks/", tn.compKey, c.body), 422, "validation_error", c.field)
	}
	if n := len(e.must(200, "GET", "/api/webhooks/", tn.compKey, nil).list(t)); n != 2 {
		t.Fatalf("refused webhooks were stored: %d", n)
	}

	// PUT: partial, and a new secret replaces the old one.
	u := e.must(200, "PUT", p("/api/webhooks/%d", id), tn.compKey, map[string]any{"url": "https://hooks.example.com/cxco-v2",
		"events": []string{"conversation.completed", "conversation.transferred", "agent.status_changed"}, "secret": "whsec_second-secret-value"})
	noSecret("put", u.Body)
	um := u.json(t)
	if um["url"] != "https://hooks.example.com/cxco-v2" || len(toStrings(um["events"])) != 3 || um["status"] != "active" {
		t.Fatalf("updated webhook: %v", um)
	}
	stored, _ = e.st.GetWebhook(context.Background(), tn.id, id)
	if got, _ := e.st.WebhookSecret(stored); got != "whsec_second-secret-value" {
		t.Fatalf("rotated secret opens to %q", got)
	}
	um = e.must(200, "PUT", p("/api/webhooks/%d", id), tn.compKey, map[string]any{"status": "disabled"}).json(t)
	if um["status"] != "disabled" || um["url"] != "https://hooks.example.com/cxco-v2" || um["has_secret"] != true {
		t.Fatalf("disabled webhook: %v", um)
	}
	for _, c := range []struct {
		name  string
		body  any
		field string
	}{
		{"http", map[string]any{"url": "http://hooks.example.com/"}, "https"},
		{"private", map[string]any{"url": "https://10.0.0.1/"}, "url"},
		{"event unknown", map[string]any{"events": []string{"nope"}}, "events[0]"},
		{"status unknown", map[string]any{"status": "paused"}, "status"},
		{"secret too short", map[string]any{"secret": "short"}, "secret"},
		{"unknown field", map[string]any{"company_id": 9}, "company_id"},
	} {
		isError(t, c.name, e.do("PUT", p("/api/webhooks/%d", id), tn.compKey, c.body), 422, "validation_error", c.field)
	}
	e.fails(404, "not_found", "webhook", "PUT", "/api/webhooks/424242", tn.compKey, map[string]any{"status": "active"})
	e.fails(403, "permission_denied", "company key", "GET", "/api/webhooks/", tn.userKey, nil)

	e.must(204, "DELETE", p("/api/webhooks/%d", id), tn.compKey, nil)
	e.fails(404, "not_found", "webhook", "GET", p("/api/webhooks/%d", id), tn.compKey, nil)
	e.fails(404, "not_found", "webhook", "DELETE", p("/api/webhooks/%d", id), tn.compKey, nil)
	e.fails(422, "validation_error", "webhook_id", "DELETE", "/api/webhooks/first", tn.compKey, nil)
	if n := len(e.must(200, "GET", "/api/webhooks/", tn.compKey, nil).list(t)); n != 1 {
		t.Fatalf("webhooks after delete: %d", n)
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, len(l))
	for i, s := range l {
		out[i], _ = s.(string)
	}
	return out
}

// TestProviders: the provider list, credentials stored once per provider, never
// readable back, deleted and stored again.
func TestProviders(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Credentialed")
	other := e.bigTenant("Other")

	l := e.must(200, "GET", "/api/providers/", tn.compKey, nil).list(t)
	var slugs []string
	for _, pr := range l {
		pr := pr.(map[string]any)
		slugs = append(slugs, pr["slug"].(string))
		if pr["id"] == nil || pr["name"] == nil || pr["type"] == nil || pr["status"] != "active" {
			t.Fatalf("provider: %v", pr)
		}
	}
	if !slices.Contains(slugs, "elevenlabs") || !slices.Contains(slugs, "sip_trunk") {
		t.Fatalf("providers: %v", slugs)
	}
	e.fails(403, "permission_denied", "company key", "GET", "/api/providers/", tn.userKey, nil)

	const apiKey = "sk-elevenlabs-VERY-distinctive-9f8e7d"
	body := map[string]any{"company_id": tn.id, "credentials": map[string]any{"api_key": apiKey}}
	r := e.must(201, "POST", "/api/providers/elevenlabs/credentials", tn.compKey, body)
	c := r.json(t)
	if num(c["company_id"]) != tn.id || num(c["provider_id"]) != 1 || c["status"] != "active" || c["id"] == nil || c["created_at"] == nil || len(c) != 5 {
		t.Fatalf("credential: %v", c)
	}
	if strings.Contains(string(r.Body), apiKey) {
		t.Fatalf("credential response shows the secret: %s", r.Body)
	}
	e.fails(409, "conflict", "already exist", "POST", "/api/providers/elevenlabs/credentials", tn.compKey, body)
	// Never readable back: there is no read route.
	r = e.do("GET", "/api/providers/elevenlabs/credentials", tn.compKey, nil)
	isError(t, "read credentials", r, 405, "method_not_allowed", "not allowed")
	for _, path := range []string{"/api/providers/", p("/api/companies/%d", tn.id)} {
		if b := e.must(200, "GET", path, tn.compKey, nil).Body; strings.Contains(string(b), apiKey) {
			t.Fatalf("GET %s shows the credential", path)
		}
	}
	// The gateway itself can open them (to call the provider with the company's key).
	if got, err := e.st.CredentialSecrets(context.Background(), tn.id, "elevenlabs"); err != nil || got["api_key"] != apiKey {
		t.Fatalf("stored credentials open to %v, %v", got, err)
	}

	for _, c := range []struct {
		name, slug string
		body       any
		status     int
		errType    string
		contains   string
	}{
		{"unknown slug", "acme_voice", body, 404, "not_found", "acme_voice"},
		{"another company's id", "sip_trunk", map[string]any{"company_id": other.id, "credentials": map[string]any{"username": "u", "password": "p"}}, 404, "not_found", "company"},
		{"company_id missing", "sip_trunk", map[string]any{"credentials": map[string]any{"username": "u"}}, 422, "validation_error", "company_id"},
		{"company_id a string", "sip_trunk", map[string]any{"company_id": "1", "credentials": map[string]any{"username": "u"}}, 422, "validation_error", "company_id"},
		{"credentials missing", "sip_trunk", map[string]any{"company_id": tn.id}, 422, "validation_error", "credentials"},
		{"credentials empty", "sip_trunk", map[string]any{"company_id": tn.id, "credentials": map[string]any{}}, 422, "validation_error", "credentials"},
		{"credentials not an object", "sip_trunk", map[string]any{"company_id": tn.id, "credentials": "secret"}, 422, "validation_error", "credentials"},
		{"credential value not a string", "sip_trunk", map[string]any{"company_id": tn.id, "credentials": map[string]any{"port": 5060}}, 422, "validation_error", "credentials.port"},
		{"unknown field", "sip_trunk", map[string]any{"company_id": tn.id, "credentials": map[string]any{"u": "x"}, "name": "x"}, 422, "validation_error", "name"},
	} {
		isError(t, c.name, e.do("POST", "/api/providers/"+c.slug+"/credentials", tn.compKey, c.body), c.status, c.errType, c.contains)
	}
	e.fails(403, "permission_denied", "company key", "POST", "/api/providers/sip_trunk/credentials", tn.userKey, body)

	// The other company is independent; delete then store again works.
	e.must(201, "POST", "/api/providers/elevenlabs/credentials", other.compKey, map[string]any{"company_id": other.id, "credentials": map[string]any{"api_key": "sk-other"}})
	e.must(204, "DELETE", "/api/providers/elevenlabs/credentials", tn.compKey, nil)
	e.fails(404, "not_found", "credentials", "DELETE", "/api/providers/elevenlabs/credentials", tn.compKey, nil)
	e.fails(404, "not_found", "acme", "DELETE", "/api/providers/acme/credentials", tn.compKey, nil)
	body["credentials"] = map[string]any{"api_key": "sk-elevenlabs-replacement"}
	e.must(201, "POST", "/api/providers/elevenlabs/credentials", tn.compKey, body)
	if got, _ := e.st.CredentialSecrets(context.Background(), tn.id, "elevenlabs"); got["api_key"] != "sk-elevenlabs-replacement" {
		t.Fatalf("replaced credentials open to %v", got)
	}
	if got, _ := e.st.CredentialSecrets(context.Background(), other.id, "elevenlabs"); got["api_key"] != "sk-other" {
		t.Fatalf("other company's credentials: %v", got)
	}
}
