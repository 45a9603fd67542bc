package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Write is one write that must not be lost to a Redis outage: the end of a call
// with its usage counters, a transcript entry, the provider's ids or its post-call
// analysis. It is data, not a closure, so it can outlive the process in the spool
// file (spoolfile.go), and every kind is idempotent, so replaying one twice (a
// crash in the middle of a replay) changes nothing.
type Write struct {
	Op           string `json:"op"`
	CompanyID    int64  `json:"company_id"`
	Conversation int64  `json:"conversation_id"`
	// Index is the transcript position of an append or a correction.
	Index      int              `json:"index,omitempty"`
	Entry      *TranscriptEntry `json:"entry,omitempty"`
	Final      *Final           `json:"final,omitempty"`
	ExternalID string           `json:"external_id,omitempty"`
	// Source is the provider's slug with an external id (elevenlabs when empty:
	// spool files written before providers were named).
	Source     string         `json:"source,omitempty"`
	Summary    *string        `json:"summary,omitempty"`
	Successful *bool          `json:"successful,omitempty"`
	Metadata   map[string]any `json:"metadata,omitempty"`
}

// Write kinds.
const (
	// WriteFinish ends the conversation (FinishConversation): a no-op once it has ended.
	WriteFinish = "finish"
	// WriteAppend puts Entry at position Index of the transcript, unless the
	// transcript already reaches past it (the entry was written before).
	WriteAppend = "append"
	// WriteSetEntry replaces the entry at Index (what the agent said once interrupted).
	WriteSetEntry = "set_entry"
	// WriteExternalID records the provider that serves the call (Source) and its
	// conversation id.
	WriteExternalID = "external_id"
	// WriteMetadata sets Metadata's leaves in metadata_ (nested maps merged, other
	// values replaced, so a replay changes nothing): a provider's usage counters.
	WriteMetadata = "metadata"
	// WriteAnalysis stores the post-call analysis (SetAnalysis).
	WriteAnalysis = "analysis"
)

var appendAtScript = redis.NewScript(`
if redis.call('LLEN', KEYS[1]) > tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
return 1`)

// AppendTranscriptAt writes e as entry i of the transcript, once: when the list
// already holds more than i entries (a retry of a write that did reach Redis) it
// does nothing.
func (s *Store) AppendTranscriptAt(ctx context.Context, cid, id int64, i int, e TranscriptEntry) error {
	b, err := marshal(e)
	if err != nil {
		return err
	}
	return wrapRedis(appendAtScript.Run(ctx, s.rdb, []string{keyTranscript(cid, id)}, i, b).Err())
}

// Apply performs one write. A write holding values that cannot be stored as
// JSON (a NaN figure) is written without them, logged and counted (notjson.go).
func (s *Store) Apply(ctx context.Context, w Write) error {
	err := s.apply(ctx, w)
	if errors.Is(err, ErrNotJSON) {
		return s.applyFinite(ctx, w, err)
	}
	return err
}

func (s *Store) apply(ctx context.Context, w Write) error {
	switch w.Op {
	case WriteFinish:
		if w.Final == nil {
			return fmt.Errorf("store: write %q without its end", w.Op)
		}
		_, err := s.FinishConversation(ctx, w.CompanyID, w.Conversation, *w.Final)
		return err
	case WriteAppend, WriteSetEntry:
		if w.Entry == nil {
			return fmt.Errorf("store: write %q without its entry", w.Op)
		}
		if w.Op == WriteAppend {
			return s.AppendTranscriptAt(ctx, w.CompanyID, w.Conversation, w.Index, *w.Entry)
		}
		return s.SetTranscriptEntry(ctx, w.CompanyID, w.Conversation, w.Index, *w.Entry)
	case WriteExternalID:
		_, err := s.UpdateConversation(ctx, w.CompanyID, w.Conversation, func(c *Conversation) error {
			if w.ExternalID != "" {
				c.ExternalConversationID = &w.ExternalID
			}
			c.Source = w.Source
			if c.Source == "" {
				c.Source = "elevenlabs"
			}
			return nil
		})
		return err
	case WriteMetadata:
		_, err := s.UpdateConversation(ctx, w.CompanyID, w.Conversation, func(c *Conversation) error {
			if c.Metadata == nil {
				c.Metadata = map[string]any{}
			}
			setLeaves(c.Metadata, w.Metadata)
			return nil
		})
		return err
	case WriteAnalysis:
		_, err := s.SetAnalysis(ctx, w.CompanyID, w.Conversation, w.Summary, w.Successful, w.Metadata)
		return err
	default:
		return fmt.Errorf("store: unknown write %q", w.Op)
	}
}

// setLeaves sets src's leaves in dst: nested maps are merged, other values replace.
func setLeaves(dst, src map[string]any) {
	for k, v := range src {
		if m, ok := v.(map[string]any); ok {
			d, _ := dst[k].(map[string]any)
			if d == nil {
				d = map[string]any{}
				dst[k] = d
			}
			setLeaves(d, m)
			continue
		}
		dst[k] = v
	}
}

// Spool runs writes that must not be lost to a Redis outage in the order they
// were given, retrying while Redis is unavailable. It holds at most Max writes in
// memory; beyond that the oldest is dropped (and logged). When the process stops
// with writes still pending, Close puts them in a file in Dir that the next start
// on the machine replays (spoolfile.go). One goroutine; Close stops it.
type Spool struct {
	st  *Store
	log *slog.Logger
	max int
	dir string
	// node names the files this process writes (its node id).
	node     string
	maxBytes int64

	mu      sync.Mutex
	jobs    []spoolJob
	running *spoolJob // being run
	idle    chan struct{}
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	files   []*replayFile // files being replayed, removed once all their writes are done
}

type spoolJob struct {
	w    Write
	file *replayFile // the spool file it came from, if any
}

// SpoolOptions configure a spool.
type SpoolOptions struct {
	Logger *slog.Logger
	// Max is how many writes wait in memory at most (100000 if 0).
	Max int
	// Dir holds the spool files; empty: none are written or replayed.
	Dir string
	// Node is this node's id, in the names of the files it writes.
	Node string
	// MaxFileBytes bounds one spool file (64 MiB if 0).
	MaxFileBytes int64
}

// SetSpool gives the store the process's spool (cmd wires it once, at start).
func (s *Store) SetSpool(p *Spool) { s.spool.Store(p) }

// Spool is the process's spool, or nil.
func (s *Store) Spool() *Spool { return s.spool.Load() }

// NewSpool starts a spool that applies its writes to st.
func NewSpool(st *Store, o SpoolOptions) *Spool {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Max <= 0 {
		o.Max = 100000
	}
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = 64 << 20
	}
	p := &Spool{st: st, log: o.Logger, max: o.Max, dir: o.Dir, node: o.Node, maxBytes: o.MaxFileBytes, idle: make(chan struct{}),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	close(p.idle)
	go p.run()
	return p
}

// Do queues a write.
func (p *Spool) Do(w Write) { p.queue(spoolJob{w: w}) }

func (p *Spool) queue(j spoolJob) {
	p.mu.Lock()
	if len(p.jobs) >= p.max {
		p.log.Error("spool full: dropping the oldest pending write", "write", p.jobs[0].w.Op, "conversation_id", p.jobs[0].w.Conversation)
		p.jobDone(p.jobs[0])
		p.jobs = p.jobs[1:]
	}
	p.jobs = append(p.jobs, j)
	p.busyLocked()
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// busyLocked marks the spool as having work (Flush waits for idle).
func (p *Spool) busyLocked() {
	select {
	case <-p.idle:
		p.idle = make(chan struct{})
	default:
	}
}

// Pending is how many writes wait.
func (p *Spool) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.jobs)
	if p.running != nil {
		n++
	}
	return n
}

func (p *Spool) run() {
	defer close(p.done)
	backoff := 50 * time.Millisecond
	for {
		p.mu.Lock()
		if len(p.jobs) == 0 {
			select {
			case <-p.idle:
			default:
				close(p.idle)
			}
			p.mu.Unlock()
			select {
			case <-p.wake:
				continue
			case <-p.stop:
				return
			}
		}
		j := p.jobs[0]
		p.jobs = p.jobs[1:]
		p.running = &j
		p.mu.Unlock()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := p.st.Apply(ctx, j.w)
			cancel()
			if err == nil || !errors.Is(err, ErrUnavailable) {
				if err != nil {
					p.log.Error("spooled write failed", "write", j.w.Op, "conversation_id", j.w.Conversation, "err", err)
				}
				backoff = 50 * time.Millisecond
				break
			}
			if backoff >= time.Second {
				p.log.Warn("Redis unavailable: holding writes until it is back", "write", j.w.Op, "pending", p.Pending())
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.stop:
				t.Stop()
				p.mu.Lock()
				p.jobs = append([]spoolJob{j}, p.jobs...)
				p.running = nil
				p.mu.Unlock()
				return
			}
			backoff = min(2*backoff, 2*time.Second)
		}
		p.mu.Lock()
		p.running = nil
		p.jobDone(j)
		p.mu.Unlock()
	}
}

// Flush waits until every queued write is done or ctx ends.
func (p *Spool) Flush(ctx context.Context) error {
	for {
		p.mu.Lock()
		idle := p.idle
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle:
			if p.Pending() == 0 {
				return nil
			}
		}
	}
}

// Close flushes for up to d, then stops. Writes still pending go to a spool file
// in Dir, which the next start replays; with no Dir they are lost (and logged).
func (p *Spool) Close(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_ = p.Flush(ctx)
	close(p.stop)
	<-p.done
	p.mu.Lock()
	left := p.jobs
	p.jobs = nil
	files := p.files
	p.files = nil
	p.mu.Unlock()
	if len(left) == 0 {
		for _, f := range files {
			f.release(true)
		}
		return
	}
	if p.dir == "" {
		p.log.Error("writes lost at shutdown: Redis did not come back in time and there is no spool directory", "pending", len(left))
		return
	}
	ws := make([]Write, len(left))
	for i, j := range left {
		ws[i] = j.w
		if _, err := marshal(j.w); err != nil {
			fw, dropped := j.w.finite()
			p.st.notJSON(j.w.Op)
			if _, err2 := marshal(fw); err2 != nil {
				p.log.Error("write lost at shutdown: it cannot be stored", "write", j.w.Op, "conversation_id", j.w.Conversation, "err", err)
				continue
			}
			p.log.Error("a write held values that cannot be stored (not a number, infinite): saved without them",
				"write", j.w.Op, "conversation_id", j.w.Conversation, "left_out", dropped, "err", err)
			ws[i] = fw
		}
	}
	path, written, err := writeSpoolFile(p.dir, p.node, ws, p.maxBytes)
	if err != nil {
		p.log.Error("writes lost at shutdown: Redis is unavailable and the spool file could not be written", "pending", len(left), "dir", p.dir, "err", err)
		for _, f := range files {
			f.release(false) // keep what they still hold
		}
		return
	}
	if written < len(ws) {
		p.log.Error("spool file full: the newest pending writes are lost", "written", written, "lost", len(ws)-written, "file", path)
	}
	p.log.Warn("Redis unavailable at shutdown: pending writes saved to the spool file; the next start on this machine replays them",
		"writes", written, "file", path)
	// Whatever the replayed files still held is in the new file now.
	for _, f := range files {
		f.release(true)
	}
}
