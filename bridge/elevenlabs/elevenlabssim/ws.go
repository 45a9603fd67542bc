package elevenlabssim

import (
	"github.com/cxco/gateway/bridge/internal/simaudio"

	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

const (
	initWait     = 300 * time.Millisecond // how long the metadata waits for conversation_initiation_client_data
	writeWait    = 10 * time.Second       // a client that reads nothing for this long is dropped
	closeWait    = time.Second            // how long to wait for the client's close frame after ours
	maxFrame     = 1 << 20                // largest client frame
	sendQueue    = 16                     // reader -> agent commands (a few per utterance)
	signatureTTL = 15 * time.Minute       // signed URLs must be used within this
)

// signature is a conversation_signature handed out by get-signed-url.
type signature struct {
	agentID string
	expires time.Time
}

// routeWebsocket registers the conversation websocket and the signed-URL endpoint.
func (s *Server) routeWebsocket() {
	s.mux.HandleFunc("GET /v1/convai/conversation", s.conversationSocket)
	s.mux.HandleFunc("GET /v1/convai/conversation/get-signed-url", s.auth(s.signedURL))
	s.mux.HandleFunc("GET /v1/convai/conversation/get_signed_url", s.auth(s.signedURL))
}

var upgrader = websocket.Upgrader{
	ReadBufferSize: 2 << 10, WriteBufferSize: 4 << 10, WriteBufferPool: &sync.Pool{},
	Subprotocols: []string{"convai"},
	CheckOrigin:  func(*http.Request) bool { return true }, // clients are servers, not browsers
}

// signedURL is GET /v1/convai/conversation/get-signed-url?agent_id=... (Agent
// authentication docs): {"signed_url": "wss://<host>/v1/convai/conversation?
// agent_id=...&conversation_signature=..."}, valid for 15 minutes and usable
// more than once within them. Only the agent's own account gets one (404 else).
// The host is the one the request came to, or Options.SignedURLBase (a regional
// deployment answers with its own host).
func (s *Server) signedURL(w http.ResponseWriter, r *http.Request, acct string) {
	id := r.URL.Query().Get("agent_id")
	sig := newID("sig_")
	now := time.Now()
	s.mu.Lock()
	a := s.agentForLocked(id, acct)
	if a != nil {
		for k, v := range s.sigs {
			if now.After(v.expires) {
				delete(s.sigs, k)
			}
		}
		s.sigs[sig] = signature{agentID: id, expires: now.Add(signatureTTL)}
	}
	base := s.opts.SignedURLBase
	s.mu.Unlock()
	if a == nil {
		notFound(w, "agent")
		return
	}
	if base == "" {
		base = "ws://" + r.Host
		if r.TLS != nil {
			base = "wss://" + r.Host
		}
	}
	q := url.Values{"agent_id": {id}, "conversation_signature": {sig}}
	writeJSON(w, http.StatusOK, map[string]any{"signed_url": strings.TrimRight(base, "/") + "/v1/convai/conversation?" + q.Encode()})
}

// ExpireSignatures makes every signed URL handed out so far stale (for tests of
// the 15-minute validity).
func (s *Server) ExpireSignatures() {
	s.mu.Lock()
	for k, v := range s.sigs {
		v.expires = time.Now().Add(-time.Second)
		s.sigs[k] = v
	}
	s.mu.Unlock()
}

// signedFor: the request carries a live conversation_signature for this agent.
func (s *Server) signedForLocked(r *http.Request, agentID string) bool {
	v, ok := s.sigs[r.URL.Query().Get("conversation_signature")]
	return ok && v.agentID == agentID && time.Now().Before(v.expires)
}

// conversationSocket is GET /v1/convai/conversation?agent_id=...: one conversation.
// Before the upgrade: 503 while refusing (SetRefuse); 404 for an unknown agent;
// for a private agent (platform_settings.auth.enable_auth) 403 without a live
// signature for it. A public agent needs no credential at all, and an xi-api-key
// header is ignored either way (the docs' two ways in are the agent id and the
// signed URL).
func (s *Server) conversationSocket(w http.ResponseWriter, r *http.Request) {
	if s.refuse.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"detail": map[string]any{"status": "service_unavailable", "message": "The simulator is refusing conversations"}})
		return
	}
	agentID := r.URL.Query().Get("agent_id")
	s.mu.Lock()
	a, ok := s.agents[agentID]
	var set settings
	signed := false
	if ok {
		set = s.settingsLocked(a)
		signed = s.signedForLocked(r, agentID)
	}
	s.mu.Unlock()
	if !ok {
		notFound(w, "agent")
		return
	}
	if set.private && !signed {
		writeJSON(w, http.StatusForbidden, map[string]any{"detail": map[string]any{"status": "authentication_required",
			"message": "This agent requires authentication: connect with a signed URL from get-signed-url"}})
		return
	}
	// The conversation exists ("initiated") before the client sees the upgrade.
	now := time.Now()
	conv := &Conversation{ID: newID("conv_"), AgentID: agentID, Status: "initiated", Started: now, Signed: signed}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"detail": map[string]any{"status": "service_unavailable", "message": "The simulator is shutting down"}})
		return
	}
	s.convs[conv.ID] = conv
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.mu.Lock()
		delete(s.convs, conv.ID)
		s.mu.Unlock()
		return // the upgrader answered
	}
	c := &wsConn{s: s, ws: ws, set: set, start: now, conv: conv,
		cmds: make(chan cmd, sendQueue), initc: make(chan initResult, 1),
		readDone: make(chan struct{}), loopDone: make(chan struct{}), stop: make(chan struct{})}
	c.lastRecv.Store(now.UnixNano())
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.live[c] = struct{}{}
	}
	s.mu.Unlock()
	if closed {
		c.kill("The simulator shut down.")
	}
	s.log.Debug("conversation open", "conversation_id", c.conv.ID, "agent_id", agentID)
	c.run()
}

// wsConn is one conversation socket. It runs two goroutines: the HTTP handler's,
// which reads and detects utterances, and the agent's (agent.run), which owns the
// conversation's state and is the only writer of data frames. Commands go from
// the first to the second through a bounded queue.
type wsConn struct {
	s     *Server
	ws    *websocket.Conn
	set   settings
	start time.Time
	conv  *Conversation // guarded by s.mu

	cmds     chan cmd
	initc    chan initResult
	readDone chan struct{} // the reader stopped
	loopDone chan struct{} // the agent stopped
	stop     chan struct{} // dropped or shut down
	stopOnce sync.Once

	audioPos  atomic.Int64 // the caller's audio clock: nanoseconds of audio received
	lastRecv  atomic.Int64 // unix nanoseconds of the last client frame
	closeSent atomic.Bool  // the agent sent its close frame
	dropped   atomic.Bool
}

// initResult is what the first client frame said about the initiation.
type initResult struct {
	in   *Initiation // nil: the client sent none
	fail *cmd        // the overrides were refused
}

func (c *wsConn) run() {
	c.ws.SetReadLimit(maxFrame)
	c.ws.SetCloseHandler(func(code int, text string) error {
		if !c.closeSent.Swap(true) {
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(closeWait))
		}
		return nil
	})
	a := newAgent(c)
	go a.run()
	err := c.read()
	close(c.readDone)
	<-c.loopDone
	c.ws.Close()
	c.finish(err)
}

// kill closes the socket abruptly, without a close frame.
func (c *wsConn) kill(reason string) {
	c.stopOnce.Do(func() {
		c.dropped.Store(true)
		c.setReason(reason)
		close(c.stop)
		c.ws.Close()
	})
}

// send queues a command for the agent; false if the agent is gone.
func (c *wsConn) send(m cmd) bool {
	select {
	case c.cmds <- m:
		return true
	case <-c.loopDone:
	case <-c.stop:
	}
	return false
}

func (c *wsConn) setReason(r string) {
	c.s.mu.Lock()
	if c.conv.TerminationReason == "" {
		c.conv.TerminationReason = r
	}
	c.s.mu.Unlock()
}

// errStop: the reader stopped on purpose (the agent is closing the conversation).
var errStop = errors.New("reader stopped")

// inMsg is any client message but user audio in its usual form (see audioChunk).
type inMsg struct {
	Type           string          `json:"type"`
	UserAudioChunk *string         `json:"user_audio_chunk"`
	EventID        *int64          `json:"event_id"`
	Text           *string         `json:"text"`
	ToolCallID     *string         `json:"tool_call_id"`
	Result         json.RawMessage `json:"result"`
	IsError        *bool           `json:"is_error"`
	IsApproved     *bool           `json:"is_approved"`
	Score          json.RawMessage `json:"score"`
	Override       map[string]any  `json:"conversation_config_override"`
	CustomLLM      map[string]any  `json:"custom_llm_extra_body"`
	DynamicVars    map[string]any  `json:"dynamic_variables"`
	UserID         *string         `json:"user_id"`
}

var (
	audioPrefix = []byte(`{"user_audio_chunk":"`)
	audioSuffix = []byte(`"}`)
)

// audioChunk is the fast path for the most frequent message, user audio as
// clients write it: {"user_audio_chunk":"<base64>"}. It returns the base64 text.
func audioChunk(msg []byte) ([]byte, bool) {
	msg = bytes.TrimSpace(msg)
	if len(msg) < len(audioPrefix)+len(audioSuffix) || !bytes.HasPrefix(msg, audioPrefix) || !bytes.HasSuffix(msg, audioSuffix) {
		return nil, false
	}
	b64 := msg[len(audioPrefix) : len(msg)-len(audioSuffix)]
	if bytes.IndexByte(b64, '"') >= 0 || bytes.IndexByte(b64, '\\') >= 0 {
		return nil, false
	}
	return b64, true
}

// reader is the read side's reusable state.
type reader struct {
	c     *wsConn
	det   *simaudio.Detector
	msg   []byte
	audio []byte
	pcm   []int16
	first bool
}

func newReader(c *wsConn) *reader {
	rd := &reader{c: c, first: true, msg: make([]byte, 0, 1024)}
	in := c.set.in
	rd.det = newDetector(in.Rate,
		func(pos int64) {
			c.send(cmd{kind: kSpeechStart, at: time.Now(), pos: in.SampleTime(pos)})
		},
		func(n int64, pcm []int16) {
			c.send(cmd{kind: kUtterance, dur: in.SampleTime(n), audio: c.set.out.Transcode(pcm, in.Rate)})
		})
	return rd
}

// read handles client frames until the socket fails or the agent stops it.
func (c *wsConn) read() error {
	rd := newReader(c)
	for {
		typ, r, err := c.ws.NextReader()
		if err != nil {
			return err
		}
		c.lastRecv.Store(time.Now().UnixNano())
		if rd.msg, err = readAll(r, rd.msg[:0]); err != nil {
			return err
		}
		if typ != websocket.TextMessage {
			continue // the protocol is JSON text only; binary frames are ignored
		}
		if err := rd.handle(rd.msg); err != nil {
			return err
		}
	}
}

func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4<<10)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// invalid ends the conversation as the real service does for a bad message: an
// error event, then close 1008.
func (rd *reader) invalid(errType, msg string) error {
	fail := cmd{kind: kFail, code: websocket.ClosePolicyViolation, errType: errType, text: msg}
	if rd.first {
		rd.started(&initResult{fail: &fail})
	} else {
		rd.c.send(fail)
	}
	return rd.c.stopReading()
}

// stopReading waits for the agent to finish the close it was asked for.
func (c *wsConn) stopReading() error {
	select {
	case <-c.loopDone:
	case <-c.stop:
	}
	return errStop
}

func (rd *reader) handle(msg []byte) error {
	c := rd.c
	if f := c.s.opts.Observe; f != nil {
		f(FromClient, msg)
	}
	if b64, ok := audioChunk(msg); ok {
		rd.started(nil)
		return rd.userAudio(b64)
	}
	var m inMsg
	if err := json.Unmarshal(msg, &m); err != nil {
		return rd.invalid("invalid_message", "Invalid message: "+err.Error())
	}
	if m.Type == "conversation_initiation_client_data" {
		// Only the first frame sets up the conversation; a later one is kept but
		// changes nothing.
		in, fail := c.initiation(&m)
		if fail == nil {
			c.s.mu.Lock()
			if c.conv.Initiation == nil {
				c.conv.Initiation = in
			}
			c.s.mu.Unlock()
		}
		if rd.first {
			rd.started(&initResult{in: in, fail: fail})
			if fail != nil {
				return c.stopReading()
			}
		}
		return nil
	}
	rd.started(nil)
	// The client events of the AsyncAPI contract, each with its required fields
	// (ErrorType missing_fields, close 1008, for one that lacks them); anything
	// else is invalid_message and close 1008.
	missing := func(field string) error {
		return rd.invalid("missing_fields", fmt.Sprintf("Field %q is required for %s messages", field, m.Type))
	}
	switch m.Type {
	case "":
		if m.UserAudioChunk != nil {
			return rd.userAudio([]byte(*m.UserAudioChunk))
		}
		return rd.invalid("invalid_message", "Message has neither a type nor user_audio_chunk")
	case "pong":
		if m.EventID == nil {
			return missing("event_id")
		}
		c.send(cmd{kind: kPong, n: *m.EventID, at: time.Now()})
	case "client_tool_result":
		var result string
		switch {
		case m.ToolCallID == nil:
			return missing("tool_call_id")
		case m.IsError == nil:
			return missing("is_error")
		case m.Result == nil:
			return missing("result")
		case json.Unmarshal(m.Result, &result) != nil:
			return rd.invalid("value_error", "client_tool_result.result must be a string")
		}
		res := ToolResult{ID: *m.ToolCallID, IsError: *m.IsError, Result: result}
		c.s.mu.Lock()
		c.conv.ToolResults = append(c.conv.ToolResults, res)
		c.s.mu.Unlock()
		c.send(cmd{kind: kToolResult, text: res.ID, isError: res.IsError, result: result})
	case "contextual_update":
		// Background context for the LLM; it is never answered (SDK:
		// "non-interrupting content ... without directly prompting the agent").
		if m.Text == nil {
			return missing("text")
		}
		c.s.mu.Lock()
		c.conv.ContextualUpdates = append(c.conv.ContextualUpdates, *m.Text)
		c.s.mu.Unlock()
	case "user_message":
		// A user turn, answered like speech (text may be null: a text-only signal).
		text := ""
		if m.Text != nil {
			text = *m.Text
		}
		c.s.mu.Lock()
		c.conv.UserMessages = append(c.conv.UserMessages, text)
		c.s.mu.Unlock()
		if text != "" {
			c.send(cmd{kind: kUserMessage, text: text, at: time.Now()})
		}
	case "user_activity":
		// Keeps the conversation alive; nothing else.
	case "feedback":
		if m.EventID == nil {
			return missing("event_id")
		}
		if m.Score == nil {
			return missing("score")
		}
	case "mcp_tool_approval_result":
		if m.ToolCallID == nil {
			return missing("tool_call_id")
		}
		if m.IsApproved == nil {
			return missing("is_approved")
		}
	case "multimodal_message":
		// Accepted; the simulated agent has no eyes.
	default:
		return rd.invalid("invalid_message", fmt.Sprintf("Unknown message type %q", m.Type))
	}
	return nil
}

// started tells the agent, once, what the first frame said about the initiation.
func (rd *reader) started(r *initResult) {
	if !rd.first {
		return
	}
	rd.first = false
	if r == nil {
		r = &initResult{}
	}
	rd.c.initc <- *r
}

func (rd *reader) userAudio(b64 []byte) error {
	need := base64.StdEncoding.DecodedLen(len(b64))
	if cap(rd.audio) < need {
		rd.audio = make([]byte, need)
	}
	n, err := base64.StdEncoding.Decode(rd.audio[:need], b64)
	if err != nil {
		return rd.invalid("invalid_message", "Invalid user_audio_chunk: "+err.Error())
	}
	in := rd.c.set.in
	rd.pcm = in.Decode(rd.pcm, rd.audio[:n])
	rd.det.Feed(rd.pcm)
	rd.c.audioPos.Store(int64(in.SampleTime(rd.det.Total())))
	return nil
}

// initiation reads conversation_initiation_client_data; overrides of fields the
// agent does not allow (platform_settings.overrides) are refused as the real
// service does, with override_error and close 1008.
func (c *wsConn) initiation(m *inMsg) (*Initiation, *cmd) {
	in := &Initiation{DynamicVariables: m.DynamicVars, Override: m.Override, CustomLLMExtraBody: m.CustomLLM, UserID: m.UserID}
	in.FirstMessage = stringAt(m.Override, "agent", "first_message")
	allowed, _ := c.set.overrides["conversation_config_override"].(map[string]any)
	if path, ok := disallowed(m.Override, allowed, ""); !ok {
		return nil, &cmd{kind: kFail, code: websocket.ClosePolicyViolation, errType: "override_error",
			text: fmt.Sprintf("Override for field '%s' is not allowed by config.", path)}
	}
	if len(m.CustomLLM) > 0 && c.set.overrides["custom_llm_extra_body"] != true {
		return nil, &cmd{kind: kFail, code: websocket.ClosePolicyViolation, errType: "override_error",
			text: "Override for field 'custom_llm_extra_body' is not allowed by config."}
	}
	return in, nil
}

// disallowed finds a non-null override whose flag in allowed is not true.
func disallowed(override, allowed map[string]any, prefix string) (string, bool) {
	for k, v := range override {
		if v == nil {
			continue
		}
		path := prefix + k
		if sub, ok := v.(map[string]any); ok {
			a, _ := allowed[k].(map[string]any)
			if p, ok := disallowed(sub, a, path+"."); !ok {
				return p, false
			}
			continue
		}
		if allowed[k] != true {
			return path, false
		}
	}
	return "", true
}

// finish records the end of the conversation once both goroutines are gone.
func (c *wsConn) finish(readErr error) {
	var ce *websocket.CloseError
	switch {
	case c.dropped.Load():
	case errors.As(readErr, &ce):
		c.setReason(fmt.Sprintf("Client disconnected: %d", ce.Code))
	default:
		c.setReason("Client disconnected: connection lost")
	}
	now := time.Now()
	s := c.s
	s.mu.Lock()
	delete(s.live, c)
	cv := c.conv
	cv.Duration = now.Sub(cv.Started).Seconds()
	if cv.Status == "initiated" {
		cv.Status = "failed"
	} else {
		cv.Status = "processing"
	}
	cv.DoneAt = now.Add(s.opts.AnalysisDelay)
	cv.Successful, cv.Summary, cv.Tokens = analyse(cv.Transcript)
	out := cv.clone(now)
	s.mu.Unlock()
	s.log.Debug("conversation closed", "conversation_id", cv.ID, "reason", out.TerminationReason)
	if f := s.opts.OnConversationEnd; f != nil {
		f(out)
	}
}

// analyse is the post-call analysis: success if the caller said anything.
func analyse(t []TranscriptTurn) (successful, summary string, tokens int) {
	user, answered := 0, 0
	for i, turn := range t {
		tokens += (len(turn.Message) + 3) / 4
		if turn.Role != "user" {
			continue
		}
		user++
		if i+1 < len(t) && t[i+1].Role == "agent" {
			answered++
		}
	}
	if user == 0 {
		return "failure", "The caller never spoke.", tokens
	}
	times := "times"
	if user == 1 {
		times = "time"
	}
	if answered == user {
		return "success", fmt.Sprintf("The caller spoke %d %s; the agent answered each time.", user, times), tokens
	}
	return "success", fmt.Sprintf("The caller spoke %d %s; the agent answered %d of them.", user, times, answered), tokens
}
