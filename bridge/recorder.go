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
// from its own goroutine so a slow store never stalls audio. While the store is
// unreachable it keeps entries in memory (bounded) and writes them when it is back.
type recorder struct {
	st     *store.Store
	cid    int64
	convID int64
	log    *slog.Logger

	mu        sync.Mutex
	queue     []recJob
	wake      chan struct{}
	closed    bool
	dropped   int
	abandoned bool
	written   int // entries in the stored list, for corrections (LSET)
	done      chan struct{}
}

// recJob is one write: a new transcript entry, a correction of the last agent entry,
// or a conversation update.
type recJob struct {
	entry   *store.TranscriptEntry
	correct bool // replace the last agent entry's message
	update  func(*store.Conversation) error
}

const recorderMax = 2000

func newRecorder(st *store.Store, cid, convID int64, log *slog.Logger) *recorder {
	r := &recorder{st: st, cid: cid, convID: convID, log: log, wake: make(chan struct{}, 1), done: make(chan struct{})}
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

func (r *recorder) run() {
	defer close(r.done)
	lastAgent := -1
	var lastAgentAt float64
	backoff := 100 * time.Millisecond
	for {
		r.mu.Lock()
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
		var err error
		switch {
		case j.update != nil:
			_, err = r.st.UpdateConversation(ctx, r.cid, r.convID, j.update)
		case j.correct && lastAgent >= 0:
			// What the agent actually said replaces what it meant to say, at the time it began.
			e := *j.entry
			e.Timestamp = lastAgentAt
			err = r.st.SetTranscriptEntry(ctx, r.cid, r.convID, lastAgent, e)
		case j.correct:
			err = nil // nothing to correct
		default:
			err = r.st.AppendTranscript(ctx, r.cid, r.convID, *j.entry)
			if err == nil {
				if j.entry.Role == "agent" {
					lastAgent, lastAgentAt = r.written, j.entry.Timestamp
				}
				r.written++
			}
		}
		cancel()
		if err != nil && errors.Is(err, store.ErrUnavailable) {
			r.mu.Lock()
			abandoned := r.abandoned
			r.mu.Unlock()
			if abandoned {
				return
			}
			r.log.Warn("transcript write failed; keeping it to retry", "err", err)
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

// flush stops taking entries and waits until everything queued is written, or d passes.
func (r *recorder) flush(d time.Duration) bool {
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
		return true
	case <-t.C:
		r.mu.Lock()
		left := len(r.queue)
		r.abandoned = true
		r.mu.Unlock()
		r.log.Error("transcript entries not written before the call record closed", "left", left)
		<-r.done
		return false
	}
}
