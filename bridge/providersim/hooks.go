package providersim

import (
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Test hooks: the gateway's tests use these to make the provider misbehave and to
// look at what it saw. They exist only on the simulator, as Go methods for an
// in-process simulator and under /sim/ (with the same xi-api-key auth as the
// rest of the API) for `cxco providersim`.

// DropConversations closes every open conversation socket abruptly, without a
// close frame (the gateway sees a dropped connection), and returns how many.
func (s *Server) DropConversations() int {
	conns := s.liveConns()
	for _, c := range conns {
		c.kill("Connection dropped by the simulator.")
	}
	return len(conns)
}

// SetRefuse makes new conversation sockets fail with HTTP 503 (on) or work again.
func (s *Server) SetRefuse(on bool) { s.refuse.Store(on) }

// SetConnectDelay delays conversation_initiation_metadata of new conversations by
// d from the upgrade (0: no delay).
func (s *Server) SetConnectDelay(d time.Duration) { s.connectDelay.Store(int64(max(d, 0))) }

// Conversations returns copies of every conversation, running or finished,
// oldest first.
func (s *Server) Conversations() []Conversation {
	now := time.Now()
	s.mu.Lock()
	out := make([]Conversation, 0, len(s.convs))
	for _, c := range s.convs {
		out = append(out, c.clone(now))
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Conversation) int { return a.Started.Compare(b.Started) })
	return out
}

// ConversationByID returns a copy of one conversation.
func (s *Server) ConversationByID(id string) (Conversation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.convs[id]
	if !ok {
		return Conversation{}, false
	}
	return c.clone(time.Now()), true
}

// Close refuses new conversations, drops the open ones and waits until their
// goroutines are gone. The REST API keeps working.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	for _, c := range s.liveConns() {
		c.kill("The simulator shut down.")
	}
	s.wg.Wait()
	return nil
}

func (s *Server) liveConns() []*wsConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*wsConn, 0, len(s.live))
	for c := range s.live {
		out = append(out, c)
	}
	return out
}

func (s *Server) routeHooks() {
	s.mux.HandleFunc("POST /sim/drop", s.auth(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"dropped": s.DropConversations()})
	}))
	s.mux.HandleFunc("POST /sim/refuse", s.auth(func(w http.ResponseWriter, r *http.Request) {
		on, err := strconv.ParseBool(r.URL.Query().Get("on"))
		if err != nil {
			validation(w, "on", "on must be 1 or 0")
			return
		}
		s.SetRefuse(on)
		writeJSON(w, http.StatusOK, map[string]any{"refuse": on})
	}))
	s.mux.HandleFunc("POST /sim/delay", s.auth(func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 {
			validation(w, "ms", "ms must be a whole number of milliseconds, 0 or more")
			return
		}
		s.SetConnectDelay(time.Duration(ms) * time.Millisecond)
		writeJSON(w, http.StatusOK, map[string]any{"delay_ms": ms})
	}))
	s.mux.HandleFunc("GET /sim/conversations", s.auth(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Conversations())
	}))
}
