package elevenlabssim

import (
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Test hooks. Two kinds, neither of which the real service has:
//
// Behaviour hooks change what the simulated agent does, so that a test can
// drive a conversation from the phone side without an LLM. They are off by
// default (the default simulator is strict) and a test turns each on by name
// (Options.Hooks, EnableHook, `cxco providersim --hooks`):
//
//   - HookHashEndsCall ("keypad_hash_ends_call"): a user turn (user_message)
//     whose keypad characters (0-9, *, # in its text, in order) are exactly "#"
//     makes the agent run its end_call system tool, if the agent has it.
//   - HookZeroCallsTool ("keypad_zero_calls_client_tool"): a user turn whose
//     keypad characters start with "0" makes the agent call its first client
//     tool; an enum parameter takes its value number n when the next character
//     is the digit n (1-9), else its first; other string parameters say why.
//
// Fault and inspection hooks make the provider misbehave and show what it saw:
// Go methods for an in-process simulator, and under /sim/ (with an xi-api-key of
// any account) for `cxco providersim`.

// The behaviour hooks' names.
const (
	HookHashEndsCall  = "keypad_hash_ends_call"
	HookZeroCallsTool = "keypad_zero_calls_client_tool"
)

// Hooks lists every behaviour hook's name.
var Hooks = []string{HookHashEndsCall, HookZeroCallsTool}

// EnableHook turns a behaviour hook on (for conversations that start from now).
func (s *Server) EnableHook(name string) {
	s.mu.Lock()
	s.hooks[name] = true
	s.mu.Unlock()
}

// HookOn says whether a behaviour hook is on.
func (s *Server) HookOn(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hooks[name]
}

// DropConversations closes every open conversation socket abruptly, without a
// close frame (the gateway sees a dropped connection), and returns how many.
func (s *Server) DropConversations() int {
	conns := s.liveConns()
	for _, c := range conns {
		c.kill("Connection dropped by the simulator.")
	}
	return len(conns)
}

// RevokeKey makes an xi-api-key invalid from now on (401), as revoking it in the
// provider's dashboard does.
func (s *Server) RevokeKey(key string) {
	s.mu.Lock()
	s.revoked[key] = true
	s.mu.Unlock()
}

// SetSignedURLBase changes Options.SignedURLBase: where signed URLs handed out
// from now on point.
func (s *Server) SetSignedURLBase(base string) {
	s.mu.Lock()
	s.opts.SignedURLBase = base
	s.mu.Unlock()
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
	s.mux.HandleFunc("POST /sim/drop", s.auth(func(w http.ResponseWriter, _ *http.Request, _ string) {
		writeJSON(w, http.StatusOK, map[string]any{"dropped": s.DropConversations()})
	}))
	s.mux.HandleFunc("POST /sim/refuse", s.auth(func(w http.ResponseWriter, r *http.Request, _ string) {
		on, err := strconv.ParseBool(r.URL.Query().Get("on"))
		if err != nil {
			unprocessable(w, []detail{{Loc: []any{"query", "on"}, Msg: "on must be 1 or 0", Type: "bool_parsing"}})
			return
		}
		s.SetRefuse(on)
		writeJSON(w, http.StatusOK, map[string]any{"refuse": on})
	}))
	s.mux.HandleFunc("POST /sim/delay", s.auth(func(w http.ResponseWriter, r *http.Request, _ string) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 {
			unprocessable(w, []detail{{Loc: []any{"query", "ms"}, Msg: "ms must be a whole number of milliseconds, 0 or more", Type: "int_parsing"}})
			return
		}
		s.SetConnectDelay(time.Duration(ms) * time.Millisecond)
		writeJSON(w, http.StatusOK, map[string]any{"delay_ms": ms})
	}))
	s.mux.HandleFunc("GET /sim/conversations", s.auth(func(w http.ResponseWriter, _ *http.Request, _ string) {
		writeJSON(w, http.StatusOK, s.Conversations())
	}))
}
