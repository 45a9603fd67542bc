package control

import (
	"strings"
	"testing"
)

// TestCheckRoutes: a route without a role, a public route with a role, a keyed
// route marked public and a route twice are all refused.
func TestCheckRoutes(t *testing.T) {
	h := func(*call) (result, error) { return ok(nil) }
	cases := []struct {
		name   string
		routes []*route
		want   string
	}{
		{"fine", []*route{{method: "GET", path: "/a", auth: authUser, role: roleViewer, h: h}, {method: "GET", path: "/doc", auth: authNone, role: rolePublic, h: h}}, ""},
		{"no role", []*route{{method: "POST", path: "/a", auth: authUser, h: h}}, "has no role"},
		{"public with a key", []*route{{method: "GET", path: "/a", auth: authUser, role: rolePublic, h: h}}, "does not fit"},
		{"keyless with a role", []*route{{method: "GET", path: "/a", auth: authNone, role: roleViewer, h: h}}, "does not fit"},
		{"twice", []*route{{method: "GET", path: "/a", auth: authUser, role: roleViewer, h: h}, {method: "GET", path: "/a", auth: authUser, role: roleMember, h: h}}, "twice"},
	}
	for _, c := range cases {
		err := checkRoutes(c.routes)
		if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	var s Server
	if err := checkRoutes(s.table()); err != nil {
		t.Fatalf("the route table: %v", err)
	}
}
