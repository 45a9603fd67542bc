package callstore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/cxco/gateway/store"
)

// transcript writes a conversation's transcript (and updates) to the store as it
// happens, in order, from a goroutine of its own, so a slow store never stalls
// audio. The goroutine runs only while there is something to write: it starts
// with a write and ends when the queue is empty (a call's transcript comes a few
// entries a minute, and an idle goroutine's stack was a tenth of a call's memory).
// While Redis is unreachable it keeps entries in memory (bounded) and retries;
// what is still unwritten when the call ends moves to the process's spool, which
// writes it (before the call's final record) when Redis is back.
type transcript struct {
	st     *store.Store
	spool  *store.Spool
	cid    int64
	convID int64
	log    *slog.Logger

	mu        sync.Mutex
	queue     []job
	running   bool          // a recorder goroutine runs (there is something to write)
	done      chan struct{} // closed when the running recorder ends
	wake      chan struct{} // cuts a retry's wait short
	closed    bool
	dropped   int
	abandoned bool

	// Owned by the recorder goroutine that runs (one at a time, handed on under
	// mu), then by flush once the last has stopped.
	written     int // entries in the stored list
	lastAgent   int // index of the last agent entry (corrections replace it)
	lastAgentAt float64
}

// job is one write: a new transcript entry, a correction of the last agent
// entry, the provider that serves the call, or its usage counters.
type job struct {
	entry      *store.TranscriptEntry
	correct    bool   // replace the last agent entry's message
	externalID string // the provider's conversation id
	source     string // the provider's slug, with externalID
	metadata   map[string]any
}

const transcriptMax = 2000

func newTranscript(st *store.Store, spool *store.Spool, cid, convID int64, log *slog.Logger) *transcript {
	return &transcript{st: st, spool: spool, cid: cid, convID: convID, log: log, wake: make(chan struct{}, 1), lastAgent: -1}
}

func (r *transcript) add(j job) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	if len(r.queue) >= transcriptMax {
		r.queue = r.queue[1:]
		r.dropped++
	}
	r.queue = append(r.queue, j)
	if !r.running {
		r.running = true
		r.done = make(chan struct{})
		go r.run(r.done)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// write is job j as a store write, at the transcript positions known so far; ok is
// false for a correction with nothing to correct.
func (r *transcript) write(j job) (store.Write, bool) {
	w := store.Write{CompanyID: r.cid, Conversation: r.convID}
	switch {
	case j.externalID != "" || j.source != "":
		w.Op, w.ExternalID, w.Source = store.WriteExternalID, j.externalID, j.source
	case j.metadata != nil:
		w.Op, w.Metadata = store.WriteMetadata, j.metadata
	case j.correct:
		if r.lastAgent < 0 {
			return w, false
		}
		// What the agent actually said replaces what it meant to say, at the time it began.
		e := *j.entry
		e.Timestamp = r.lastAgentAt
		w.Op, w.Index, w.Entry = store.WriteSetEntry, r.lastAgent, &e
	default:
		w.Op, w.Index, w.Entry = store.WriteAppend, r.written, j.entry
	}
	return w, true
}

// wrote advances the transcript positions past w.
func (r *transcript) wrote(w store.Write) {
	if w.Op != store.WriteAppend {
		return
	}
	if w.Entry.Role == store.RoleAgent {
		r.lastAgent, r.lastAgentAt = r.written, w.Entry.Timestamp
	}
	r.written++
}

// exec performs one job. An append names its position, so a retry of a write that
// did reach Redis (its reply was lost) adds nothing twice.
func (r *transcript) exec(ctx context.Context, j job) error {
	w, ok := r.write(j)
	if !ok {
		return nil // nothing to correct
	}
	if err := r.st.Apply(ctx, w); err != nil {
		return err
	}
	r.wrote(w)
	return nil
}

// run writes the queue until it is empty (or flush abandons it), then ends; the
// next add starts another.
func (r *transcript) run(done chan struct{}) {
	defer close(done)
	backoff := 100 * time.Millisecond
	for {
		r.mu.Lock()
		if r.abandoned || len(r.queue) == 0 {
			if len(r.queue) == 0 {
				r.queue = nil // its array goes with the goroutine
			}
			r.running = false
			r.mu.Unlock()
			return
		}
		j := r.queue[0]
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := r.exec(ctx, j)
		cancel()
		if errors.Is(err, store.ErrUnavailable) {
			if backoff == 100*time.Millisecond {
				r.log.Warn("transcript write failed; keeping it to retry", "err", err)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-r.wake:
				t.Stop()
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		if err != nil {
			r.log.Warn("transcript write failed", "err", err)
		}
		backoff = 100 * time.Millisecond
		r.mu.Lock()
		r.queue = r.queue[1:]
		r.mu.Unlock()
	}
}

// flush stops taking entries and waits until everything queued is written; after d
// what is left goes to the spool (or, without one, is lost and logged).
func (r *transcript) flush(d time.Duration) {
	r.mu.Lock()
	r.closed = true
	running, done := r.running, r.done
	r.mu.Unlock()
	if !running {
		return // everything was written (a recorder ends only with its queue empty)
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	r.mu.Lock()
	r.abandoned = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	<-done
	r.mu.Lock()
	left := r.queue
	r.queue = nil
	r.mu.Unlock()
	if len(left) == 0 {
		return
	}
	if r.spool == nil {
		r.log.Error("transcript entries lost: the store is unavailable", "entries", len(left))
		return
	}
	r.log.Warn("store unavailable: transcript entries handed to the spool", "entries", len(left))
	for _, j := range left {
		if w, ok := r.write(j); ok {
			r.wrote(w)
			r.spool.Do(w)
		}
	}
}
