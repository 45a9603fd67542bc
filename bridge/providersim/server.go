// Package providersim is a local voice-AI provider that speaks the ElevenLabs
// Conversational AI protocol (REST and websocket), so development, tests and load
// tests run the gateway's real provider adapter over real HTTP and websockets.
package providersim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Options configure a simulator.
type Options struct {
	Logger *slog.Logger
	// APIKeys, when not empty, are the only xi-api-key values accepted; otherwise any
	// non-empty key is.
	APIKeys []string
}

// Server is the simulator. It is an http.Handler.
type Server struct {
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux

	mu     sync.Mutex
	agents map[string]*Agent
	convs  map[string]*Conversation
}

// Agent is an agent as the simulator keeps it: the provider's own JSON document.
type Agent struct {
	ID        string         `json:"agent_id"`
	Name      string         `json:"name"`
	Config    map[string]any `json:"conversation_config"`
	Platform  map[string]any `json:"platform_settings"`
	Tags      []string       `json:"tags"`
	CreatedAt time.Time      `json:"-"`
}

// Conversation is one finished or running conversation.
type Conversation struct {
	ID         string
	AgentID    string
	Status     string // initiated, in-progress, processing, done, failed
	Started    time.Time
	Duration   float64
	Transcript []TranscriptTurn
	Summary    string
	Successful string // success, failure, unknown
	Tokens     int
	DoneAt     time.Time // when the analysis becomes available
}

// TranscriptTurn is one line of the provider's transcript.
type TranscriptTurn struct {
	Role    string  `json:"role"`
	Message string  `json:"message"`
	Time    float64 `json:"time_in_call_secs"`
}

// New makes a simulator.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux(),
		agents: map[string]*Agent{}, convs: map[string]*Conversation{}}
	s.mux.HandleFunc("POST /v1/convai/agents/create", s.auth(s.createAgent))
	s.mux.HandleFunc("GET /v1/convai/agents/{id}", s.auth(s.getAgent))
	s.mux.HandleFunc("PATCH /v1/convai/agents/{id}", s.auth(s.patchAgent))
	s.mux.HandleFunc("DELETE /v1/convai/agents/{id}", s.auth(s.deleteAgent))
	s.mux.HandleFunc("GET /v1/convai/conversations/{id}", s.auth(s.getConversation))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	s.routeWebsocket()
	return s
}

// ServeHTTP serves the REST API and the conversation websocket.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func newID(prefix string) string {
	b := make([]byte, 14)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) keyOK(key string) bool {
	if key == "" {
		return false
	}
	if len(s.opts.APIKeys) == 0 {
		return true
	}
	for _, k := range s.opts.APIKeys {
		if k == key {
			return true
		}
	}
	return false
}

func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.keyOK(r.Header.Get("xi-api-key")) {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"detail": map[string]any{"status": "invalid_api_key", "message": "Invalid API key"}})
			return
		}
		h(w, r)
	}
}

func validation(w http.ResponseWriter, loc, msg string) {
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": []map[string]any{{"loc": []string{"body", loc}, "msg": msg, "type": "missing"}}})
}

func (s *Server) createAgent(w http.ResponseWriter, r *http.Request) {
	var a Agent
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&a); err != nil {
		validation(w, "body", "Invalid JSON: "+err.Error())
		return
	}
	if a.Config == nil {
		validation(w, "conversation_config", "Field required")
		return
	}
	a.ID, a.CreatedAt = newID("agent_"), time.Now()
	s.mu.Lock()
	s.agents[a.ID] = &a
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"agent_id": a.ID})
}

func (s *Server) agent(id string) (*Agent, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.agents[id]
	return a, ok
}

// AgentByID returns a copy of an agent's document (for tests).
func (s *Server) AgentByID(id string) (Agent, bool) {
	a, ok := s.agent(id)
	if !ok {
		return Agent{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return *a, true
}

// AgentCount is how many agents exist (for tests).
func (s *Server) AgentCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.agents)
}

func notFound(w http.ResponseWriter, what string) {
	writeJSON(w, http.StatusNotFound, map[string]any{"detail": map[string]any{"status": what + "_not_found", "message": strings.ReplaceAll(what, "_", " ") + " not found"}})
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) {
	a, ok := s.AgentByID(r.PathValue("id"))
	if !ok {
		notFound(w, "agent")
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// merge deep-merges patch into dst.
func merge(dst, patch map[string]any) {
	for k, v := range patch {
		if pm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, pm)
				continue
			}
		}
		dst[k] = v
	}
}

func (s *Server) patchAgent(w http.ResponseWriter, r *http.Request) {
	var patch map[string]any
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&patch); err != nil {
		validation(w, "body", "Invalid JSON: "+err.Error())
		return
	}
	s.mu.Lock()
	a, ok := s.agents[r.PathValue("id")]
	if ok {
		if cc, ok := patch["conversation_config"].(map[string]any); ok {
			if a.Config == nil {
				a.Config = map[string]any{}
			}
			merge(a.Config, cc)
		}
		if ps, ok := patch["platform_settings"].(map[string]any); ok {
			if a.Platform == nil {
				a.Platform = map[string]any{}
			}
			merge(a.Platform, ps)
		}
		if n, ok := patch["name"].(string); ok {
			a.Name = n
		}
	}
	var out Agent
	if ok {
		out = *a
	}
	s.mu.Unlock()
	if !ok {
		notFound(w, "agent")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteAgent(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	_, ok := s.agents[r.PathValue("id")]
	delete(s.agents, r.PathValue("id"))
	s.mu.Unlock()
	if !ok {
		notFound(w, "agent")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) getConversation(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	c, ok := s.convs[r.PathValue("id")]
	var body map[string]any
	if ok {
		body = c.document(time.Now())
	}
	s.mu.Unlock()
	if !ok {
		notFound(w, "conversation")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// document renders a conversation as GET /v1/convai/conversations/{id} does; the
// analysis appears once the conversation is done (a little after it ends).
func (c *Conversation) document(now time.Time) map[string]any {
	status := c.Status
	if status == "processing" && !now.Before(c.DoneAt) {
		status = "done"
	}
	doc := map[string]any{
		"agent_id": c.AgentID, "conversation_id": c.ID, "status": status,
		"transcript": c.Transcript,
		"metadata": map[string]any{
			"start_time_unix_secs": c.Started.Unix(), "call_duration_secs": int(c.Duration),
			"cost": int(c.Duration * 10),
			"charging": map[string]any{"llm_usage": map[string]any{"irreversible_generation": map[string]any{
				"model_usage": map[string]any{"sim-llm": map[string]any{
					"input":        map[string]any{"tokens": c.Tokens * 3 / 4, "price": 0.0},
					"output_total": map[string]any{"tokens": c.Tokens / 4, "price": 0.0}}}}}},
			"termination_reason": "",
		},
	}
	if status == "done" {
		doc["analysis"] = map[string]any{"call_successful": c.Successful, "transcript_summary": c.Summary,
			"evaluation_criteria_results": map[string]any{}, "data_collection_results": map[string]any{}}
	}
	return doc
}
