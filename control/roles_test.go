package control_test

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestViewerCannotWrite: a user key with role viewer is refused (403
// permission_denied) on every route that changes something, taken from the
// OpenAPI document (so routes added later are covered without editing this
// test), with the ids of real resources in the path, so that without the
// role check the request would have gone through.
func TestViewerCannotWrite(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Roles")
	agentID := e.newAgent(tn, "Role Agent")
	viewer := e.must(201, "POST", "/api/users/", tn.compKey, map[string]any{"email": "viewer@roles.example", "name": "V", "role": "viewer"}).json(t)
	vKey, vID := viewer["api_key"].(string), int64(viewer["id"].(float64))

	var doc map[string]any
	if err := json.Unmarshal(e.must(200, "GET", "/api/openapi.json", "", nil).Body, &doc); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{"company_id": strconv.FormatInt(tn.id, 10), "agent_id": strconv.FormatInt(agentID, 10),
		"user_id": strconv.FormatInt(vID, 10), "slug": "elevenlabs"}
	fill := func(path string) string {
		for _, seg := range strings.Split(path, "/") {
			if name, ok := strings.CutPrefix(seg, "{"); ok {
				name = strings.TrimSuffix(name, "}")
				v := ids[name]
				if v == "" {
					v = "1"
				}
				path = strings.Replace(path, seg, v, 1)
			}
		}
		return path
	}
	var writes, reads []string
	for path, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			o := op.(map[string]any)
			if o["security"] == nil {
				continue
			}
			role, _ := o["x-cxco-role"].(string)
			if role == "" {
				t.Errorf("%s %s: no x-cxco-role in the OpenAPI document", strings.ToUpper(method), path)
			}
			if !strings.Contains(o["description"].(string), "ole") {
				t.Errorf("%s %s: the description does not say which role it needs: %q", strings.ToUpper(method), path, o["description"])
			}
			m := strings.ToUpper(method)
			if m == "GET" {
				if role != "viewer" {
					t.Errorf("GET %s needs role %s; every read is open to viewers", path, role)
				}
				reads = append(reads, m+" "+path)
				continue
			}
			if role == "viewer" {
				t.Errorf("%s %s: a write route open to viewers", m, path)
			}
			writes = append(writes, m+" "+path)
		}
	}
	sort.Strings(writes)
	if len(writes) < 20 {
		t.Fatalf("only %d write routes in the document", len(writes))
	}
	for _, w := range writes {
		m, path, _ := strings.Cut(w, " ")
		r := e.do(m, fill(path), vKey, map[string]any{"name": "Renamed by a viewer"})
		if r.Status != 403 {
			t.Errorf("viewer key on %s: %d %s, want 403", w, r.Status, r.Body)
			continue
		}
		isError(t, "viewer key on "+w, r, 403, "permission_denied", "")
	}
	// Reads stay open to the viewer where a user key is accepted at all.
	for _, path := range []string{"/api/agents/", "/api/agents/" + ids["agent_id"], "/api/conversations/", "/api/users/me",
		"/api/companies/" + ids["company_id"], "/api/usage/summary", "/api/voices/", "/api/phone-numbers/", "/api/contacts/"} {
		e.must(200, "GET", path, vKey, nil)
	}
	// Nothing changed.
	a := e.must(200, "GET", "/api/agents/"+ids["agent_id"], tn.userKey, nil).json(t)
	co := e.must(200, "GET", "/api/companies/"+ids["company_id"], tn.userKey, nil).json(t)
	if a["name"] != "Role Agent" || co["name"] != "Roles" || a["status"] != "draft" {
		t.Fatalf("a viewer changed something: agent %v %v, company %v", a["name"], a["status"], co["name"])
	}
}

// TestRoleLevels: member may do the day-to-day work (agents, contacts) but not
// company-wide changes; admin and owner may; the company key acts as owner; a
// change of role takes effect on the next request.
func TestRoleLevels(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Levels")
	key := map[string]string{}
	uid := map[string]int64{}
	for _, role := range []string{"owner", "admin", "member", "viewer"} {
		u := e.must(201, "POST", "/api/users/", tn.compKey, map[string]any{"email": role + "@levels.example", "name": role, "role": role}).json(t)
		key[role], uid[role] = u["api_key"].(string), int64(u["id"].(float64))
	}
	company := p("/api/companies/%d", tn.id)
	cases := []struct {
		role, method, path string
		body               any
		want               int
	}{
		{"member", "POST", "/api/agents/", agentBody(nil), 201},
		{"viewer", "POST", "/api/agents/", agentBody(nil), 403},
		{"member", "PUT", company, map[string]any{"name": "Member rename"}, 403},
		{"admin", "PUT", company, map[string]any{"name": "Admin rename"}, 200},
		{"owner", "PUT", company, map[string]any{"name": "Owner rename"}, 200},
	}
	for _, c := range cases {
		r := e.do(c.method, c.path, key[c.role], c.body)
		if r.Status != c.want {
			t.Errorf("%s on %s %s: %d %s, want %d", c.role, c.method, c.path, r.Status, r.Body, c.want)
		}
		if c.want == 403 {
			isError(t, c.role, r, 403, "permission_denied", "role")
		}
	}
	e.must(200, "PUT", company, tn.compKey, map[string]any{"name": "Company key rename"})
	agent := e.newAgent(tn, "Archivable")
	e.fails(403, "permission_denied", "admin", "DELETE", p("/api/agents/%d", agent), key["member"], nil)
	e.must(200, "DELETE", p("/api/agents/%d", agent), key["admin"], nil)
	// Demoting the admin takes effect at once.
	e.must(200, "PUT", p("/api/users/%d", uid["admin"]), tn.compKey, map[string]any{"role": "viewer"})
	e.fails(403, "permission_denied", "viewer", "PUT", company, key["admin"], map[string]any{"name": "Too late"})
}
