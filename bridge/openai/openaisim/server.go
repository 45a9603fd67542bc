package openaisim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Direction says who sent a message Options.Observe sees.
type Direction uint8

// Directions.
const (
	FromClient Direction = iota + 1
	FromServer
)

// Test hooks (see the package documentation).
const (
	HookHashEndsCall       = "keypad_hash_ends_call"
	HookZeroCallsTransfer  = "keypad_zero_calls_transfer"
	defaultModel           = "gpt-realtime"
	defaultInstructionsSim = "You are a helpful assistant."
)

// Hooks lists every test hook.
var Hooks = []string{HookHashEndsCall, HookZeroCallsTransfer}

// Options configure a Server.
type Options struct {
	// Keys are the API keys accepted; empty: any non-empty key.
	Keys []string
	// Hooks are the test hooks turned on (none: strict).
	Hooks []string
	// BetaAudioEvents names the audio events as the beta protocol and
	// openai-python's generated type do (response.audio.delta) instead of the
	// GA reference's response.output_audio.delta.
	BetaAudioEvents bool
	// Observe, when set, sees every websocket message either side sends.
	Observe func(Direction, []byte)
	Logger  *slog.Logger
}

// Server is the simulator: an http.Handler serving /v1/realtime.
type Server struct {
	opts  Options
	log   *slog.Logger
	hooks sync.Map // name -> true

	refuse atomic.Bool
	delay  atomic.Int64

	mu       sync.Mutex
	live     map[*conn]struct{}
	sessions []*Session
	wg       sync.WaitGroup
}

// Session is what a test can inspect of one Realtime session.
type Session struct {
	ID, Model, Key string
	// Config is the session as last updated (the session object of session.updated).
	Config          map[string]any
	Updates         int
	UserTexts       []string // user messages in text (conversation.item.create)
	SystemTexts     []string // system messages
	Utterances      int
	Responses       int
	Cancelled       int
	Truncations     []Truncation
	FunctionCalls   []FunctionCall
	FunctionOutputs []FunctionOutput
	Errors          []string // error events sent
	Transcript      []Turn
	Closed          bool
}

// Truncation is a conversation.item.truncate the client sent (and whether it
// was accepted).
type Truncation struct {
	ItemID     string
	AudioEndMS int
	AudioMS    int // the item's audio sent
	OK         bool
}

// FunctionCall is a tool call the simulated model made.
type FunctionCall struct{ CallID, Name, Arguments string }

// FunctionOutput is a function_call_output the client sent.
type FunctionOutput struct{ CallID, Output string }

// Turn is one line of the simulator's own transcript.
type Turn struct {
	Role, Text  string
	Interrupted bool
}

// New makes a simulator.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: opts.Logger, live: map[*conn]struct{}{}}
	for _, h := range opts.Hooks {
		s.hooks.Store(h, true)
	}
	return s
}

// EnableHook turns a test hook on.
func (s *Server) EnableHook(name string) { s.hooks.Store(name, true) }

func (s *Server) hookOn(name string) bool { _, ok := s.hooks.Load(name); return ok }

// SetRefuse makes new connections fail with 503 before the upgrade.
func (s *Server) SetRefuse(on bool) { s.refuse.Store(on) }

// SetConnectDelay holds every new connection this long before session.created.
func (s *Server) SetConnectDelay(d time.Duration) { s.delay.Store(int64(max(d, 0))) }

// DropSessions closes every live socket without a close frame (a network
// failure); it returns how many it dropped.
func (s *Server) DropSessions() int {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.live))
	for c := range s.live {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.ws.NetConn().Close()
	}
	return len(conns)
}

// Sessions returns a copy of every session so far, oldest first.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, len(s.sessions))
	for i, r := range s.sessions {
		out[i] = *r
		out[i].UserTexts = slices.Clone(r.UserTexts)
		out[i].SystemTexts = slices.Clone(r.SystemTexts)
		out[i].Truncations = slices.Clone(r.Truncations)
		out[i].FunctionCalls = slices.Clone(r.FunctionCalls)
		out[i].FunctionOutputs = slices.Clone(r.FunctionOutputs)
		out[i].Errors = slices.Clone(r.Errors)
		out[i].Transcript = slices.Clone(r.Transcript)
		out[i].Config = cloneMap(r.Config)
	}
	return out
}

// Close drops every live session and waits for their goroutines.
func (s *Server) Close() error {
	s.DropSessions()
	s.wg.Wait()
	return nil
}

// record changes a session's record under the server's lock.
func (s *Server) record(r *Session, f func(*Session)) {
	s.mu.Lock()
	f(r)
	s.mu.Unlock()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/realtime" {
		writeError(w, http.StatusNotFound, "invalid_request_error", "Unknown path "+r.URL.Path)
		return
	}
	auth := r.Header.Get("Authorization")
	key, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || key == "" || (len(s.opts.Keys) > 0 && !slices.Contains(s.opts.Keys, key)) {
		writeError(w, http.StatusUnauthorized, "invalid_request_error", "Incorrect API key provided.")
		return
	}
	if s.refuse.Load() {
		writeError(w, http.StatusServiceUnavailable, "server_error", "The server is overloaded.")
		return
	}
	model := r.URL.Query().Get("model")
	if model == "" {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "Missing required parameter: 'model'.")
		return
	}
	up := websocket.Upgrader{ReadBufferSize: 4 << 10, WriteBufferSize: 4 << 10}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	rec := &Session{ID: "sess_" + randomID(), Model: model, Key: key}
	c := newConn(s, ws, rec)
	s.mu.Lock()
	s.live[c] = struct{}{}
	s.sessions = append(s.sessions, rec)
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.live, c)
		rec.Closed = true
		s.mu.Unlock()
		s.wg.Done()
	}()
	c.run()
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"type": typ, "message": msg, "code": nil, "param": nil}})
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}
