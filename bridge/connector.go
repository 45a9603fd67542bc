package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge/elevenlabs"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/sip"
	"github.com/cxco/gateway/store"
)

// Observer is told about provider sessions (metrics).
type Observer interface {
	ProviderRTT(d time.Duration)
	ProviderReconnect(ok bool)
	ProviderConnect(d time.Duration, err error)
}

// Stats counts provider websocket traffic of the whole process.
type Stats struct {
	MessagesIn, MessagesOut atomic.Int64
	Sessions                atomic.Int64
}

// Connector opens a provider session for each agent call (it implements sip.Connector).
type Connector struct {
	Provisioner *elevenlabs.Provisioner
	Store       *store.Store
	Timeout     time.Duration // --provider-timeout: signed URL, websocket, initiation and metadata
	// ReconnectTimeout bounds the one reconnect after a dropped socket: a new signed
	// URL, the websocket upgrade and the metadata, across the internet (default 5 s).
	ReconnectTimeout time.Duration
	// EndCallGrace is how long after agent_tool_response(end_call) a call waits for
	// the provider to close the conversation before it hangs up anyway (default 15 s).
	EndCallGrace time.Duration
	Log          *slog.Logger
	Observer     Observer
	// AnalysisRetry is how long to keep asking for the post-call analysis (default 2 min).
	AnalysisRetry time.Duration
	// OnUpstream, when set, is told for every chunk of caller audio how long it took
	// to leave on the websocket from the RTP arrival of its newest frame, and from
	// the jitter buffer's release of its last frame: the first is the upstream
	// latency, the second what the gateway adds to the buffer's depth.
	OnUpstream func(fromArrival, fromPlayout time.Duration)

	stats  Stats
	bg     sync.WaitGroup
	bgStop chan struct{}
	once   sync.Once
	dialer *websocket.Dialer
	// writeBufs lends gorilla a write buffer only while it writes (the initiation and
	// the close): the sessions' own writers frame their messages themselves.
	writeBufs sync.Pool
}

// Stats are the process's provider traffic counters.
func (c *Connector) Stats() *Stats { return &c.stats }

func (c *Connector) init() {
	c.once.Do(func() {
		c.bgStop = make(chan struct{})
		c.dialer = &websocket.Dialer{HandshakeTimeout: c.timeout(), ReadBufferSize: 4 << 10, WriteBufferSize: 4 << 10, WriteBufferPool: &c.writeBufs,
			Subprotocols: []string{"convai"}}
		if c.Log == nil {
			c.Log = slog.New(slog.DiscardHandler)
		}
		if c.AnalysisRetry <= 0 {
			c.AnalysisRetry = 2 * time.Minute
		}
		if c.ReconnectTimeout <= 0 {
			c.ReconnectTimeout = 5 * time.Second
		}
		if c.EndCallGrace <= 0 {
			c.EndCallGrace = 15 * time.Second
		}
	})
}

func (c *Connector) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 3 * time.Second
}

// Close lets the post-call analyses under way finish (up to 20 s: the last calls of a
// draining node keep their summaries), then stops the rest and waits for it.
func (c *Connector) Close() {
	c.init()
	done := make(chan struct{})
	go func() { c.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		c.Log.Warn("post-call analyses still pending at shutdown are abandoned")
	}
	select {
	case <-c.bgStop:
	default:
		close(c.bgStop)
	}
	<-done
}

// Connect implements sip.Connector: it gets a signed URL for the agent with the
// credential that created it, dials the host that URL names, sends
// conversation_initiation_client_data and waits for
// conversation_initiation_metadata, all within --provider-timeout.
func (c *Connector) Connect(ctx context.Context, info *sip.CallInfo) (sip.Peer, error) {
	c.init()
	a := info.Agent
	if a.ExternalAgentID == nil || *a.ExternalAgentID == "" {
		return nil, &sip.Status{Code: 480, Reason: "Temporarily Unavailable", EndReason: "agent_not_provisioned"}
	}
	cfg := store.ParseAgentConfig(a.Config)
	s := &Session{c: c, info: info, log: info.Log, agent: *a.ExternalAgentID, upstream: c.OnUpstream, keypad: cfg.Keypad,
		wake: make(chan struct{}, 1), ctrl: make(chan []byte, 64), done: make(chan struct{}), stop: make(chan struct{})}
	s.format = media.FormatULaw8k
	bytesPerMS := 8
	if cfg.AudioFormat == store.FormatPCM16000 {
		s.format, bytesPerMS = media.FormatPCM16k, 32
	}
	s.chunkBytes = cfg.ChunkMS * bytesPerMS
	s.partial = make([]byte, 0, s.chunkBytes+640)
	s.ring = make([][]byte, ringStart)
	s.stamps = make([]chunkStamp, ringStart)
	start := time.Now()
	conn, convID, err := c.open(ctx, s, true, c.timeout())
	if c.Observer != nil {
		c.Observer.ProviderConnect(time.Since(start), err)
	}
	if err != nil {
		return nil, &sip.Status{Code: 503, Reason: "Service Unavailable", EndReason: sip.EndProviderDown, RetryAfter: 5, Err: err}
	}
	s.conn, s.convIDs = conn, []string{convID}
	s.log = s.log.With("provider_conversation_id", convID)
	s.rec = newRecorder(c.Store, c.Store.Spool(), info.Company.ID, info.ConversationID, s.log)
	s.rec.add(recJob{externalID: convID})
	c.stats.Sessions.Add(1)
	s.wg.Add(2)
	go s.reader()
	go s.writer()
	s.log.Info("provider session open", "connect_ms", time.Since(start).Milliseconds(), "format", s.format)
	return s, nil
}

// open gets a signed URL, dials it, sends the initiation and waits for the
// metadata, all within budget. The signed URL is a credential: it is never logged.
func (c *Connector) open(ctx context.Context, s *Session, first bool, budget time.Duration) (*websocket.Conn, string, error) {
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	u, err := c.Provisioner.SignedURL(ctx, s.info.Agent)
	if err != nil {
		return nil, "", fmt.Errorf("%w: signed URL: %w", elevenlabs.ErrProvider, err)
	}
	conn, res, err := c.dialer.DialContext(ctx, u, nil)
	if err != nil {
		if res != nil {
			return nil, "", fmt.Errorf("%w: websocket handshake: HTTP %d", elevenlabs.ErrProvider, res.StatusCode)
		}
		return nil, "", fmt.Errorf("%w: websocket: %w", elevenlabs.ErrProvider, scrubURL(err))
	}
	fail := func(err error) (*websocket.Conn, string, error) {
		conn.Close()
		return nil, "", err
	}
	deadline, _ := ctx.Deadline()
	conn.SetWriteDeadline(deadline)
	if err := conn.WriteMessage(websocket.TextMessage, c.initiation(s, first)); err != nil {
		return fail(fmt.Errorf("%w: send initiation: %w", elevenlabs.ErrProvider, err))
	}
	conn.SetReadDeadline(deadline)
	// The metadata comes first; anything else before it is kept for the session.
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			return fail(fmt.Errorf("%w: waiting for conversation_initiation_metadata: %w", elevenlabs.ErrProvider, err))
		}
		var ev serverEvent
		if jsonErr := jsonUnmarshal(msg, &ev); jsonErr != nil {
			continue
		}
		if ev.Type == "conversation_initiation_metadata" && ev.Meta != nil {
			want := store.FormatULaw8000
			if s.format == media.FormatPCM16k {
				want = store.FormatPCM16000
			}
			if ev.Meta.UserInputAudioFormat != "" && ev.Meta.UserInputAudioFormat != want ||
				ev.Meta.AgentOutputAudioFormat != "" && ev.Meta.AgentOutputAudioFormat != want {
				return fail(fmt.Errorf("%w: provider audio formats %s/%s, agent expects %s",
					elevenlabs.ErrProvider, ev.Meta.UserInputAudioFormat, ev.Meta.AgentOutputAudioFormat, want))
			}
			conn.SetReadDeadline(time.Time{})
			conn.SetWriteDeadline(time.Time{})
			return conn, ev.Meta.ConversationID, nil
		}
	}
}

// initiation is conversation_initiation_client_data: the call's dynamic variables
// (the agent's prompt and opening line may use them); a reconnect also asks the
// agent not to greet again (the only override the agent allows). The agent's
// personality, language, voice and temperature are on the agent itself.
func (c *Connector) initiation(s *Session, first bool) []byte {
	a := s.info.Agent
	msg := map[string]any{
		"type": "conversation_initiation_client_data",
		"dynamic_variables": map[string]any{
			"caller_number":   s.info.Caller,
			"called_number":   s.info.Called,
			"conversation_id": strconv.FormatInt(s.info.ConversationID, 10),
			"agent_name":      a.Name,
		},
	}
	if !first {
		msg["conversation_config_override"] = map[string]any{"agent": map[string]any{"first_message": ""}}
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

// reconnect replaces a dropped socket once, within Connector.ReconnectTimeout,
// and tells the new conversation what was said so far.
func (s *Session) reconnect() bool {
	s.reconnects++
	conn, convID, err := s.c.open(context.Background(), s, false, s.c.ReconnectTimeout)
	if s.c.Observer != nil {
		s.c.Observer.ProviderReconnect(err == nil)
	}
	if err != nil {
		s.log.Warn("provider reconnect failed", "err", err)
		return false
	}
	s.connMu.Lock()
	select {
	case <-s.stop: // the call ended while we dialled
		s.connMu.Unlock()
		conn.Close()
		return false
	default:
	}
	old := s.conn
	s.conn = conn
	s.convIDs = append(s.convIDs, convID)
	s.connMu.Unlock()
	if old != nil {
		old.Close()
	}
	s.log.Info("provider reconnected", "provider_conversation_id", convID)
	if digest := s.transcriptDigest(); digest != "" {
		s.send(contextualUpdate("The connection dropped and was restored; the conversation continues. So far: " + digest))
	}
	return true
}

// transcriptDigest is the conversation so far, in a few lines.
func (s *Session) transcriptDigest() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	tr, err := s.c.Store.Transcript(ctx, s.info.Company.ID, s.info.ConversationID)
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, e := range tr[max(0, len(tr)-12):] {
		fmt.Fprintf(&b, "%s: %s\n", e.Role, e.Message)
	}
	return b.String()
}

// analyse fetches the provider's post-call analysis in the background, with retries,
// and stores summary, success and token counts on the conversation.
func (c *Connector) analyse(info *sip.CallInfo, convIDs []string) {
	if len(convIDs) == 0 || c.Provisioner == nil {
		return
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		log := info.Log
		kctx, kcancel := context.WithTimeout(context.Background(), 5*time.Second)
		apiKey, err := c.Provisioner.KeyFor(kctx, info.Agent)
		kcancel()
		if err != nil {
			log.Warn("no provider key for the post-call analysis", "err", err)
			return
		}
		deadline := time.Now().Add(c.AnalysisRetry)
		var summaries []string
		var success *bool
		usage := map[string]map[string]int{}
		meta := map[string]any{"provider_conversation_ids": convIDs}
		for _, id := range convIDs {
			doc := c.fetchDone(apiKey, id, deadline, log)
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
		var summary *string
		if len(summaries) > 0 {
			s := strings.Join(summaries, " ")
			summary = &s
		}
		w := store.Write{Op: store.WriteAnalysis, CompanyID: info.Company.ID, Conversation: info.ConversationID,
			Summary: summary, Successful: success, Metadata: meta}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Store.Apply(ctx, w); err != nil {
			if sp := c.Store.Spool(); sp != nil && errors.Is(err, store.ErrUnavailable) {
				sp.Do(w)
				return
			}
			log.Warn("could not store the post-call analysis", "err", err)
			return
		}
		log.Info("post-call analysis stored", "summary", summary != nil, "successful", success)
	}()
}

// fetchDone polls GET /v1/convai/conversations/{id} until its analysis is done.
func (c *Connector) fetchDone(apiKey, id string, deadline time.Time, log *slog.Logger) *elevenlabs.ConversationInfo {
	wait := 300 * time.Millisecond
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		doc, err := c.Provisioner.Client.GetConversation(ctx, apiKey, id)
		cancel()
		if err == nil && (doc.Status == "done" || doc.Status == "failed") {
			return doc
		}
		var se *elevenlabs.StatusError
		if errors.As(err, &se) && se.Status == http.StatusNotFound {
			log.Warn("provider has no such conversation", "id", id)
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-c.bgStop:
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
