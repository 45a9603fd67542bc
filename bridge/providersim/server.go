package providersim

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
)

// Options configure a simulator.
type Options struct {
	Logger *slog.Logger
	// APIKeys, when not empty, are the only xi-api-key values accepted; otherwise any
	// non-empty key is.
	APIKeys []string

	// PingInterval is how often a conversation sends ping (default 2 s; negative: never).
	PingInterval time.Duration
	// AnalysisDelay is how long a finished conversation stays "processing" before it
	// is "done" with its analysis (default 300 ms; negative: done at once).
	AnalysisDelay time.Duration
	// ToolTimeout is how long the agent waits for the client_tool_result of end_call
	// before it closes the conversation anyway (default 5 s).
	ToolTimeout time.Duration
	// ReceiveTimeout ends a conversation whose client sends nothing for this long with
	// the real service's transport_receive_timeout error and close code 1002 (default 60 s).
	ReceiveTimeout time.Duration
	// OnConversationEnd, if set, is called with a copy of each conversation once its
	// socket is gone and its record is final (status processing, or failed), so
	// tests can wait for it instead of polling.
	OnConversationEnd func(Conversation)
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PingInterval == 0 {
		o.PingInterval = 2 * time.Second
	}
	if o.AnalysisDelay == 0 {
		o.AnalysisDelay = 300 * time.Millisecond
	}
	o.AnalysisDelay = max(o.AnalysisDelay, 0)
	if o.ToolTimeout <= 0 {
		o.ToolTimeout = 5 * time.Second
	}
	if o.ReceiveTimeout <= 0 {
		o.ReceiveTimeout = 60 * time.Second
	}
}

// Server is the simulator. It is an http.Handler.
type Server struct {
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux

	mu     sync.Mutex
	agents map[string]*Agent
	convs  map[string]*Conversation
	live   map[*wsConn]struct{} // open conversation sockets
	sigs   map[string]signature // conversation_signature -> agent, expiry
	closed bool

	wg           sync.WaitGroup // one per open conversation socket (its handler and writer)
	refuse       atomic.Bool
	connectDelay atomic.Int64 // nanoseconds
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
	ID         string           `json:"conversation_id"`
	AgentID    string           `json:"agent_id"`
	Status     string           `json:"status"` // initiated, in-progress, processing, done, failed
	Started    time.Time        `json:"started"`
	Duration   float64          `json:"duration_secs"`
	Transcript []TranscriptTurn `json:"transcript"`
	Summary    string           `json:"summary"`
	Successful string           `json:"call_successful"` // success, failure, unknown
	Tokens     int              `json:"tokens"`
	DoneAt     time.Time        `json:"done_at"` // when the analysis becomes available

	// What the client sent and what the agent did, for tests.
	Initiation        *Initiation  `json:"initiation,omitempty"` // conversation_initiation_client_data, if sent
	ContextualUpdates []string     `json:"contextual_updates"`
	UserMessages      []string     `json:"user_messages"`
	Digits            string       `json:"digits"` // keypad digits recognised in contextual updates
	ToolCalls         []ToolCall   `json:"tool_calls"`
	ToolResults       []ToolResult `json:"tool_results"`
	Utterances        int          `json:"utterances"`    // caller utterances the detector found
	Interruptions     int          `json:"interruptions"` // barge-ins
	Transferred       string       `json:"transferred"`   // the number of a transfer the client confirmed
	PingRTTMillis     *int64       `json:"ping_rtt_ms"`   // last measured ping round trip
	TerminationReason string       `json:"termination_reason"`
}

// TranscriptTurn is one line of the provider's transcript.
type TranscriptTurn struct {
	Role            string  `json:"role"` // agent, user
	Message         string  `json:"message"`
	Time            float64 `json:"time_in_call_secs"` // rendered as whole seconds, as the real service does
	Interrupted     bool    `json:"interrupted"`
	OriginalMessage *string `json:"original_message"` // the full text of an interrupted agent turn
}

// Initiation is the conversation_initiation_client_data a client sent.
type Initiation struct {
	DynamicVariables   map[string]any `json:"dynamic_variables"`
	Override           map[string]any `json:"conversation_config_override"` // as sent
	CustomLLMExtraBody map[string]any `json:"custom_llm_extra_body"`
	UserID             *string        `json:"user_id,omitempty"`
	// The overrides the simulator acts on (nil: not overridden).
	Prompt       *string `json:"-"`
	FirstMessage *string `json:"-"`
	Language     *string `json:"-"`
	VoiceID      *string `json:"-"`
}

// ToolCall is a client_tool_call the agent made.
type ToolCall struct {
	ID         string         `json:"tool_call_id"`
	Name       string         `json:"tool_name"`
	Parameters map[string]any `json:"parameters"`
}

// ToolResult is a client_tool_result the client sent.
type ToolResult struct {
	ID      string `json:"tool_call_id"`
	Result  string `json:"result"` // a JSON string's value, else the raw JSON
	IsError bool   `json:"is_error"`
}

// status is what the conversation's status reads at now.
func (c *Conversation) status(now time.Time) string {
	if c.Status == "processing" && !now.Before(c.DoneAt) {
		return "done"
	}
	return c.Status
}

// clone copies c deeply enough that the copy can be read while c changes.
func (c *Conversation) clone(now time.Time) Conversation {
	out := *c
	out.Status = c.status(now)
	out.Transcript = slices.Clone(c.Transcript)
	out.ContextualUpdates = slices.Clone(c.ContextualUpdates)
	out.UserMessages = slices.Clone(c.UserMessages)
	out.ToolCalls = slices.Clone(c.ToolCalls)
	out.ToolResults = slices.Clone(c.ToolResults)
	if c.PingRTTMillis != nil {
		v := *c.PingRTTMillis
		out.PingRTTMillis = &v
	}
	return out
}

// New makes a simulator.
func New(opts Options) *Server {
	opts.defaults()
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux(),
		agents: map[string]*Agent{}, convs: map[string]*Conversation{},
		live: map[*wsConn]struct{}{}, sigs: map[string]signature{}}
	s.mux.HandleFunc("POST /v1/convai/agents/create", s.auth(s.createAgent))
	s.mux.HandleFunc("GET /v1/convai/agents/{id}", s.auth(s.getAgent))
	s.mux.HandleFunc("PATCH /v1/convai/agents/{id}", s.auth(s.patchAgent))
	s.mux.HandleFunc("DELETE /v1/convai/agents/{id}", s.auth(s.deleteAgent))
	s.mux.HandleFunc("GET /v1/convai/conversations/{id}", s.auth(s.getConversation))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	s.routeWebsocket()
	s.routeHooks()
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
	status := c.status(now)
	transcript := make([]map[string]any, len(c.Transcript))
	agentTurns := 0
	for i, t := range c.Transcript {
		if t.Role == "agent" {
			agentTurns++
		}
		transcript[i] = map[string]any{"role": t.Role, "message": t.Message, "time_in_call_secs": int(t.Time),
			"interrupted": t.Interrupted, "original_message": t.OriginalMessage,
			"tool_calls": []any{}, "tool_results": []any{}, "feedback": nil}
	}
	doc := map[string]any{
		"agent_id": c.AgentID, "conversation_id": c.ID, "status": status,
		"transcript": transcript,
		"metadata": map[string]any{
			"start_time_unix_secs": c.Started.Unix(), "call_duration_secs": int(c.Duration),
			"cost": int(c.Duration * 10),
			"charging": map[string]any{"llm_usage": map[string]any{"irreversible_generation": map[string]any{
				"model_usage": map[string]any{"sim-llm": map[string]any{
					"input":        map[string]any{"tokens": c.Tokens * 3 / 4, "price": 0.0},
					"output_total": map[string]any{"tokens": c.Tokens / 4, "price": 0.0}}}}}},
			"termination_reason": c.TerminationReason,
		},
		"has_audio": c.Utterances > 0 || agentTurns > 0, "has_user_audio": c.Utterances > 0,
		"has_response_audio": agentTurns > 0,
	}
	if in := c.Initiation; in != nil {
		doc["conversation_initiation_client_data"] = map[string]any{"conversation_config_override": in.Override,
			"custom_llm_extra_body": in.CustomLLMExtraBody, "dynamic_variables": in.DynamicVariables}
	}
	if status == "done" {
		doc["analysis"] = map[string]any{"call_successful": c.Successful, "transcript_summary": c.Summary,
			"evaluation_criteria_results": map[string]any{}, "data_collection_results": map[string]any{}}
	}
	return doc
}
