package control

import (
	"fmt"
	"net/http"

	"github.com/cxco/gateway/store"
)

// role is the least a caller must hold to use a route. Every route in the table
// names one (New refuses a table with a route that does not), and the OpenAPI
// document shows it as x-cxco-role.
//
// What each role may do (the reference names owner, admin and member; viewer is
// ours, read-only):
//
//	viewer  every read its key type allows
//	member  viewer, plus the day-to-day work: create and edit agents, publish,
//	        pause and resume them, test calls, contacts, WhatsApp enablement
//	admin   member, plus company-wide and destructive changes: the company
//	        profile, archiving agents
//	owner   admin; the company key acts as owner, and user management, webhooks
//	        and provider credentials stay with the company key as the reference
//	        says ("Requires company credentials")
//
// A user key holds its user's role, read at each request, so a change of role
// applies to the next request. The company key and the agency key hold owner on
// the routes their key type opens. A user whose stored role is unknown holds
// viewer.
type role int

const (
	roleUnset  role = iota // no role given: a bug New refuses
	rolePublic             // no key at all (the OpenAPI document)
	roleViewer
	roleMember
	roleAdmin
	roleOwner
)

func (r role) String() string {
	switch r {
	case rolePublic:
		return "public"
	case roleViewer:
		return store.RoleViewer
	case roleMember:
		return store.RoleMember
	case roleAdmin:
		return store.RoleAdmin
	case roleOwner:
		return store.RoleOwner
	}
	return "unset"
}

// roleOf maps a stored user role to its level.
func roleOf(s string) role {
	switch s {
	case store.RoleOwner:
		return roleOwner
	case store.RoleAdmin:
		return roleAdmin
	case store.RoleMember:
		return roleMember
	}
	return roleViewer
}

// checkRoutes refuses a route table with a route that names no role, or whose
// role does not fit its auth (public routes need no key, keyed routes a real role).
func checkRoutes(routes []*route) error {
	seen := map[string]bool{}
	for _, rt := range routes {
		switch {
		case rt.role == roleUnset:
			return fmt.Errorf("control: route %s has no role", rt.pattern())
		case (rt.auth == authNone) != (rt.role == rolePublic):
			return fmt.Errorf("control: route %s: role %s does not fit its auth", rt.pattern(), rt.role)
		case seen[rt.pattern()]:
			return fmt.Errorf("control: route %s is in the table twice", rt.pattern())
		}
		seen[rt.pattern()] = true
	}
	return nil
}

// authorize checks the caller's role against the route's. Only user keys carry a
// role of their own; the user record is read only when the route needs more than
// viewer.
func (s *Server) authorize(c *call, need role) *apiError {
	if c.p.Kind != "user" || need <= roleViewer {
		return nil
	}
	u, err := s.st.GetUser(c.ctx, c.p.CompanyID, c.p.UserID)
	if err != nil {
		if e := toAPIError(err, ""); e.Status == http.StatusServiceUnavailable {
			return e
		}
		return errf(http.StatusUnauthorized, typeAuth, "invalid API key")
	}
	c.user = u
	if have := roleOf(u.Role); have < need {
		return errf(http.StatusForbidden, typePermission, "this endpoint needs role %s or above; this key's user has role %s", need, u.Role)
	}
	return nil
}

// roleDoc describes who may call a route, for the OpenAPI document.
func roleDoc(rt *route) string {
	keys := map[authKind]string{authAny: "Company key, or a user key", authCompany: "Company key",
		authUser: "User key", authAgency: "Agency key", authAll: "Agency key (every company), company key, or a user key"}[rt.auth]
	switch rt.auth {
	case authNone:
		return ""
	case authAny, authUser, authAll:
		if rt.role == roleViewer {
			return keys + " of any role (viewer and above)."
		}
		return fmt.Sprintf("%s with role %s or above (a user of a lower role gets 403).", keys, rt.role)
	}
	return keys + " (it holds role owner)."
}
