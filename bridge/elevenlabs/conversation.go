package elevenlabs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge"
	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
)

// Provider is ElevenLabs as a bridge.Provider: each call dials a signed URL for
// its agent, with the key that created the agent, and speaks the Agents
// conversation websocket.
type Provider struct {
	Provisioner *Provisioner
	// EndCallGrace is how long after agent_tool_response(end_call) a call waits for
	// the provider to close the conversation before it hangs up anyway (default 15 s).
	EndCallGrace time.Duration
	// AnalysisRetry is how long to keep asking for the post-call analysis (default 2 min).
	AnalysisRetry time.Duration
	Log           *slog.Logger

	once   sync.Once
	dialer *websocket.Dialer
	// writeBufs lends gorilla a write buffer only while it writes (the initiation and
	// the close): the session frames its data messages itself.
	writeBufs sync.Pool
}

func (p *Provider) init() {
	p.once.Do(func() {
		// The read buffer is held for the call's life; a message longer than it is
		// read past it, straight into the session's pooled buffer.
		p.dialer = &websocket.Dialer{NetDialContext: bridge.NetDial(nil), ReadBufferSize: 2 << 10, WriteBufferSize: 4 << 10, WriteBufferPool: &p.writeBufs,
			Subprotocols: []string{"convai"}}
		if p.Log == nil {
			p.Log = slog.New(slog.DiscardHandler)
		}
		if p.AnalysisRetry <= 0 {
			p.AnalysisRetry = 2 * time.Minute
		}
		if p.EndCallGrace <= 0 {
			p.EndCallGrace = 15 * time.Second
		}
	})
}

// Slug implements bridge.Provider.
func (p *Provider) Slug() string { return store.ProviderElevenLabs }

// Dial implements bridge.Provider: it gets a signed URL for the agent with the
// credential that created it, dials the host that URL names, sends
// conversation_initiation_client_data and waits for
// conversation_initiation_metadata, all within ctx. The signed URL is a
// credential: it is never logged. A resumed conversation asks the agent not to
// greet again and tells it what was said so far.
func (p *Provider) Dial(ctx context.Context, info *callpath.Info, resume *bridge.Resume) (bridge.Conversation, error) {
	p.init()
	a := info.Agent
	if a.ExternalAgentID == nil || *a.ExternalAgentID == "" {
		return nil, callpath.Refuse(480, "Temporarily Unavailable", callpath.AgentNotProvisioned, nil)
	}
	cfg := info.Config
	c := &conversation{p: p, format: media.FormatULaw8k, log: info.Log}
	want, bytesPerMS := store.FormatULaw8000, 8
	if cfg.AudioFormat == store.FormatPCM16000 {
		c.format, want, bytesPerMS = media.FormatPCM16k, store.FormatPCM16000, 32
	}
	c.chunk = cfg.ChunkMS * bytesPerMS
	u, err := p.Provisioner.SignedURL(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("%w: signed URL: %w", ErrProvider, err)
	}
	conn, res, err := p.dialer.DialContext(ctx, u, nil)
	if err != nil {
		if res != nil {
			return nil, fmt.Errorf("%w: websocket handshake: HTTP %d", ErrProvider, res.StatusCode)
		}
		return nil, fmt.Errorf("%w: websocket: %w", ErrProvider, scrubURL(err))
	}
	fail := func(err error) (bridge.Conversation, error) {
		conn.Close()
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	conn.SetWriteDeadline(deadline)
	if err := conn.WriteMessage(websocket.TextMessage, initiation(info, resume != nil)); err != nil {
		return fail(fmt.Errorf("%w: send initiation: %w", ErrProvider, err))
	}
	conn.SetReadDeadline(deadline)
	// The metadata comes first; anything else before it is kept for the session.
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			return fail(fmt.Errorf("%w: waiting for conversation_initiation_metadata: %w", ErrProvider, err))
		}
		var ev serverEvent
		if json.Unmarshal(msg, &ev) != nil {
			continue
		}
		if ev.Type != "conversation_initiation_metadata" || ev.Meta == nil {
			c.early = append(c.early, msg)
			continue
		}
		if ev.Meta.UserInputAudioFormat != "" && ev.Meta.UserInputAudioFormat != want ||
			ev.Meta.AgentOutputAudioFormat != "" && ev.Meta.AgentOutputAudioFormat != want {
			return fail(fmt.Errorf("%w: provider audio formats %s/%s, agent expects %s",
				ErrProvider, ev.Meta.UserInputAudioFormat, ev.Meta.AgentOutputAudioFormat, want))
		}
		c.conn, c.id = conn, ev.Meta.ConversationID
		break
	}
	if resume != nil && resume.Digest != "" {
		msg := contextualUpdate("The connection dropped and was restored; the conversation continues. So far: " + resume.Digest)
		if err := conn.WriteMessage(websocket.TextMessage, msg); err != nil {
			return fail(fmt.Errorf("%w: send the conversation so far: %w", ErrProvider, err))
		}
	}
	conn.SetReadDeadline(time.Time{})
	conn.SetWriteDeadline(time.Time{})
	return c, nil
}

// initiation is conversation_initiation_client_data: the call's dynamic variables
// (the agent's prompt and opening line may use them); a reconnect also asks the
// agent not to greet again, and a voicemail message replaces the opening line
// (first_message: the only override the agent allows). The agent's
// personality, language, voice and temperature are on the agent itself.
func initiation(info *callpath.Info, resumed bool) []byte {
	msg := map[string]any{"type": "conversation_initiation_client_data", "dynamic_variables": info.Variables()}
	switch {
	case resumed:
		msg["conversation_config_override"] = map[string]any{"agent": map[string]any{"first_message": ""}}
	case info.Message != "":
		// leave_message: the agent's first message is the voicemail message
		// (the AsyncAPI's conversation_config_override.agent.first_message; the
		// agent's platform_settings.overrides must allow it, as ours do — an
		// agent edited to refuse it gets override_error and the message fails).
		msg["conversation_config_override"] = map[string]any{"agent": map[string]any{
			"first_message": callpath.FillVariables(info.Message, info.Variables())}}
	}
	return mustMarshal(msg)
}

// scrubURL drops the URL (a signed URL is a credential) from a dial error.
func scrubURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// conversation is one ElevenLabs conversation (bridge.Conversation).
type conversation struct {
	p      *Provider
	conn   *websocket.Conn
	id     string
	format media.Format
	chunk  int
	early  [][]byte
	log    *slog.Logger

	// Barge-in, owned by the reader: audio older than the last interruption's
	// event_id, or of the reply that was playing when it came, is stale. Event ids
	// are per response, and the reply after an interruption may carry the
	// interruption's own id, so that one plays.
	lastAudio, interruptID, cutID int64
}

func (c *conversation) Conn() *websocket.Conn { return c.conn }
func (c *conversation) ID() string            { return c.id }
func (c *conversation) Format() media.Format  { return c.format }
func (c *conversation) ChunkBytes() int       { return c.chunk }
func (c *conversation) Early() [][]byte       { return c.early }

// AppendAudio implements bridge.Conversation: {"user_audio_chunk": base64}.
func (c *conversation) AppendAudio(dst, chunk []byte) []byte { return appendAudioChunk(dst, chunk) }

// Keypad implements bridge.Conversation: a user_message is a user turn, which the
// agent answers; a contextual_update only background it never answers.
func (c *conversation) Keypad(text string, mode store.KeypadMode) [][]byte {
	if mode == store.KeypadContextualUpdate {
		return [][]byte{contextualUpdate(text)}
	}
	return [][]byte{userMessage(text)}
}

// ToolResult implements bridge.Conversation: client_tool_result.
func (c *conversation) ToolResult(id, result string, isError bool) [][]byte {
	return [][]byte{toolResult(id, result, isError)}
}

// audioBufs hold decoded agent audio while it is handed to the call.
var audioBufs = sync.Pool{New: func() any { return new([]byte) }}

// Handle implements bridge.Conversation.
func (c *conversation) Handle(msg []byte, ev bridge.Events) {
	buf := audioBufs.Get().(*[]byte)
	audio, id, ok := parseAudio(msg, *buf)
	if ok {
		*buf = audio[:cap(audio)]
		c.onAudio(audio, id, ev)
		audioBufs.Put(buf)
		return
	}
	audioBufs.Put(buf)
	var e serverEvent
	if err := json.Unmarshal(msg, &e); err != nil {
		c.log.Warn("unreadable provider message", "err", err)
		return
	}
	c.onEvent(&e, ev)
}

func (c *conversation) onAudio(audio []byte, id int64, ev bridge.Events) {
	if c.interruptID != 0 && (id < c.interruptID || id == c.cutID) {
		return // barge-in: audio of an interrupted reply
	}
	if id != c.lastAudio {
		ev.ReplyStarted()
	}
	c.lastAudio = id
	ev.Audio(audio)
}

func (c *conversation) onEvent(e *serverEvent, ev bridge.Events) {
	switch e.Type {
	case "ping":
		if e.Ping != nil {
			ev.Send(pongMsg(e.Ping.EventID))
			if e.Ping.PingMS != nil {
				ev.RTT(time.Duration(*e.Ping.PingMS) * time.Millisecond)
			}
		}
	case "interruption":
		if e.Interruption != nil {
			c.interruptID, c.cutID = e.Interruption.EventID, c.lastAudio
		}
		ev.Interrupt()
	case "user_transcript":
		if e.UserTranscript != nil {
			ev.Transcript("user", e.UserTranscript.Text)
		}
	case "agent_response":
		if e.AgentResponse != nil {
			ev.Transcript("agent", e.AgentResponse.Text)
		}
	case "agent_response_correction":
		if e.Correction != nil {
			ev.CorrectAgent(e.Correction.Corrected)
		}
	case "client_tool_call":
		if e.ToolCall != nil {
			ev.ToolCall(e.ToolCall.ToolName, e.ToolCall.ToolCallID, e.ToolCall.Parameters)
		}
	case "agent_tool_response":
		// The provider ran one of its system tools. end_call is followed by the
		// close (1000) that ends the call, before or after the farewell's audio:
		// the call ends on the close, once the audio has played. Should the close
		// never come, the call ends after EndCallGrace all the same.
		if t := e.AgentToolResponse; t != nil && t.ToolName == "end_call" && !t.IsError {
			ev.EndCall(c.p.EndCallGrace)
		}
	case "error":
		if e.Error != nil {
			c.log.Warn("provider error", "code", e.Error.Code, "type", e.Error.ErrorType, "message", e.Error.Message)
		}
	}
}

// Analyse implements bridge.Analyser: it fetches the post-call analysis of each
// conversation, with retries, for its summary, success and token counts.
func (p *Provider) Analyse(stop <-chan struct{}, info *callpath.Info, convIDs []string) *bridge.Analysis {
	p.init()
	log := info.Log
	kctx, kcancel := context.WithTimeout(context.Background(), 5*time.Second)
	apiKey, err := p.Provisioner.KeyFor(kctx, info.Agent)
	kcancel()
	if err != nil {
		log.Warn("no provider key for the post-call analysis", "err", err)
		return nil
	}
	deadline := time.Now().Add(p.AnalysisRetry)
	var summaries []string
	var success *bool
	usage := map[string]map[string]int{}
	meta := map[string]any{"provider_conversation_ids": convIDs}
	for _, id := range convIDs {
		doc := p.fetchDone(stop, apiKey, id, deadline, log)
		if doc == nil {
			continue
		}
		if doc.Analysis != nil {
			if doc.Analysis.TranscriptSummary != "" {
				summaries = append(summaries, doc.Analysis.TranscriptSummary)
			}
			switch doc.Analysis.CallSuccessful {
			case "success":
				ok := success == nil || *success
				success = &ok
			case "failure":
				f := false
				success = &f
			}
		}
		addLLMUsage(usage, doc.Metadata)
		if cost, ok := doc.Metadata["cost"].(float64); ok {
			prev, _ := meta["provider_cost"].(float64)
			meta["provider_cost"] = prev + cost
		}
	}
	if len(usage) > 0 {
		meta["llm_usage"] = usage
		// The tokens of what was generated and kept; started generations a
		// barge-in cut off count in initiated_generation only.
		b := usage["irreversible_generation"]
		if b == nil {
			b = usage["initiated_generation"]
		}
		if n := b["input"] + b["input_cache_read"] + b["input_cache_write"] + b["output_total"]; n > 0 {
			meta["llm_tokens"] = n
		}
	}
	a := &bridge.Analysis{Successful: success, Metadata: meta}
	if len(summaries) > 0 {
		s := strings.Join(summaries, " ")
		a.Summary = &s
	}
	return a
}

// fetchDone polls GET /v1/convai/conversations/{id} until its analysis is done.
func (p *Provider) fetchDone(stop <-chan struct{}, apiKey, id string, deadline time.Time, log *slog.Logger) *ConversationInfo {
	wait := 300 * time.Millisecond
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		doc, err := p.Provisioner.Client.GetConversation(ctx, apiKey, id)
		cancel()
		if err == nil && (doc.Status == "done" || doc.Status == "failed") {
			return doc
		}
		var se *StatusError
		if errors.As(err, &se) && se.Status == 404 {
			log.Warn("provider has no such conversation", "id", id)
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, 10*time.Second)
	}
	log.Warn("post-call analysis not ready in time", "id", id)
	return nil
}

// addLLMUsage adds metadata.charging.llm_usage to usage, per bucket
// (irreversible_generation, initiated_generation) and token kind (input,
// input_cache_read, input_cache_write, output_total), over every model: the
// buckets are not added together, as one may contain the other.
func addLLMUsage(usage map[string]map[string]int, meta map[string]any) {
	ch, _ := meta["charging"].(map[string]any)
	buckets, _ := ch["llm_usage"].(map[string]any)
	for bucket, v := range buckets {
		b, _ := v.(map[string]any)
		models, _ := b["model_usage"].(map[string]any)
		for _, mv := range models {
			m, _ := mv.(map[string]any)
			for kind, kv := range m {
				k, _ := kv.(map[string]any)
				if n, ok := k["tokens"].(float64); ok && n > 0 {
					if usage[bucket] == nil {
						usage[bucket] = map[string]int{}
					}
					usage[bucket][kind] += int(n)
				}
			}
		}
	}
}

var (
	_ bridge.Provider     = (*Provider)(nil)
	_ bridge.Analyser     = (*Provider)(nil)
	_ bridge.Conversation = (*conversation)(nil)
)
