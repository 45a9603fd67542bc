package control_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cxco/gateway/control"
)

// documented are the operations of the API reference and of the agency API in
// DESIGN.md, as the route table writes them (no trailing slash).
var documented = []string{
	"GET /api/companies/{company_id}", "PUT /api/companies/{company_id}", "GET /api/companies/{company_id}/usage",
	"POST /api/users", "GET /api/users/me", "GET /api/users/{user_id}", "PUT /api/users/{user_id}", "DELETE /api/users/{user_id}",
	"POST /api/agents", "GET /api/agents", "GET /api/agents/{agent_id}", "PUT /api/agents/{agent_id}", "DELETE /api/agents/{agent_id}",
	"POST /api/agents/{agent_id}/publish", "POST /api/agents/{agent_id}/pause", "POST /api/agents/{agent_id}/resume",
	"GET /api/agents/{agent_id}/conversations", "GET /api/agents/{agent_id}/usage",
	"GET /api/voices", "GET /api/voices/{voice_id}",
	"GET /api/phone-numbers/available", "GET /api/phone-numbers", "POST /api/phone-numbers/{phone_number_id}/enable-whatsapp",
	"GET /api/phone-numbers/{phone_number_id}/whatsapp-status",
	"GET /api/conversations", "GET /api/conversations/{conversation_id}",
	"GET /api/usage/summary", "GET /api/usage/daily",
	"GET /api/webhooks", "POST /api/webhooks", "PUT /api/webhooks/{webhook_id}", "DELETE /api/webhooks/{webhook_id}",
	"GET /api/providers", "POST /api/providers/{slug}/credentials",
	"GET /api/contacts", "GET /api/contacts/{contact_id}", "PUT /api/contacts/{contact_id}",
	"GET /api/agency", "PUT /api/agency", "POST /api/agency/companies", "GET /api/agency/companies",
	"GET /api/agency/companies/{company_id}", "PUT /api/agency/companies/{company_id}", "POST /api/agency/companies/{company_id}/rotate-key",
	"POST /api/agency/phone-numbers", "GET /api/agency/phone-numbers", "DELETE /api/agency/phone-numbers/{phone_number_id}",
	"POST /api/agency/voices", "PUT /api/agency/voices/{voice_id}", "DELETE /api/agency/voices/{voice_id}",
	"GET /api/openapi.json",
}

// TestOpenAPI: GET /api/openapi.json is a valid OpenAPI 3.1 document; every route of
// the table is in it, every operation in it is served, and the reference's
// operations are all there.
func TestOpenAPI(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.must(200, "GET", "/api/openapi.json", "", nil)
	var doc map[string]any
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v", doc["openapi"])
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] == nil || info["version"] == nil {
		t.Fatalf("info: %v", info)
	}
	comps, _ := doc["components"].(map[string]any)
	schemas, _ := comps["schemas"].(map[string]any)
	paths, _ := doc["paths"].(map[string]any)
	if len(schemas) == 0 || len(paths) == 0 {
		t.Fatal("no schemas or no paths")
	}
	secSchemes, _ := comps["securitySchemes"].(map[string]any)

	// Every $ref resolves to a schema of components/schemas.
	var refs int
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"]; ok {
				refs++
				s, _ := ref.(string)
				name, found := strings.CutPrefix(s, "#/components/schemas/")
				if !found || schemas[name] == nil {
					t.Errorf("%s: $ref %v does not resolve", where, ref)
				}
			}
			for k, c := range x {
				walk(where+"/"+k, c)
			}
		case []any:
			for i, c := range x {
				walk(where+"/"+strconv.Itoa(i), c)
			}
		}
	}
	walk("#", doc)
	if refs < 50 {
		t.Fatalf("only %d $refs: the document hardly uses its schemas", refs)
	}

	// The operations: well formed, unique ids, path parameters declared.
	type op struct{ method, path string }
	var ops []op
	opIDs := map[string]bool{}
	paramRe := regexp.MustCompile(`\{([a-z_]+)\}`)
	for path, item := range paths {
		for method, o := range item.(map[string]any) {
			if !slices.Contains([]string{"get", "put", "post", "delete", "patch"}, method) {
				t.Errorf("%s: unexpected key %q", path, method)
				continue
			}
			ops = append(ops, op{strings.ToUpper(method), path})
			o := o.(map[string]any)
			id, _ := o["operationId"].(string)
			if id == "" || opIDs[id] {
				t.Errorf("%s %s: operationId %q missing or repeated", method, path, id)
			}
			opIDs[id] = true
			resps, _ := o["responses"].(map[string]any)
			has2xx := false
			for code, rsp := range resps {
				has2xx = has2xx || strings.HasPrefix(code, "2")
				if rsp.(map[string]any)["description"] == nil {
					t.Errorf("%s %s: response %s has no description", method, path, code)
				}
			}
			if !has2xx {
				t.Errorf("%s %s: no success response", method, path)
			}
			declared := map[string]bool{}
			params, _ := o["parameters"].([]any)
			for _, pa := range params {
				pa := pa.(map[string]any)
				if pa["in"] == "path" {
					declared[pa["name"].(string)] = pa["required"] == true
				}
			}
			for _, m := range paramRe.FindAllStringSubmatch(path, -1) {
				if !declared[m[1]] {
					t.Errorf("%s %s: path parameter %s not declared as required", method, path, m[1])
				}
			}
			if rb, has := o["requestBody"].(map[string]any); has {
				// An empty body is read as {}: it may be left out unless the schema requires fields.
				ref, _ := rb["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)["$ref"].(string)
				sc, _ := schemas[strings.TrimPrefix(ref, "#/components/schemas/")].(map[string]any)
				_, needs := sc["required"]
				if rb["required"] != needs {
					t.Errorf("%s %s: requestBody.required = %v, but its schema %s requires %v", method, path, rb["required"], ref, sc["required"])
				}
			}
			if sec, has := o["security"].([]any); has {
				for _, s := range sec {
					for name := range s.(map[string]any) {
						if secSchemes[name] == nil {
							t.Errorf("%s %s: security scheme %s not defined", method, path, name)
						}
					}
				}
				for _, code := range []string{"401", "403"} {
					if resps[code] == nil {
						t.Errorf("%s %s: authenticated but %s not documented", method, path, code)
					}
				}
			}
		}
	}

	// Every route of the table is documented, and nothing else is.
	table := control.Routes(e.api)
	auth := map[string]string{}
	var served []string
	for _, rt := range table {
		k := rt.Method + " " + rt.Path
		served = append(served, k)
		auth[k] = rt.Auth
		item, _ := paths[rt.Path].(map[string]any)
		if item == nil || item[strings.ToLower(rt.Method)] == nil {
			t.Errorf("route %s is not in the document", k)
		}
	}
	for _, o := range ops {
		if _, ok := auth[o.method+" "+o.path]; !ok {
			t.Errorf("documented %s %s is not in the route table", o.method, o.path)
		}
	}
	for _, d := range documented {
		if !slices.Contains(served, d) {
			t.Errorf("the reference's %s is not served", d)
		}
	}

	// Every documented operation is served: a request with a key of the right type
	// and real ids never comes back as an unknown route, a wrong method or a key refusal.
	tn := e.bigTenant("Probe Co")
	e.addNumbers("ZA", 2)
	agent := e.newAgent(tn, "Probe Agent")
	pn := num(e.publish(tn, agent)["phone_number"].(map[string]any)["id"])
	conv := e.makeConv(tn.id, convSpec{agent: agent, caller: "+27821234567", started: day("2026-03-01", "10:00:00"), answered: true, dur: 10, status: "completed"})
	hook := num(e.must(201, "POST", "/api/webhooks/", tn.compKey, map[string]any{"url": "https://hooks.example.com/p", "events": []string{"agent.status_changed"}}).json(t)["id"])
	spareUser := num(e.must(201, "POST", "/api/users/", tn.compKey, map[string]any{"email": "spare@probe.example", "name": "Spare"}).json(t)["id"])
	spareCo := num(e.must(201, "POST", "/api/agency/companies", e.agency, map[string]any{"name": "Spare Co"}).json(t)["id"])
	voice := num(e.must(201, "POST", "/api/agency/voices", e.agency, map[string]any{"name": "Probe", "external_voice_id": "p", "language": "en"}).json(t)["id"])
	poolNum := num(e.must(200, "GET", "/api/phone-numbers/available", tn.userKey, nil).list(t)[0].(map[string]any)["id"])
	values := map[string]int64{"company_id": tn.id, "user_id": tn.userID, "agent_id": agent, "conversation_id": conv.ID,
		"contact_id": *conv.ContactID, "webhook_id": hook, "voice_id": 1, "phone_number_id": pn}
	special := map[string]map[string]int64{
		"DELETE /api/users/{user_id}":                               {"user_id": spareUser},
		"DELETE /api/agency/companies/{company_id}/users/{user_id}": {"user_id": spareUser},
		"POST /api/agency/companies/{company_id}/rotate-key":        {"company_id": spareCo},
		"PUT /api/agency/companies/{company_id}":                    {"company_id": spareCo},
		"GET /api/agency/companies/{company_id}":                    {"company_id": spareCo},
		"PUT /api/agency/voices/{voice_id}":                         {"voice_id": voice},
		"DELETE /api/agency/voices/{voice_id}":                      {"voice_id": voice},
		"PUT /api/agency/phone-numbers/{phone_number_id}":           {"phone_number_id": poolNum},
		"DELETE /api/agency/phone-numbers/{phone_number_id}":        {"phone_number_id": poolNum},
		"POST /api/phone-numbers/{phone_number_id}/enable-whatsapp": {"phone_number_id": pn},
	}
	keyFor := map[string]string{"none": "", "any": tn.userKey, "company": tn.compKey, "user": tn.userKey, "agency": e.agency, "all": tn.userKey}
	sort.Slice(ops, func(i, j int) bool { // destructive operations last
		di, dj := ops[i].method == http.MethodDelete, ops[j].method == http.MethodDelete
		if di != dj {
			return dj
		}
		return ops[i].method+ops[i].path < ops[j].method+ops[j].path
	})
	for _, o := range ops {
		k := o.method + " " + o.path
		path := paramRe.ReplaceAllStringFunc(o.path, func(m string) string {
			name := strings.Trim(m, "{}")
			if name == "slug" {
				return "elevenlabs"
			}
			if v, ok := special[k][name]; ok {
				return strconv.FormatInt(v, 10)
			}
			return strconv.FormatInt(values[name], 10)
		})
		var body any
		if o.method == http.MethodPost || o.method == http.MethodPut {
			body = "{}"
		}
		if strings.HasSuffix(o.path, "/events") { // a stream: its answer starts, and never ends
			req, _ := http.NewRequest(o.method, e.base+path, nil)
			req.Header.Set("X-API-Key", keyFor[auth[k]])
			res, err := http.DefaultClient.Do(req)
			if err != nil || res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
				t.Errorf("documented %s is not served as a stream: %v %v", k, err, res)
			}
			if res != nil {
				res.Body.Close()
			}
			continue
		}
		r := e.do(o.method, path, keyFor[auth[k]], body)
		var eb struct{ Detail string }
		_ = json.Unmarshal(r.Body, &eb)
		if r.Status == 405 || (r.Status == 404 && strings.Contains(eb.Detail, "no such route")) || r.Status == 401 || r.Status == 403 {
			t.Errorf("documented %s (as %s) is not served: %d %s", k, path, r.Status, r.Body)
		}
	}
}
