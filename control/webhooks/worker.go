// Package webhooks delivers each company's events to its webhooks.
//
// Every `cxco serve` runs one Worker. It reads every company's outbox (the Redis
// stream the store appends an event to in the same transaction as the change) as a
// consumer of the group "webhooks", so each event is read by one node; it fans each
// event out into one delivery record per subscribed webhook, atomically with the
// acknowledgement; and it attempts due deliveries from a fixed pool of goroutines,
// each under a lease in Redis, so no two nodes attempt one delivery at once and a
// dead node's work is taken over when its lease ends. The Redis side is in
// store/deliveries.go; this package holds the schedule, the HTTP client with its
// address checks, and the signature.
package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cxco/gateway/store"
)

// Resolver looks up host names (net.DefaultResolver by default; tests inject one).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configure a Worker. Zero values take the defaults.
type Options struct {
	Store  *store.Store
	Logger *slog.Logger
	// NodeID names this node's consumer in the outbox groups (default hostname-pid).
	NodeID string
	// Retries are the gaps after the 1st, 2nd, ... failed attempt; after the last
	// one the delivery is failed (default DefaultRetries).
	Retries []time.Duration
	// DisableAfter disables a webhook that has failed every attempt for this long (default 24h).
	DisableAfter time.Duration
	// AllowInsecure allows http:// and private, loopback and link-local targets.
	AllowInsecure bool
	// Workers is the number of concurrent attempts of this node (default 32).
	Workers int
	// Timeout bounds one attempt: resolving, connecting, sending and reading (default 10s).
	Timeout time.Duration
	// Lease is how long a claimed delivery (or a read outbox entry) is this node's
	// before another may take it over (default Timeout + 20s). Keep it well above Timeout.
	Lease time.Duration
	// Poll is how often every company's outbox is looked at (default 200ms).
	Poll time.Duration
	// Retention is how long finished deliveries stay listed (default 72h).
	Retention time.Duration
	// Resolver resolves target hosts (default net.DefaultResolver).
	Resolver Resolver
}

// DefaultRetries is the schedule of the reference: 10s, 30s, 90s, 270s, 810s.
func DefaultRetries() []time.Duration {
	return []time.Duration{10 * time.Second, 30 * time.Second, 90 * time.Second, 270 * time.Second, 810 * time.Second}
}

const (
	readBatch     = 64               // outbox entries per company per read
	companyChunk  = 100              // companies per pipelined read
	maxResponse   = 64 << 10         // response bytes read
	refreshEvery  = 5 * time.Second  // company list refresh
	maintainEvery = 10 * time.Second // stale outbox claims, trimming, consumer pruning
	parkedEvery   = time.Second      // re-enabled webhooks' parked deliveries
	resumeBatch   = 500
	consumerIdle  = time.Hour // consumers idle this long without pending entries are forgotten
)

// Worker delivers webhooks. Run it once per process.
type Worker struct {
	opts     Options
	st       *store.Store
	log      *slog.Logger
	client   *http.Client
	kick     chan struct{}
	inflight atomic.Int64 // claimed deliveries not finished yet (queued or being attempted)

	attempts, succeeded, failed atomic.Int64
}

// New checks the options and builds a worker.
func New(opts Options) (*Worker, error) {
	if opts.Store == nil {
		return nil, errors.New("webhooks: a Store is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.NodeID == "" {
		h, _ := os.Hostname()
		opts.NodeID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if opts.Retries == nil {
		opts.Retries = DefaultRetries()
	}
	for _, r := range opts.Retries {
		if r <= 0 {
			return nil, fmt.Errorf("webhooks: retry gap %s is not positive", r)
		}
	}
	if opts.DisableAfter <= 0 {
		opts.DisableAfter = 24 * time.Hour
	}
	if opts.Workers <= 0 {
		opts.Workers = 32
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Lease <= 0 {
		opts.Lease = opts.Timeout + 20*time.Second
	}
	if opts.Lease <= opts.Timeout {
		return nil, fmt.Errorf("webhooks: lease %s must be longer than the timeout %s", opts.Lease, opts.Timeout)
	}
	if opts.Poll <= 0 {
		opts.Poll = 200 * time.Millisecond
	}
	if opts.Retention <= 0 {
		opts.Retention = 72 * time.Hour
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	w := &Worker{opts: opts, st: opts.Store, log: opts.Logger, kick: make(chan struct{}, 1)}
	w.client = w.newClient()
	return w, nil
}

// Stats counts this worker's attempts since it started.
type Stats struct {
	Attempts  int64 // requests sent or tried
	Succeeded int64 // attempts answered 2xx
	Failed    int64 // attempts that failed (retried or not)
}

// Stats returns the counters.
func (w *Worker) Stats() Stats {
	return Stats{Attempts: w.attempts.Load(), Succeeded: w.succeeded.Load(), Failed: w.failed.Load()}
}

// Kick makes the worker look for work now instead of at its next poll.
func (w *Worker) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Worker) capacity() int64 { return int64(2 * w.opts.Workers) }

// Run delivers until ctx ends, then lets attempts under way finish (each within
// Timeout), hands back claimed deliveries it has not started, and returns when every
// goroutine it started has stopped.
func (w *Worker) Run(ctx context.Context) {
	jobs := make(chan *store.Delivery, w.capacity())
	var wg sync.WaitGroup
	for range w.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range jobs {
				w.handle(ctx, d)
				w.inflight.Add(-1)
				w.Kick()
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); w.maintain(ctx) }()
	w.log.Info("webhook worker started", "consumer", w.opts.NodeID, "workers", w.opts.Workers, "retries", fmt.Sprint(w.opts.Retries),
		"allow_insecure", w.opts.AllowInsecure)
	w.schedule(ctx, jobs)
	close(jobs)
	wg.Wait()
	w.client.CloseIdleConnections()
}

// scheduler is the state of the scheduling loop (one goroutine).
type scheduler struct {
	cids   []int64
	cidsAt time.Time
	due    map[int64]int64 // company -> unix ms (Redis clock) its first delivery is due
	offset int64           // Redis clock minus ours, in ms
	reread map[int64]bool  // companies whose own pending outbox entries are read again
	turn   int
	down   bool // Redis failing: warned once, quiet until it recovers
}

// trouble logs the first error of an outage at Warn and the rest at Debug.
func (w *Worker) trouble(s *scheduler, msg string, args ...any) {
	if s.down {
		w.log.Debug(msg, args...)
		return
	}
	s.down = true
	w.log.Warn(msg, args...)
}

func (w *Worker) recovered(s *scheduler) {
	if s.down {
		s.down = false
		w.log.Info("webhooks: the store answers again; delivering")
	}
}

func (s *scheduler) redisNow() int64 { return time.Now().UnixMilli() + s.offset }

// schedule reads outboxes at each poll and claims due deliveries whenever there is
// room in the pool, sleeping until the next poll, the next due delivery, or a kick.
func (w *Worker) schedule(ctx context.Context, jobs chan<- *store.Delivery) {
	s := &scheduler{due: map[int64]int64{}, reread: map[int64]bool{}}
	first := true
	var nextSweep time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			return
		}
		if !time.Now().Before(nextSweep) {
			more, err := w.sweep(ctx, s, first)
			nextSweep = time.Now().Add(w.opts.Poll)
			switch {
			case err != nil:
				if ctx.Err() != nil {
					return
				}
				w.trouble(s, "webhooks: cannot read the outboxes; retrying", "err", err)
			case more:
				nextSweep = time.Now()
				first = false
				w.recovered(s)
			default:
				first = false
				w.recovered(s)
			}
		}
		claimed, full := w.claim(ctx, s, jobs)
		wait := time.Until(nextSweep)
		if !full {
			if at, ok := s.earliest(); ok {
				wait = min(wait, time.Duration(at-s.redisNow())*time.Millisecond)
			}
		}
		if wait <= 0 && claimed == 0 {
			wait = time.Millisecond // nothing could be claimed: do not spin
		}
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.kick:
		}
	}
}

func (s *scheduler) earliest() (int64, bool) {
	var at int64
	ok := false
	for _, t := range s.due {
		if !ok || t < at {
			at, ok = t, true
		}
	}
	return at, ok
}

// sweep reads new outbox entries of every company, fans them out, and refreshes when
// each company's first delivery is due. It reports whether an outbox had more to read.
func (w *Worker) sweep(ctx context.Context, s *scheduler, first bool) (bool, error) {
	if s.cids == nil || time.Since(s.cidsAt) > refreshEvery {
		cids, err := w.st.OutboxCompanies(ctx)
		if err != nil {
			return false, err
		}
		slices.Sort(cids)
		s.cids, s.cidsAt = cids, time.Now()
		if first {
			for _, cid := range cids {
				s.reread[cid] = true // after a restart with the same node id: our own unfinished reads first
			}
		}
	}
	more := false
	for chunk := range slices.Chunk(s.cids, companyChunk) {
		entries, err := w.st.ReadOutbox(ctx, w.opts.NodeID, chunk, readBatch, s.reread)
		if err != nil {
			return false, err
		}
		for _, cid := range chunk {
			es := entries[cid]
			wasReread := s.reread[cid]
			delete(s.reread, cid)
			if len(es) == 0 {
				continue
			}
			if _, err := w.fanOut(ctx, cid, es); err != nil {
				if ctx.Err() != nil {
					return false, ctx.Err()
				}
				w.log.Warn("webhooks: fan-out failed; will retry", "company_id", cid, "err", err)
				s.reread[cid] = true
				continue
			}
			if len(es) == readBatch {
				more = true
				if wasReread {
					s.reread[cid] = true
				}
			}
		}
		dues, now, err := w.st.EarliestDue(ctx, chunk)
		if err != nil {
			return false, err
		}
		s.offset = now - time.Now().UnixMilli()
		for _, cid := range chunk {
			if at, ok := dues[cid]; ok {
				s.due[cid] = at
			} else {
				delete(s.due, cid)
			}
		}
	}
	return more, nil
}

func (w *Worker) fanOut(ctx context.Context, cid int64, es []store.OutboxEntry) (int, error) {
	hooks, err := w.st.ListWebhooks(ctx, cid)
	if err != nil {
		return 0, err
	}
	return w.st.FanOut(ctx, cid, es, hooks)
}

// claim leases due deliveries while the pool has room, sharing the room between the
// companies that have due work (starting with a different one each time). It returns
// how many it claimed and whether the pool is full.
func (w *Worker) claim(ctx context.Context, s *scheduler, jobs chan<- *store.Delivery) (int, bool) {
	now := s.redisNow()
	var ready []int64
	for cid, at := range s.due {
		if at <= now {
			ready = append(ready, cid)
		}
	}
	if len(ready) == 0 {
		return 0, false
	}
	slices.Sort(ready)
	s.turn++
	k := s.turn % len(ready)
	ready = append(ready[k:], ready[:k]...)
	free := w.capacity() - w.inflight.Load()
	if free <= 0 {
		return 0, true
	}
	share := (free + int64(len(ready)) - 1) / int64(len(ready))
	token := w.token()
	claimed := 0
	for _, cid := range ready {
		if free <= 0 {
			return claimed, true
		}
		ds, next, rnow, err := w.st.ClaimDeliveries(ctx, cid, int(min(share, free)), w.opts.Lease, token)
		if err != nil {
			if ctx.Err() == nil {
				w.trouble(s, "webhooks: cannot claim deliveries; retrying", "company_id", cid, "err", err)
			}
			s.due[cid] = now + w.opts.Poll.Milliseconds()
			continue
		}
		s.offset = rnow - time.Now().UnixMilli()
		if next < 0 {
			delete(s.due, cid)
		} else {
			s.due[cid] = next
		}
		for _, d := range ds {
			w.inflight.Add(1)
			jobs <- d // never blocks: inflight <= capacity = cap(jobs)
			free--
			claimed++
		}
	}
	return claimed, free <= 0
}

func (w *Worker) token() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return w.opts.NodeID + ":" + hex.EncodeToString(b)
}

// maintain runs the slow duties: resuming the parked deliveries of webhooks that are
// active again (every second), and every ten seconds taking over outbox entries
// another node read but did not fan out, trimming outboxes and forgetting old
// consumers.
func (w *Worker) maintain(ctx context.Context) {
	tick := time.NewTicker(parkedEvery)
	defer tick.Stop()
	var lastMaint time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cids, err := w.st.OutboxCompanies(ctx)
		if err != nil {
			continue
		}
		w.resumeParked(ctx, cids)
		if time.Since(lastMaint) >= maintainEvery {
			lastMaint = time.Now()
			for _, cid := range cids {
				if ctx.Err() != nil {
					return
				}
				w.maintainCompany(ctx, cid)
			}
		}
	}
}

func (w *Worker) maintainCompany(ctx context.Context, cid int64) {
	log := w.log.With("company_id", cid)
	for {
		es, err := w.st.ClaimStaleOutbox(ctx, cid, w.opts.NodeID, w.opts.Lease, readBatch)
		if err != nil || len(es) == 0 {
			break
		}
		n, err := w.fanOut(ctx, cid, es)
		if err != nil {
			log.Warn("webhooks: fan-out of taken-over entries failed", "err", err)
			break
		}
		log.Info("webhooks: took over outbox entries of a stalled node", "entries", len(es), "deliveries", n)
		w.Kick()
		if len(es) < readBatch {
			break
		}
	}
	if err := w.st.TrimOutbox(ctx, cid); err != nil && ctx.Err() == nil {
		log.Debug("webhooks: cannot trim the outbox", "err", err)
	}
	if err := w.st.PruneConsumers(ctx, cid, w.opts.NodeID, consumerIdle); err != nil && ctx.Err() == nil {
		log.Debug("webhooks: cannot prune consumers", "err", err)
	}
}

func (w *Worker) resumeParked(ctx context.Context, cids []int64) {
	parked, err := w.st.ParkedWebhooks(ctx, cids)
	if err != nil {
		return
	}
	for cid, wids := range parked {
		for _, wid := range wids {
			hook, err := w.st.GetWebhook(ctx, cid, wid)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err == nil && hook.Status != store.WebhookActive {
				continue
			}
			n, err := w.st.ResumeParked(ctx, cid, wid, resumeBatch)
			if err != nil {
				continue
			}
			if n > 0 {
				w.log.Info("webhooks: resuming parked deliveries", "company_id", cid, "webhook_id", wid, "deliveries", n)
				w.Kick()
			}
		}
	}
}
