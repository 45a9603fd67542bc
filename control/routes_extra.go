package control

// extraRoutes is where features beyond the reference add routes to the table
// (webhook deliveries, test calls, ...).
func (s *Server) extraRoutes() []*route { return nil }
