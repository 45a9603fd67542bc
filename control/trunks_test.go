package control_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cxco/gateway/control"
	"github.com/cxco/gateway/store"
)

// trunkRuntime is the SIP side as the control plane sees it: the default trunk,
// a reload count and fixed registration states.
type trunkRuntime struct {
	reloads atomic.Int32
	regs    []control.Registration
}

func (r *trunkRuntime) DefaultTrunk() store.Trunk {
	return store.Trunk{Name: "default", Allow: []string{"127.0.0.0/8"}, Username: "flaguser", InboundAuth: true}
}
func (r *trunkRuntime) ReloadTrunks(context.Context) error    { r.reloads.Add(1); return nil }
func (r *trunkRuntime) Registrations() []control.Registration { return r.regs }

// TestTrunksAPI: the agency lists, adds, reads, changes and removes trunks; the
// default trunk of the flags is listed first and is read-only; the password is
// never shown; bad input is 422 naming the field; every change reloads the SIP
// side at once; registration states are shown with their trunk.
func TestTrunksAPI(t *testing.T) {
	rt := &trunkRuntime{}
	e := newEnv(t, envOpts{trunks: rt})
	list := e.must(200, "GET", "/api/agency/trunks", e.agency, nil).json(t)["items"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["source"] != "flags" || num(list[0].(map[string]any)["id"]) != 0 {
		t.Fatalf("want only the default trunk: %v", list)
	}
	body := map[string]any{"name": "Carrier ZA", "allow": []string{"192.0.2.0/24"}, "uri": "sips:sip.carrier.example",
		"username": "acct1", "password": "pa55word-secret", "srtp": "required", "codecs": []string{"G722", "PCMU"},
		"numbers":      map[string]any{"country": "ZA"},
		"registration": map[string]any{"enabled": true, "expires": 300}}
	r := e.must(201, "POST", "/api/agency/trunks", e.agency, body)
	if strings.Contains(string(r.Body), "pa55word") || strings.Contains(string(r.Body), "sealed") {
		t.Fatalf("the password shows: %s", r.Body)
	}
	tr := r.json(t)
	id := num(tr["id"])
	if tr["has_password"] != true || tr["srtp"] != "required" || tr["source"] != "api" {
		t.Fatalf("created: %s", r.Body)
	}
	if rt.reloads.Load() != 1 {
		t.Fatalf("%d reloads after a create", rt.reloads.Load())
	}
	e.fails(409, "conflict", "already exists", "POST", "/api/agency/trunks", e.agency, map[string]any{"name": "carrier za"})
	e.fails(422, "validation_error", "srtp", "POST", "/api/agency/trunks", e.agency, map[string]any{"name": "x", "srtp": "sometimes"})
	e.fails(422, "validation_error", "allow", "POST", "/api/agency/trunks", e.agency, map[string]any{"name": "x", "allow": []string{"not-a-net"}})
	e.fails(422, "validation_error", "unknown field", "POST", "/api/agency/trunks", e.agency, map[string]any{"name": "x", "tls": map[string]any{"verify": false}})
	e.fails(422, "validation_error", "unknown field", "POST", "/api/agency/trunks", e.agency, map[string]any{"name": "x", "colour": "red"})
	e.fails(422, "validation_error", "username", "POST", "/api/agency/trunks", e.agency, map[string]any{"name": "x", "password": "p"})
	e.fails(403, "permission_denied", "", "GET", "/api/agency/trunks", e.newTenant("Trunk Co").compKey, nil)

	// A partial update keeps what it does not name; an object is replaced whole.
	up := e.must(200, "PUT", p("/api/agency/trunks/%d", id), e.agency, map[string]any{"codecs": []string{"opus"}, "numbers": map[string]any{"country": "GB"}}).json(t)
	if up["srtp"] != "required" || up["codecs"].([]any)[0] != "opus" || up["numbers"].(map[string]any)["country"] != "GB" || up["has_password"] != true {
		t.Fatalf("updated: %v", up)
	}
	up = e.must(200, "PUT", p("/api/agency/trunks/%d", id), e.agency, map[string]any{"password": ""}).json(t)
	if up["has_password"] != false {
		t.Fatalf("password removed: %v", up)
	}
	rt.regs = []control.Registration{{TrunkID: id, Trunk: "Carrier ZA", Registrar: "sips:sip.carrier.example", State: "registered"}}
	got := e.must(200, "GET", p("/api/agency/trunks/%d", id), e.agency, nil).json(t)
	if regs := got["registrations"].([]any); len(regs) != 1 || regs[0].(map[string]any)["state"] != "registered" {
		t.Fatalf("registrations: %v", got["registrations"])
	}
	if l := e.must(200, "GET", "/api/agency/registrations", e.agency, nil).list(t); len(l) != 1 {
		t.Fatalf("registrations list: %v", l)
	}
	d := e.must(200, "GET", "/api/agency/trunks/0", e.agency, nil).json(t)
	if d["name"] != "default" || d["inbound_auth"] != true {
		t.Fatalf("default trunk: %v", d)
	}
	e.fails(409, "conflict", "default trunk", "PUT", "/api/agency/trunks/0", e.agency, map[string]any{"name": "x"})
	e.fails(409, "conflict", "default trunk", "DELETE", "/api/agency/trunks/0", e.agency, nil)
	e.fails(422, "validation_error", "trunk_id", "GET", "/api/agency/trunks/abc", e.agency, nil)
	e.must(204, "DELETE", p("/api/agency/trunks/%d", id), e.agency, nil)
	e.fails(404, "not_found", "trunk", "GET", p("/api/agency/trunks/%d", id), e.agency, nil)
	e.fails(404, "not_found", "trunk", "PUT", p("/api/agency/trunks/%d", id), e.agency, map[string]any{"name": "y"})
	if rt.reloads.Load() != 4 {
		t.Fatalf("%d reloads after create, two updates and a delete", rt.reloads.Load())
	}
}

// TestTrunkCodecsAsStored: a trunk that names no codecs shows none (it takes PCMU
// and PCMA in the caller's order), so reading a trunk and writing back what was
// read leaves its negotiation as it was. It showed ["PCMU","PCMA"], which written
// back made PCMU win over a caller's PCMA.
func TestTrunkCodecsAsStored(t *testing.T) {
	e := newEnv(t, envOpts{trunks: &trunkRuntime{}})
	d := e.must(200, "GET", "/api/agency/trunks/0", e.agency, nil).json(t)
	if c, isList := d["codecs"].([]any); !isList || len(c) != 0 {
		t.Fatalf("the default trunk names no codecs, the API shows %v", d["codecs"])
	}
	tr := e.must(201, "POST", "/api/agency/trunks", e.agency, map[string]any{"name": "plain", "allow": []string{"192.0.2.1"}}).json(t)
	id := num(tr["id"])
	if c, isList := tr["codecs"].([]any); !isList || len(c) != 0 {
		t.Fatalf("created without codecs, shown with %v", tr["codecs"])
	}
	back := map[string]any{"codecs": tr["codecs"], "srtp": tr["srtp"], "allow": tr["allow"]}
	e.must(200, "PUT", p("/api/agency/trunks/%d", id), e.agency, back)
	st, err := e.st.GetTrunk(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Codecs) != 0 {
		t.Fatalf("writing back what GET showed stored codecs %v", st.Codecs)
	}
	named := e.must(200, "PUT", p("/api/agency/trunks/%d", id), e.agency, map[string]any{"codecs": []string{"PCMA"}}).json(t)
	if c := named["codecs"].([]any); len(c) != 1 || c[0] != "PCMA" {
		t.Fatalf("named codecs: %v", named["codecs"])
	}
}

// TestTrunkBadTypes: a field of the wrong JSON type is a 422 that names the field
// and says what it must be, in the API's words, not Go's.
func TestTrunkBadTypes(t *testing.T) {
	e := newEnv(t, envOpts{trunks: &trunkRuntime{}})
	for _, c := range []struct {
		body any
		want string
	}{
		{map[string]any{"name": "x", "allow": "192.0.2.1"}, "allow: must be an array of strings"},
		{map[string]any{"name": "x", "allow": []any{1}}, "allow: must be an array of strings"},
		{map[string]any{"name": 5}, "name: must be a string"},
		{map[string]any{"name": "x", "srtp": 5}, "srtp: must be a string"},
		{map[string]any{"name": "x", "inbound_auth": "yes"}, "inbound_auth: must be true or false"},
		{map[string]any{"name": "x", "codecs": "PCMU"}, "codecs: must be an array of strings"},
		{map[string]any{"name": "x", "numbers": "ZA"}, "numbers: must be an object"},
		{map[string]any{"name": "x", "numbers": map[string]any{"country": 27}}, "numbers.country: must be a string"},
		{map[string]any{"name": "x", "registration": map[string]any{"enabled": "yes"}}, "registration.enabled: must be true or false"},
		{map[string]any{"name": "x", "registration": map[string]any{"expires": "600"}}, "registration.expires: must be an integer"},
		{map[string]any{"name": "x", "tls": map[string]any{"verify": false}}, "tls.verify: unknown field"},
	} {
		r := e.do("POST", "/api/agency/trunks", e.agency, c.body)
		m := r.json(t)
		d, _ := m["detail"].(string)
		if r.Status != 422 || m["error_type"] != "validation_error" || !strings.HasPrefix(d, c.want) || strings.Contains(d, "Go ") || strings.Contains(d, "json:") {
			t.Errorf("%v: %d %s, want 422 validation_error %q...", c.body, r.Status, r.Body, c.want)
		}
	}
}
