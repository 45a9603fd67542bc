package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cxco/gateway/callpath"
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

// ErrNoProvider: the agent's provider is not one this gateway runs.
var ErrNoProvider = errors.New("bridge: no such voice-AI provider")

// Connector opens a provider session for each agent call (it implements
// callpath.Connector) with the agent's provider.
type Connector struct {
	// Providers are the voice-AI providers by slug.
	Providers map[string]Provider
	Timeout   time.Duration // --provider-timeout: the whole Dial (default 3 s)
	// ReconnectTimeout bounds the one reconnect after a dropped socket, across the
	// internet (default 5 s).
	ReconnectTimeout time.Duration
	Log              *slog.Logger
	Observer         Observer
	// OnUpstream, when set, is told for every chunk of caller audio how long it took
	// to leave on the websocket from the RTP arrival of its newest frame, and from
	// the jitter buffer's release of its last frame: the first is the upstream
	// latency, the second what the gateway adds to the buffer's depth.
	OnUpstream func(fromArrival, fromPlayout time.Duration)

	stats  Stats
	bg     sync.WaitGroup
	bgStop chan struct{}
	once   sync.Once
}

// Stats are the process's provider traffic counters.
func (c *Connector) Stats() *Stats { return &c.stats }

func (c *Connector) init() {
	c.once.Do(func() {
		c.bgStop = make(chan struct{})
		if c.Log == nil {
			c.Log = slog.New(slog.DiscardHandler)
		}
		if c.Timeout <= 0 {
			c.Timeout = 3 * time.Second
		}
		if c.ReconnectTimeout <= 0 {
			c.ReconnectTimeout = 5 * time.Second
		}
	})
}

// Close lets the post-call analyses under way finish (up to 20 s: the last calls of a
// draining node keep their summaries), then stops the rest and waits for it.
func (c *Connector) Close() {
	c.init()
	done := make(chan struct{})
	go func() { c.bg.Wait(); close(done) }()
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		c.Log.Warn("post-call analyses still pending at shutdown are abandoned")
	}
	select {
	case <-c.bgStop:
	default:
		close(c.bgStop)
	}
	<-done
}

// Connect implements callpath.Connector: it dials the agent's provider within
// --provider-timeout and starts the session's reader and writer. When that
// provider cannot be reached and the agent names a fallback provider, the call
// is bridged to the fallback instead (within its own --provider-timeout), and
// the conversation records which one served it (source, and
// metadata_.provider_failover).
func (c *Connector) Connect(ctx context.Context, info *callpath.Info) (callpath.Peer, error) {
	c.init()
	slug := store.ProviderOf(info.Agent)
	p, conv, start, err := c.dial(ctx, slug, info)
	var failover map[string]any
	if fb := info.Agent.FallbackProvider; err != nil && fb != "" && fb != slug && failoverable(ctx, err) {
		info.Log.Warn("voice-AI provider unreachable; trying the agent's fallback provider", "provider", slug, "fallback", fb, "err", err)
		failover = map[string]any{"from": slug, "to": fb, "error": err.Error()}
		p, conv, start, err = c.dial(ctx, fb, info)
		if err != nil {
			info.Log.Warn("fallback provider unreachable too", "provider", fb, "err", err)
		}
	}
	if err != nil {
		var r *callpath.Refusal
		if errors.As(err, &r) {
			return nil, err
		}
		return nil, callpath.Unavailable(callpath.ProviderDown, err)
	}
	s := newSession(c, p, info)
	s.attach(conv)
	convID := conv.ID()
	s.log = s.log.With("provider", p.Slug(), "provider_conversation_id", convID)
	s.rec.Served(p.Slug(), convID)
	if failover != nil {
		s.rec.Metadata(map[string]any{"provider_failover": failover})
	}
	c.stats.Sessions.Add(1)
	s.spawn(s.reader)
	if !s.lazyWriter {
		// Close waits for this writer (writerDone) before the provider's last
		// word, so what was queued before the end (end_call's tool result) goes
		// out first. A lazy writer is started when there is something for it.
		s.writerStarted = s.spawn(s.writer)
	}
	s.log.Info("provider session open", "connect_ms", time.Since(start).Milliseconds(), "format", s.format)
	return s, nil
}

// dial opens the call's conversation with the provider named slug, within
// --provider-timeout.
func (c *Connector) dial(ctx context.Context, slug string, info *callpath.Info) (Provider, Conversation, time.Time, error) {
	start := time.Now()
	p, ok := c.Providers[slug]
	if !ok {
		return nil, nil, start, fmt.Errorf("%w: %q", ErrNoProvider, slug)
	}
	dctx, cancel := context.WithTimeout(ctx, c.Timeout)
	conv, err := p.Dial(dctx, info, nil)
	cancel()
	if c.Observer != nil {
		c.Observer.ProviderConnect(time.Since(start), err)
	}
	return p, conv, start, err
}

// failoverable: the provider could not be reached (or is not run here), and the
// caller is still there. A refusal of the agent's own set-up (480: an agent not
// provisioned, a bot without a URL) is not the provider being down.
func failoverable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false // the caller gave up (CANCEL) or the call is being refused
	}
	var r *callpath.Refusal
	if errors.As(err, &r) {
		return r.Code == 503
	}
	return true
}

// analyse asks the provider, in the background, what it knows of the call's
// conversations once they are over (Analyser), and stores it.
func (c *Connector) analyse(p Provider, info *callpath.Info, convs []Conversation) {
	an, ok := p.(Analyser)
	if !ok || len(convs) == 0 {
		return
	}
	ids := make([]string, len(convs))
	for i, cv := range convs {
		ids[i] = cv.ID()
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		res := an.Analyse(c.bgStop, info, ids)
		if res == nil {
			return
		}
		if err := info.Record.Analysed(context.Background(), res.Summary, res.Successful, res.Metadata); err != nil {
			info.Log.Warn("could not store the post-call analysis", "err", err)
			return
		}
		info.Log.Info("post-call analysis stored", "summary", res.Summary != nil, "successful", res.Successful)
	}()
}
