package providersim

// routeWebsocket registers the conversation websocket (the bridge issue adds it).
func (s *Server) routeWebsocket() {}
