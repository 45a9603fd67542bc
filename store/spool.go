package store

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Spool runs writes that must not be lost to a short Redis outage — the end of a
// call with its usage counters, transcript entries a call could not write, the
// post-call analysis — in the order they were given, retrying while Redis is
// unavailable. It holds at most max writes in memory; beyond that the oldest is
// dropped (and logged). One goroutine; Close stops it after a last flush.
type Spool struct {
	log *slog.Logger
	max int

	mu      sync.Mutex
	jobs    []spoolJob
	running bool // a job is being run
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

type spoolJob struct {
	name string
	fn   func(ctx context.Context) error
}

// SetSpool gives the store the process's spool (cmd wires it once, at start).
func (s *Store) SetSpool(p *Spool) { s.spool.Store(p) }

// Spool is the process's spool, or nil.
func (s *Store) Spool() *Spool { return s.spool.Load() }

// NewSpool starts a spool.
func NewSpool(log *slog.Logger, max int) *Spool {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if max <= 0 {
		max = 100000
	}
	p := &Spool{log: log, max: max, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

// Do queues a write. fn runs with a deadline; ErrUnavailable means "try again".
func (p *Spool) Do(name string, fn func(ctx context.Context) error) {
	p.mu.Lock()
	if len(p.jobs) >= p.max {
		p.log.Error("spool full: dropping the oldest pending write", "write", p.jobs[0].name)
		p.jobs = p.jobs[1:]
	}
	p.jobs = append(p.jobs, spoolJob{name, fn})
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Pending is how many writes wait.
func (p *Spool) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.jobs)
	if p.running {
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
		p.running = true
		p.mu.Unlock()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := j.fn(ctx)
			cancel()
			if err == nil || !errors.Is(err, ErrUnavailable) {
				if err != nil {
					p.log.Error("spooled write failed", "write", j.name, "err", err)
				}
				backoff = 50 * time.Millisecond
				break
			}
			if backoff >= time.Second {
				p.log.Warn("Redis unavailable: holding writes until it is back", "write", j.name, "pending", p.Pending())
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.stop:
				t.Stop()
				p.mu.Lock()
				p.jobs = append([]spoolJob{j}, p.jobs...)
				p.running = false
				p.mu.Unlock()
				return
			}
			backoff = min(2*backoff, 2*time.Second)
		}
		p.mu.Lock()
		p.running = false
		p.mu.Unlock()
	}
}

// Flush waits until every queued write is done or ctx ends.
func (p *Spool) Flush(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for p.Pending() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Close flushes for up to d, then stops; writes still pending are lost (and logged).
func (p *Spool) Close(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		p.log.Error("writes lost at shutdown: Redis did not come back in time", "pending", p.Pending())
	}
	close(p.stop)
	<-p.done
}
