package batch

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cxco/gateway/store"
)

// Call is one call a batch asks for.
type Call struct {
	Batch            store.BatchRef
	AgentID          int64
	From             string // "" : the agent's number
	Recipient        int    // index in the batch
	Number           string // E.164
	DynamicVariables map[string]any
	Attempt          int // 1 for the first call
	// RingTimeout is how long the phone may ring; MachineDetection is ""
	// (off), "detect" or "hangup" (callpath's modes).
	RingTimeout      time.Duration
	MachineDetection string
	HideCallerID     bool // an anonymous From and Privacy: id
	// Pace waits for the batch's turn to send an INVITE (its calls per
	// second); the Dialer calls it right before the INVITE leaves, so that the
	// spacing holds on the wire. Nil: no pacing beyond the claims'.
	Pace func(context.Context) error
}

// pacer spaces a batch's INVITEs by its interval where they leave. The worker
// spaces its claims too, but the work between a claim and its INVITE (store
// round trips, the call's record, its media) varies by tens of milliseconds
// on a busy node, which bunched INVITEs on the wire: a carrier counts calls
// per second on what it receives.
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	last     time.Time
}

func (p *pacer) wait(ctx context.Context) error {
	// The gap is measured from the moment the previous INVITE was let go, not
	// from when it was due: slots handed out ahead would all fall due together
	// after a stall of the process, a burst on the wire.
	for {
		p.mu.Lock()
		now := time.Now()
		d := p.last.Add(p.interval).Sub(now)
		if d <= 0 {
			p.last = now
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Outcome is how a call went, as the call path reports it.
type Outcome string

// Outcomes.
const (
	Answered Outcome = "answered"  // 200 OK (a person or a machine)
	Busy     Outcome = "busy"      // 486, 600
	NoAnswer Outcome = "no_answer" // ring timeout (we sent CANCEL), 480, 408
	Rejected Outcome = "rejected"  // 603 and other refusals
	Failed   Outcome = "failed"    // could not be placed (trunk down, 5xx)
)

// Result is a finished call.
type Result struct {
	Outcome        Outcome
	SIPStatus      int
	ConversationID int64
	Machine        string // the answering-machine verdict, if detection ran
}

// ErrAtLimit is what a Dialer returns (wrapped, or as the
// *store.OutboundLimitError of store.AcquireOutbound) when the company's
// shared outbound limits leave no room now: the attempt does not count and the
// recipient is tried again after the error's RetryAfter (else AtLimitDelay).
var ErrAtLimit = store.ErrOutboundLimit

// OutcomeOf maps how an INVITE ended to an Outcome: answered for a 2xx;
// busy for 486 and 600; no answer for our CANCEL at the ring timeout
// (cancelled) and for 408 and 480 (the callee did not pick up, or is not
// reachable now); rejected for 603 and the other refusals of the callee (4xx
// and 6xx); failed for what is the network's or ours (5xx, 401/407 that our
// credentials did not satisfy, 404/484 a number that does not exist).
func OutcomeOf(status int, cancelled bool) Outcome {
	switch {
	case cancelled:
		return NoAnswer
	case status >= 200 && status < 300:
		return Answered
	case status == 486 || status == 600:
		return Busy
	case status == 408 || status == 480 || status == 487:
		return NoAnswer
	case status == 401 || status == 407 || status == 404 || status == 484 || status == 410 || status == 604 || status >= 500 && status < 600:
		return Failed
	case status >= 400:
		return Rejected
	}
	return Failed
}

// Dialer places one call and returns when it has ended. The outbound call path
// implements it; ctx ends when the worker stops (shutdown), and the dialer
// decides whether that ends the call.
type Dialer interface {
	Dial(ctx context.Context, c Call) (Result, error)
}

// Store is what the worker needs of the store (store.Store implements it).
type Store interface {
	ActiveBatches(ctx context.Context) ([]store.BatchRef, error)
	GetBatch(ctx context.Context, cid, bid int64) (*store.Batch, error)
	AcquireBatchLease(ctx context.Context, ref store.BatchRef, token string, ttl time.Duration) (bool, int, error)
	RenewBatchLease(ctx context.Context, ref store.BatchRef, token string, ttl time.Duration) error
	ReleaseBatchLease(ctx context.Context, ref store.BatchRef, token string) error
	DueRecipients(ctx context.Context, ref store.BatchRef, now time.Time, n int) ([]int, time.Time, error)
	BatchRecipient(ctx context.Context, ref store.BatchRef, index int) (store.BatchRecipient, error)
	ClaimRecipient(ctx context.Context, ref store.BatchRef, token string, index int) (int, error)
	DeferRecipient(ctx context.Context, ref store.BatchRef, token string, index int, at time.Time) error
	FinishRecipient(ctx context.Context, ref store.BatchRef, index, attempt int, st store.RecipientStatus, keep int, res *store.BatchAttempt, retryAt time.Time) (bool, error)
	InterruptOrphans(ctx context.Context, ref store.BatchRef, token string) (int, error)
}

// Options configure a Worker.
type Options struct {
	Store  Store
	Dialer Dialer
	Node   string // this node's id, in the lease token and logs
	Log    *slog.Logger
	// LeaseTTL is how long a batch stays with a node that stops renewing (a
	// lost node's batch resumes elsewhere after it); 15 s by default. Renewed
	// every third of it.
	LeaseTTL time.Duration
	// Poll is how often the worker looks for batches to take and for
	// recipients coming due; 1 s by default.
	Poll time.Duration
	// MaxBatches is how many batches one node works at once; 8 by default.
	MaxBatches int
	// AtLimitDelay is how long a recipient waits when the company is at its
	// outbound limit; 1 s by default.
	AtLimitDelay time.Duration
	// Now is the clock for calling hours and retries; time.Now by default.
	Now func() time.Time
	// FinishTimeout bounds the attempts to record a call's outcome while the
	// store is unreachable; 1 minute by default.
	FinishTimeout time.Duration
}

// Worker works batches on one node.
//
// Goroutines: Run's loop; one per batch it holds (runBatch), each with a lease
// keeper and one per call under way. Run returns after all of them.
type Worker struct {
	o     Options
	token string
	mu    sync.Mutex
	held  map[store.BatchRef]bool
}

// New returns a worker.
func New(o Options) *Worker {
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 15 * time.Second
	}
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	if o.MaxBatches == 0 {
		o.MaxBatches = 8
	}
	if o.AtLimitDelay == 0 {
		o.AtLimitDelay = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FinishTimeout == 0 {
		o.FinishTimeout = time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Worker{o: o, token: o.Node + ":" + hex.EncodeToString(b[:]), held: map[store.BatchRef]bool{}}
}

// Run works batches until ctx ends, then waits for the calls under way to
// return from the Dialer and gives up its leases.
func (w *Worker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(w.o.Poll)
	defer t.Stop()
	var down outage // the store unreachable: said once, not every poll
	for {
		refs, err := w.o.Store.ActiveBatches(ctx)
		if ctx.Err() == nil {
			down.report(w.o.Log, err, "batch: cannot list batches; trying again every poll", "batch: batches listed again")
		}
		for _, ref := range refs {
			w.mu.Lock()
			skip := w.held[ref] || len(w.held) >= w.o.MaxBatches
			w.mu.Unlock()
			if skip {
				continue
			}
			ok, interrupted, err := w.o.Store.AcquireBatchLease(ctx, ref, w.token, w.o.LeaseTTL)
			if err != nil || !ok {
				continue
			}
			if interrupted > 0 {
				w.o.Log.Warn("batch: took over a batch from a lost node; its calls under way are marked interrupted, not called again",
					"batch", ref.String(), "interrupted", interrupted)
			}
			w.mu.Lock()
			w.held[ref] = true
			w.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.runBatch(ctx, ref)
				w.mu.Lock()
				delete(w.held, ref)
				w.mu.Unlock()
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runBatch works one batch while this node holds its lease.
func (w *Worker) runBatch(ctx context.Context, ref store.BatchRef) {
	log := w.o.Log.With("batch", ref.String(), "node", w.o.Node)
	b, err := w.o.Store.GetBatch(ctx, ref.CompanyID, ref.ID)
	if err != nil {
		log.Warn("batch: cannot read the batch", "err", err)
		_ = w.o.Store.ReleaseBatchLease(context.WithoutCancel(ctx), ref, w.token)
		return
	}
	var hours *window
	if b.CallingHours != nil {
		h, err := parseHours(*b.CallingHours)
		if err != nil {
			log.Warn("batch: stored calling hours do not parse", "err", err)
			return
		}
		hours = &h
	}
	log.Info("batch: working", "recipients", b.Total, "cps", b.CallsPerSecond, "concurrency", b.MaxConcurrent)

	// lctx ends when the lease is lost or ctx ends: no new calls after that.
	lctx, lost := context.WithCancel(ctx)
	defer lost()
	var keeper sync.WaitGroup
	keeper.Add(1)
	go func() {
		defer keeper.Done()
		w.keepLease(lctx, ref, lost, log)
	}()

	var calls sync.WaitGroup
	var under atomic.Int32 // calls under way
	slots := make(chan struct{}, b.MaxConcurrent)
	ended := make(chan struct{}, 1)
	interval := time.Duration(float64(time.Second) / b.CallsPerSecond)
	var nextStart time.Time
	pace := &pacer{interval: interval}
	var down outage
	zones := map[string]*time.Location{}

	wait := func(d time.Duration, wake <-chan struct{}) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-lctx.Done():
			return false
		case <-wake:
		case <-t.C:
		}
		return true
	}
loop:
	for lctx.Err() == nil {
		now := w.o.Now()
		due, next, err := w.o.Store.DueRecipients(lctx, ref, now, 64)
		if lctx.Err() == nil {
			down.report(log, err, "batch: cannot read due recipients; trying again every poll", "batch: due recipients read again")
		}
		if err != nil {
			if !wait(w.o.Poll, nil) {
				break
			}
			continue
		}
		if len(due) == 0 {
			cur, err := w.o.Store.GetBatch(lctx, ref.CompanyID, ref.ID)
			if err == nil && cur.Status != store.BatchRunning {
				break // completed (the last call's finish said so) or cancelled
			}
			if err == nil && cur.Counts[store.RecipientCalling] > 0 && under.Load() == 0 {
				// Calls whose outcome could not be written: never placed again.
				if n, err := w.o.Store.InterruptOrphans(lctx, ref, w.token); err == nil && n > 0 {
					log.Warn("batch: calls whose outcome was not recorded are marked interrupted", "recipients", n)
					continue
				}
			}
			d := w.o.Poll
			if !next.IsZero() {
				d = min(d, next.Sub(now))
			}
			if !wait(d, ended) {
				break
			}
			continue
		}
		for _, idx := range due {
			r, err := w.o.Store.BatchRecipient(lctx, ref, idx)
			if err != nil {
				log.Warn("batch: cannot read a recipient", "index", idx, "err", err)
				continue
			}
			if hours != nil {
				loc := zones[r.TimeZone]
				if loc == nil {
					if loc, err = time.LoadLocation(r.TimeZone); err != nil {
						loc = time.UTC
					}
					zones[r.TimeZone] = loc
				}
				if at := hours.next(w.o.Now(), loc); at.After(w.o.Now()) {
					if err := w.o.Store.DeferRecipient(lctx, ref, w.token, idx, at); errors.Is(err, store.ErrLeaseLost) {
						lost()
						break loop
					}
					continue
				}
			}
			select { // a free call slot
			case slots <- struct{}{}:
			case <-lctx.Done():
				break loop
			}
			if d := nextStart.Sub(time.Now()); d > 0 { // calls per second
				if !wait(d, nil) {
					<-slots
					break loop
				}
			}
			attempt, err := w.o.Store.ClaimRecipient(lctx, ref, w.token, idx)
			switch {
			case errors.Is(err, store.ErrNotDue):
				<-slots
				continue
			case errors.Is(err, store.ErrLeaseLost):
				<-slots
				lost()
				break loop
			case errors.Is(err, store.ErrBatchStopped):
				<-slots
				break loop
			case err != nil:
				<-slots
				log.Warn("batch: cannot claim a recipient", "index", idx, "err", err)
				if !wait(w.o.Poll, nil) {
					break loop
				}
				continue loop
			}
			nextStart = time.Now().Add(interval)
			calls.Add(1)
			under.Add(1)
			go func() {
				defer calls.Done()
				w.call(ctx, b, r, attempt, pace.wait, log)
				under.Add(-1)
				<-slots
				select {
				case ended <- struct{}{}:
				default:
				}
			}()
		}
	}
	calls.Wait()
	lost()
	keeper.Wait()
	if err := w.o.Store.ReleaseBatchLease(context.WithoutCancel(ctx), ref, w.token); err != nil {
		log.Warn("batch: cannot release the lease (it lapses)", "err", err)
	}
	log.Info("batch: stopped working")
}

// outage says once that the store cannot be read, with the error, and once
// that it can again, instead of a warning at every poll while it is away.
type outage struct {
	since time.Time
	fails int
}

func (o *outage) report(log *slog.Logger, err error, down, up string) {
	switch {
	case err != nil && o.fails == 0:
		o.since = time.Now()
		o.fails = 1
		log.Warn(down, "err", err)
	case err != nil:
		o.fails++
	case o.fails > 0:
		log.Info(up, "after", time.Since(o.since).Round(time.Millisecond).String(), "failed_polls", o.fails)
		o.fails = 0
	}
}

// keepLease renews the lease every third of its life until ctx ends; it calls
// lost when the lease is gone or could not be renewed before it lapsed.
func (w *Worker) keepLease(ctx context.Context, ref store.BatchRef, lost func(), log *slog.Logger) {
	t := time.NewTicker(w.o.LeaseTTL / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := w.o.Store.RenewBatchLease(ctx, ref, w.token, w.o.LeaseTTL)
		switch {
		case err == nil:
			renewed = time.Now()
		case errors.Is(err, store.ErrLeaseLost):
			log.Warn("batch: lease lost to another node; no new calls from here")
			lost()
			return
		case time.Since(renewed) >= w.o.LeaseTTL:
			log.Warn("batch: lease not renewed in time; no new calls from here", "err", err)
			lost()
			return
		}
	}
}

// call places one attempt and records how it went.
func (w *Worker) call(ctx context.Context, b *store.Batch, r store.BatchRecipient, attempt int, pace func(context.Context) error, log *slog.Logger) {
	ref := store.BatchRef{CompanyID: b.CompanyID, ID: b.ID}
	started := w.o.Now()
	res, err := w.o.Dialer.Dial(ctx, Call{Batch: ref, AgentID: b.AgentID, From: b.From, Recipient: r.Index, Number: r.Number,
		DynamicVariables: r.DynamicVariables, Attempt: attempt, Pace: pace, MachineDetection: b.MachineDetection, HideCallerID: b.HideCallerID,
		RingTimeout: time.Duration(cmp.Or(b.RingTimeout, DefaultRingTimeout)) * time.Second})
	now := w.o.Now()
	rec := &store.BatchAttempt{Attempt: attempt, Outcome: string(res.Outcome), SIPStatus: res.SIPStatus,
		ConversationID: res.ConversationID, Machine: res.Machine, StartedAt: started.UTC(), EndedAt: now.UTC()}
	st, keep, retryAt := store.RecipientFailed, attempt, time.Time{}
	switch {
	case errors.Is(err, ErrAtLimit):
		wait := w.o.AtLimitDelay
		var le *store.OutboundLimitError
		if errors.As(err, &le) && le.RetryAfter > 0 {
			wait = le.RetryAfter
		}
		keep, retryAt, rec = attempt-1, now.Add(wait), nil
		st = store.RecipientRetry
		if keep == 0 {
			st = store.RecipientPending
		}
	case err != nil:
		rec.Outcome, rec.Error = string(Failed), err.Error()
	case res.Outcome == Answered:
		st = store.RecipientAnswered
	case res.Outcome == Busy || res.Outcome == NoAnswer:
		st = store.RecipientStatus(res.Outcome)
		if attempt < b.Retry.MaxAttempts {
			st, retryAt = store.RecipientRetry, now.Add(RetryDelay(b.Retry, attempt))
		}
	case res.Outcome == Rejected:
		st = store.RecipientRejected
	}
	// The outcome is written even when the worker is stopping, tried again for
	// up to FinishTimeout while the store is unreachable; if it never is, the
	// recipient ends interrupted (InterruptOrphans), not called again.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.o.FinishTimeout)
	defer cancel()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		_, err := w.o.Store.FinishRecipient(wctx, ref, r.Index, attempt, st, keep, rec, retryAt)
		if err == nil {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-wctx.Done():
			t.Stop()
			log.Error("batch: cannot record a call's outcome", "index", r.Index, "attempt", attempt, "err", err)
			return
		case <-t.C:
		}
	}
}

// RetryDelay is the wait after a busy or unanswered attempt: the policy's
// delay, multiplied by its backoff for each attempt after the first.
func RetryDelay(p store.RetryPolicy, attempt int) time.Duration {
	return time.Duration(float64(p.Delay) * math.Pow(p.Backoff, float64(attempt-1)))
}
