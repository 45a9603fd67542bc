package bridge

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/cxco/gateway/store"
)

// recorder writes a conversation's transcript to the store as it happens, in order,
// from its own goroutine so a slow store never stalls audio. While Redis is
// unreachable it keeps entries in memory (bounded) and retries; what is still
// unwritten when the call ends moves to the process's spool, which writes it (before
// the call's final record) when Redis is back.
type recorder struct {
	st     *store.Store
	spool  *store.Spool
	cid    int64
	convID int64
	log    *slog.Logger

	mu        sync.Mutex
	queue     []recJob
	wake      chan struct{}
	closed    bool
	dropped   int
	abandoned bool
	done      chan struct{}

	// Owned by the recorder goroutine, then by flush once it has stopped.
	written     int // entries in the stored list
	lastAgent   int // index of the last agent entry (corrections replace it)
	lastAgentAt float64
}

// recJob is one write: a new transcript entry, a correction of the last agent
// entry, or the provider's conversation id.
type recJob struct {
	entry      *store.TranscriptEntry
	correct    bool   // replace the last agent entry's message
	externalID string // the provider's conversation id
}

const recorderMax = 2000

func newRecorder(st *store.Store, spool *store.Spool, cid, convID int64, log *slog.Logger) *recorder {
	r := &recorder{st: st, spool: spool, cid: cid, convID: convID, log: log, wake: make(chan struct{}, 1),
		done: make(chan struct{}), lastAgent: -1}
	go r.run()
	return r
}

func (r *recorder) add(j recJob) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	if len(r.queue) >= recorderMax {
		r.queue = r.queue[1:]
		r.dropped++
	}
	r.queue = append(r.queue, j)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) entry(role, msg string, at float64) {
	r.add(recJob{entry: &store.TranscriptEntry{Role: role, Message: msg, Timestamp: at}})
}

// write is job j as a store write, at the transcript positions known so far; ok is
// false for a correction with nothing to correct.
func (r *recorder) write(j recJob) (store.Write, bool) {
	w := store.Write{CompanyID: r.cid, Conversation: r.convID}
	switch {
	case j.externalID != "":
		w.Op, w.ExternalID = store.WriteExternalID, j.externalID
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
func (r *recorder) wrote(w store.Write) {
	if w.Op != store.WriteAppend {
		return
	}
	if w.Entry.Role == "agent" {
		r.lastAgent, r.lastAgentAt = r.written, w.Entry.Timestamp
	}
	r.written++
}

// exec performs one job. An append names its position, so a retry of a write that
// did reach Redis (its reply was lost) adds nothing twice.
func (r *recorder) exec(ctx context.Context, j recJob) error {
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

func (r *recorder) run() {
	defer close(r.done)
	backoff := 100 * time.Millisecond
	for {
		r.mu.Lock()
		if r.abandoned {
			r.mu.Unlock()
			return
		}
		if len(r.queue) == 0 {
			closed := r.closed
			r.mu.Unlock()
			if closed {
				return
			}
			<-r.wake
			continue
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
func (r *recorder) flush(d time.Duration) {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.done:
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
	<-r.done
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
