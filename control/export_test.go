package control

// RouteInfo is one served route of the table, for the tests of package control_test.
type RouteInfo struct {
	Method, Path string
	Auth         string // none, any, company, user, agency or all
}

// Routes lists the route table the mux and the OpenAPI document are built from.
func Routes(s *Server) []RouteInfo {
	names := map[authKind]string{authNone: "none", authAny: "any", authCompany: "company", authUser: "user", authAgency: "agency", authAll: "all"}
	out := make([]RouteInfo, 0, len(s.routes))
	for _, rt := range s.routes {
		out = append(out, RouteInfo{Method: rt.method, Path: rt.path, Auth: names[rt.auth]})
	}
	return out
}
