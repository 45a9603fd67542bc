package control

// apiIndexView is GET /api: where an operator finds the rest. Links to
// handlers mounted beside the API (health, metrics, dashboard) appear only
// when they are.
type apiIndexView struct {
	Name      string            `json:"name"`
	Version   string            `json:"version"`
	Docs      string            `json:"docs"`
	OpenAPI   string            `json:"openapi"`
	Health    map[string]string `json:"health,omitempty"`
	Metrics   string            `json:"metrics,omitempty"`
	Dashboard string            `json:"dashboard,omitempty"`
}

func (s *Server) apiIndex(*call) (result, error) {
	v := apiIndexView{Name: "CXCo API", Version: s.opts.Version, Docs: "/api/docs", OpenAPI: "/api/openapi.json"}
	if v.Version == "" {
		v.Version = "dev"
	}
	if _, ok := s.opts.Extra["GET /healthz"]; ok {
		v.Health = map[string]string{"liveness": "/healthz"}
	}
	if _, ok := s.opts.Extra["GET /readyz"]; ok {
		if v.Health == nil {
			v.Health = map[string]string{}
		}
		v.Health["readiness"] = "/readyz"
	}
	if _, ok := s.opts.Extra["GET /metrics"]; ok {
		v.Metrics = "/metrics"
	}
	if _, ok := s.opts.Extra["GET /{$}"]; ok {
		v.Dashboard = "/"
	}
	return ok(v)
}
