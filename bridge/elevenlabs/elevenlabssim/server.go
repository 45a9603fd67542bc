package elevenlabssim

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

// Direction says which side sent a websocket message (Options.Observe).
type Direction uint8

const (
	FromClient Direction = iota // a message the client (the gateway) sent
	FromServer                  // a message the simulator sent
)

// InterruptionIDs is how event ids relate across a barge-in. The sources disagree
// (see doc.go), so the simulator does either.
type InterruptionIDs string

const (
	// ReuseID: the interruption takes a new id and the reply that follows it
	// carries that same id (reported against elevenlabs-python, issue 829).
	ReuseID InterruptionIDs = "reuse"
	// InterruptedID: the interruption carries the id of the reply it cut, and
	// the next reply a larger one (what the Python SDK's `<=` drop assumes).
	InterruptedID InterruptionIDs = "interrupted"
)

// EndCallOrder is the order of agent_tool_response(end_call) and the farewell
// audio; the docs do not say.
type EndCallOrder string

const (
	ToolResponseFirst EndCallOrder = "tool_first"     // agent_tool_response, farewell audio, close 1000
	FarewellFirst     EndCallOrder = "farewell_first" // farewell audio, agent_tool_response, close 1000
)

// PatchMode is what PATCH /v1/convai/agents/{id} does with a nested object; the
// docs say "patches" without saying how deep.
type PatchMode string

const (
	PatchMerge   PatchMode = "merge"   // nested objects merge key by key; null removes a key
	PatchReplace PatchMode = "replace" // a top-level section given (conversation_config, platform_settings) replaces the stored one
)

// Options configure a simulator.
type Options struct {
	Logger *slog.Logger
	// Accounts maps an account name to its xi-api-key values. An agent or tool
	// belongs to the account whose key created it and is invisible (404) to any
	// other account. Empty: every distinct non-empty key is an account of its own.
	Accounts map[string][]string

	// PingInterval is how often a conversation sends ping (default 2 s; negative: never).
	PingInterval time.Duration
	// AnalysisDelay is how long a finished conversation stays "processing" before it
	// is "done" with its analysis (default 300 ms; negative: done at once).
	AnalysisDelay time.Duration
	// ReceiveTimeout ends a conversation whose client sends nothing for this long with
	// transport_receive_timeout and close 1002 (default 60 s, the AsyncAPI's figure).
	ReceiveTimeout time.Duration
	// SignedURLBase is the ws:// or wss:// origin signed URLs point at (another
	// host, as a regional deployment would return); empty: the host the
	// get-signed-url request came to.
	SignedURLBase string

	// The switches where the sources disagree; the zero value is the first listed.
	InterruptionIDs InterruptionIDs // ReuseID (default) or InterruptedID
	EndCallOrder    EndCallOrder    // ToolResponseFirst (default) or FarewellFirst
	PatchMode       PatchMode       // PatchMerge (default) or PatchReplace

	// Hooks are test hooks to turn on by name (hooks.go); none by default.
	Hooks []string

	// OnConversationEnd, if set, is called with a copy of each conversation once its
	// socket is gone and its record is final (status processing, or failed), so
	// tests can wait for it instead of polling.
	OnConversationEnd func(Conversation)
	// Observe, if set, sees every websocket data message either side sends, before
	// it is handled (client) or after it is written (server): tests validate them
	// against the AsyncAPI contract. It runs on the socket's goroutines.
	Observe func(dir Direction, msg []byte)
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
	if o.ReceiveTimeout <= 0 {
		o.ReceiveTimeout = 60 * time.Second
	}
	if o.InterruptionIDs == "" {
		o.InterruptionIDs = ReuseID
	}
	if o.EndCallOrder == "" {
		o.EndCallOrder = ToolResponseFirst
	}
	if o.PatchMode == "" {
		o.PatchMode = PatchMerge
	}
}

// Server is the simulator. It is an http.Handler.
type Server struct {
	opts  Options
	log   *slog.Logger
	mux   *http.ServeMux
	hooks map[string]bool // enabled test hooks; read under mu

	mu      sync.Mutex
	agents  map[string]*Agent
	tools   map[string]*Tool
	convs   map[string]*Conversation
	live    map[*wsConn]struct{} // open conversation sockets
	sigs    map[string]signature // conversation_signature -> agent, expiry
	keys    map[string]string    // xi-api-key -> account (from Options.Accounts)
	revoked map[string]bool      // RevokeKey
	closed  bool

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
	Account   string         `json:"-"`
	CreatedAt time.Time      `json:"-"`
}

// Tool is a workspace tool (POST /v1/convai/tools): the tool_config document.
type Tool struct {
	ID      string         `json:"id"`
	Config  map[string]any `json:"tool_config"`
	Account string         `json:"-"`
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
	ToolCalls         []ToolCall   `json:"tool_calls"`    // client_tool_call sent
	ToolResults       []ToolResult `json:"tool_results"`  // client_tool_result received
	SystemTools       []string     `json:"system_tools"`  // system tools the agent ran itself (end_call, ...)
	Utterances        int          `json:"utterances"`    // caller utterances the detector found
	Interruptions     int          `json:"interruptions"` // barge-ins
	PingRTTMillis     *int64       `json:"ping_rtt_ms"`   // last measured ping round trip
	Signed            bool         `json:"signed"`        // the socket was opened with a conversation_signature
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
	FirstMessage *string `json:"-"`
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
	Result  string `json:"result"`
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
	out.SystemTools = slices.Clone(c.SystemTools)
	if c.PingRTTMillis != nil {
		v := *c.PingRTTMillis
		out.PingRTTMillis = &v
	}
	return out
}

// New makes a simulator.
func New(opts Options) *Server {
	opts.defaults()
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux(), hooks: map[string]bool{},
		agents: map[string]*Agent{}, tools: map[string]*Tool{}, convs: map[string]*Conversation{},
		live: map[*wsConn]struct{}{}, sigs: map[string]signature{}, keys: map[string]string{}, revoked: map[string]bool{}}
	for acct, keys := range opts.Accounts {
		for _, k := range keys {
			s.keys[k] = acct
		}
	}
	for _, h := range opts.Hooks {
		s.hooks[h] = true
	}
	s.mux.HandleFunc("POST /v1/convai/agents/create", s.auth(s.createAgent))
	s.mux.HandleFunc("GET /v1/convai/agents/{id}", s.auth(s.getAgent))
	s.mux.HandleFunc("PATCH /v1/convai/agents/{id}", s.auth(s.patchAgent))
	s.mux.HandleFunc("DELETE /v1/convai/agents/{id}", s.auth(s.deleteAgent))
	s.mux.HandleFunc("POST /v1/convai/tools", s.auth(s.createTool))
	s.mux.HandleFunc("GET /v1/convai/tools/{id}", s.auth(s.getTool))
	s.mux.HandleFunc("PATCH /v1/convai/tools/{id}", s.auth(s.patchTool))
	s.mux.HandleFunc("DELETE /v1/convai/tools/{id}", s.auth(s.deleteTool))
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

// account is the account an xi-api-key belongs to.
func (s *Server) account(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	if len(s.opts.Accounts) == 0 {
		return "key:" + key, true
	}
	a, ok := s.keys[key]
	return a, ok
}

// acctKey carries the caller's account through a request.
type acctKey struct{}

// auth: every REST call needs a good xi-api-key (the REST API's only
// credential); 401 otherwise, in the {"detail": {status, message}} form.
func (s *Server) auth(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("xi-api-key")
		if key == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"detail": map[string]any{"status": "needs_authorization", "message": "Neither authorization header nor xi-api-key received, please provide one."}})
			return
		}
		s.mu.Lock()
		acct, ok := s.account(key)
		ok = ok && !s.revoked[key]
		s.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"detail": map[string]any{"status": "invalid_api_key", "message": "Invalid API key"}})
			return
		}
		h(w, r, acct)
	}
}

func notFound(w http.ResponseWriter, what string) {
	writeJSON(w, http.StatusNotFound, map[string]any{"detail": map[string]any{"status": what + "_not_found", "message": strings.ReplaceAll(what, "_", " ") + " not found"}})
}

func decodeBody(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	var body map[string]any
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil || body == nil {
		msg := "Input should be a valid dictionary or object to extract fields from"
		if err != nil {
			msg = "JSON decode error: " + err.Error()
		}
		unprocessable(w, []detail{{Loc: []any{"body"}, Msg: msg, Type: "json_invalid"}})
		return nil, false
	}
	return normalizeNumbers(body).(map[string]any), true
}

// normalizeNumbers turns json.Number into float64 (integers stay integral).
func normalizeNumbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = normalizeNumbers(x)
		}
	case []any:
		for i, x := range t {
			t[i] = normalizeNumbers(x)
		}
	case json.Number:
		f, _ := t.Float64()
		return f
	}
	return v
}

func (s *Server) createAgent(w http.ResponseWriter, r *http.Request, acct string) {
	body, ok := decodeBody(w, r)
	if !ok {
		return
	}
	if errs := validateAgent(body, true); len(errs) > 0 {
		unprocessable(w, errs)
		return
	}
	a := &Agent{Account: acct, CreatedAt: time.Now()}
	a.Config, _ = body["conversation_config"].(map[string]any)
	a.Platform, _ = body["platform_settings"].(map[string]any)
	if a.Platform == nil {
		a.Platform = map[string]any{}
	}
	a.Name, _ = body["name"].(string)
	for _, t := range asList(body["tags"]) {
		if s, ok := t.(string); ok {
			a.Tags = append(a.Tags, s)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if errs := s.checkAgentLocked(a); len(errs) > 0 {
		unprocessable(w, errs)
		return
	}
	if msg := modelFitsLanguage(a.Config); msg != "" {
		badRequest(w, msg)
		return
	}
	a.ID = newID("agent_")
	s.agents[a.ID] = a
	writeJSON(w, http.StatusOK, map[string]any{"agent_id": a.ID})
}

// checkAgentLocked checks what needs the account's other records: every
// prompt.tool_ids entry is a tool of the same account.
func (s *Server) checkAgentLocked(a *Agent) []detail {
	var errs []detail
	for i, v := range asList(valueAt(a.Config, "agent", "prompt", "tool_ids")) {
		id, _ := v.(string)
		if t, ok := s.tools[id]; !ok || t.Account != a.Account {
			errs = append(errs, detail{Loc: []any{"body", "conversation_config", "agent", "prompt", "tool_ids", i},
				Msg: "Tool " + id + " not found", Type: "value_error"})
		}
	}
	return errs
}

// agentFor returns the account's agent (nil if there is none, or it is another
// account's). Callers hold s.mu.
func (s *Server) agentForLocked(id, acct string) *Agent {
	a, ok := s.agents[id]
	if !ok || a.Account != acct {
		return nil
	}
	return a
}

// AgentByID returns a copy of an agent's document (for tests).
func (s *Server) AgentByID(id string) (Agent, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.agents[id]
	if !ok {
		return Agent{}, false
	}
	return a.clone(), true
}

func (a *Agent) clone() Agent {
	out := *a
	out.Config = cloneMap(a.Config)
	out.Platform = cloneMap(a.Platform)
	out.Tags = slices.Clone(a.Tags)
	return out
}

// AgentCount is how many agents exist (for tests).
func (s *Server) AgentCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.agents)
}

// ToolByID returns a copy of a tool (for tests).
func (s *Server) ToolByID(id string) (Tool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tools[id]
	if !ok {
		return Tool{}, false
	}
	out := *t
	out.Config = cloneMap(t.Config)
	return out, true
}

// ToolCount is how many tools exist (for tests).
func (s *Server) ToolCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tools)
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request, acct string) {
	s.mu.Lock()
	a := s.agentForLocked(r.PathValue("id"), acct)
	var out Agent
	if a != nil {
		out = a.clone()
	}
	s.mu.Unlock()
	if a == nil {
		notFound(w, "agent")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// merge deep-merges patch into dst (JSON merge patch, RFC 7396: null removes).
func merge(dst, patch map[string]any) {
	for k, v := range patch {
		if v == nil {
			delete(dst, k)
			continue
		}
		if pm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, pm)
				continue
			}
			v = cloneMap(pm)
		}
		dst[k] = v
	}
}

func (s *Server) patchAgent(w http.ResponseWriter, r *http.Request, acct string) {
	patch, ok := decodeBody(w, r)
	if !ok {
		return
	}
	if errs := validateAgent(patch, false); len(errs) > 0 {
		unprocessable(w, errs)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agentForLocked(r.PathValue("id"), acct)
	if a == nil {
		notFound(w, "agent")
		return
	}
	next := a.clone()
	for _, sec := range []struct {
		key string
		dst *map[string]any
	}{{"conversation_config", &next.Config}, {"platform_settings", &next.Platform}} {
		p, ok := patch[sec.key].(map[string]any)
		if !ok {
			continue
		}
		if s.opts.PatchMode == PatchReplace || *sec.dst == nil {
			*sec.dst = cloneMap(p)
			continue
		}
		merge(*sec.dst, p)
	}
	if n, ok := patch["name"].(string); ok {
		next.Name = n
	}
	if _, ok := patch["tags"]; ok {
		next.Tags = nil
		for _, t := range asList(patch["tags"]) {
			if s, ok := t.(string); ok {
				next.Tags = append(next.Tags, s)
			}
		}
	}
	// The merged document must still be a valid agent.
	if errs := validateAgent(map[string]any{"conversation_config": next.Config, "platform_settings": next.Platform}, true); len(errs) > 0 {
		unprocessable(w, errs)
		return
	}
	if errs := s.checkAgentLocked(&next); len(errs) > 0 {
		unprocessable(w, errs)
		return
	}
	if msg := modelFitsLanguage(next.Config); msg != "" {
		badRequest(w, msg)
		return
	}
	*a = next
	writeJSON(w, http.StatusOK, next)
}

func (s *Server) deleteAgent(w http.ResponseWriter, r *http.Request, acct string) {
	s.mu.Lock()
	a := s.agentForLocked(r.PathValue("id"), acct)
	if a != nil {
		delete(s.agents, a.ID)
	}
	s.mu.Unlock()
	if a == nil {
		notFound(w, "agent")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) readTool(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	body, ok := decodeBody(w, r)
	if !ok {
		return nil, false
	}
	if errs := validateToolRequest(body); len(errs) > 0 {
		unprocessable(w, errs)
		return nil, false
	}
	return body["tool_config"].(map[string]any), true
}

// createTool is POST /v1/convai/tools: only client and webhook tools can be
// created this way (system tools live in an agent's built_in_tools).
func (s *Server) createTool(w http.ResponseWriter, r *http.Request, acct string) {
	cfg, ok := s.readTool(w, r)
	if !ok {
		return
	}
	t := &Tool{ID: newID("tool_"), Config: cfg, Account: acct}
	s.mu.Lock()
	s.tools[t.ID] = t
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) toolForLocked(id, acct string) *Tool {
	t, ok := s.tools[id]
	if !ok || t.Account != acct {
		return nil
	}
	return t
}

func (s *Server) getTool(w http.ResponseWriter, r *http.Request, acct string) {
	s.mu.Lock()
	t := s.toolForLocked(r.PathValue("id"), acct)
	var out Tool
	if t != nil {
		out = Tool{ID: t.ID, Config: cloneMap(t.Config)}
	}
	s.mu.Unlock()
	if t == nil {
		notFound(w, "tool")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// patchTool replaces the tool's tool_config (the request carries a whole one).
func (s *Server) patchTool(w http.ResponseWriter, r *http.Request, acct string) {
	cfg, ok := s.readTool(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	t := s.toolForLocked(r.PathValue("id"), acct)
	var out Tool
	if t != nil {
		t.Config = cfg
		out = Tool{ID: t.ID, Config: cloneMap(cfg)}
	}
	s.mu.Unlock()
	if t == nil {
		notFound(w, "tool")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// deleteTool refuses to delete a tool an agent still uses, unless force=true,
// which also removes it from those agents (as the SDK documents `force`).
func (s *Server) deleteTool(w http.ResponseWriter, r *http.Request, acct string) {
	force := r.URL.Query().Get("force") == "true"
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.toolForLocked(r.PathValue("id"), acct)
	if t == nil {
		notFound(w, "tool")
		return
	}
	var users []*Agent
	for _, a := range s.agents {
		for _, v := range asList(valueAt(a.Config, "agent", "prompt", "tool_ids")) {
			if v == t.ID {
				users = append(users, a)
			}
		}
	}
	if len(users) > 0 && !force {
		writeJSON(w, http.StatusBadRequest, map[string]any{"detail": map[string]any{"status": "tool_in_use",
			"message": "The tool is used by " + users[0].ID + "; remove it from the agent first or delete with force=true"}})
		return
	}
	for _, a := range users {
		p, _ := valueAt(a.Config, "agent", "prompt").(map[string]any)
		p["tool_ids"] = slices.DeleteFunc(slices.Clone(asList(p["tool_ids"])), func(v any) bool { return v == t.ID })
	}
	delete(s.tools, t.ID)
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) getConversation(w http.ResponseWriter, r *http.Request, acct string) {
	s.mu.Lock()
	c, ok := s.convs[r.PathValue("id")]
	if ok {
		if a, known := s.agents[c.AgentID]; known && a.Account != acct {
			ok = false
		}
	}
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
// analysis appears once the conversation is done (a little after it ends). Token
// usage is in metadata.charging.llm_usage, in the SDK's two buckets
// (LlmCategoryUsage): irreversible_generation and initiated_generation, each
// {model_usage: {model: {input, input_cache_read, input_cache_write, output_total}}}.
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
	bucket := func(in, out int) map[string]any {
		return map[string]any{"model_usage": map[string]any{"sim-llm": map[string]any{
			"input":             map[string]any{"tokens": in, "price": 0.0},
			"input_cache_read":  map[string]any{"tokens": 0, "price": 0.0},
			"input_cache_write": map[string]any{"tokens": 0, "price": 0.0},
			"output_total":      map[string]any{"tokens": out, "price": 0.0}}}}
	}
	// Generations that were started but cut by a barge-in count in
	// initiated_generation only.
	in, out := c.Tokens*3/4, c.Tokens/4
	doc := map[string]any{
		"agent_id": c.AgentID, "conversation_id": c.ID, "status": status,
		"transcript": transcript,
		"metadata": map[string]any{
			"start_time_unix_secs": c.Started.Unix(), "call_duration_secs": int(c.Duration),
			"cost": int(c.Duration * 10),
			"charging": map[string]any{"llm_usage": map[string]any{
				"irreversible_generation": bucket(in, out),
				"initiated_generation":    bucket(in, out+25*c.Interruptions),
			}},
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
