package batch

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxco/gateway/store"
	"github.com/cxco/gateway/store/redistest"
)

// recorder is the test's Dialer. It stands where the outbound call path will:
// a unit-test boundary, not a stand-in for SIP. It records every call it is
// asked to place (which node, which attempt, when), the most calls it had at
// once, and answers each number by the test's rule.
type recorder struct {
	mu       sync.Mutex
	calls    []placed
	inFlight int
	most     int
	refused  int
	answer   func(c Call) (Result, error)
	hold     func(c Call) <-chan struct{} // nil: the call ends at once
	placedCh chan placed
}

type placed struct {
	node string
	call Call
	at   time.Time
}

func newRecorder(answer func(Call) (Result, error)) *recorder {
	return &recorder{answer: answer, placedCh: make(chan placed, 100000)}
}

type nodeDialer struct {
	*recorder
	node string
}

func (d nodeDialer) Dial(ctx context.Context, c Call) (Result, error) {
	r := d.recorder
	p := placed{d.node, c, time.Now()}
	r.mu.Lock()
	r.calls = append(r.calls, p)
	r.inFlight++
	r.most = max(r.most, r.inFlight)
	r.mu.Unlock()
	r.placedCh <- p
	if r.hold != nil {
		if ch := r.hold(c); ch != nil {
			select {
			case <-ch:
			case <-ctx.Done():
			}
		}
	}
	r.mu.Lock()
	r.inFlight--
	r.mu.Unlock()
	return r.answer(c)
}

func (r *recorder) byNumber() map[string][]placed {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string][]placed{}
	for _, p := range r.calls {
		m[p.call.Number] = append(m[p.call.Number], p)
	}
	return m
}

func openStore(t *testing.T, url, node string, now ...func() time.Time) *store.Store {
	t.Helper()
	sealer, _ := store.NewSealer(store.GenerateSecretKey())
	o := store.Options{URL: url, Sealer: sealer, NodeID: node}
	if len(now) > 0 {
		o.Now = now[0]
	}
	s, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func numbers(n int) []RecipientRequest {
	rs := make([]RecipientRequest, n)
	for i := range rs {
		rs[i] = RecipientRequest{PhoneNumber: fmt.Sprintf("+44207%07d", i), DynamicVariables: map[string]any{"i": float64(i)}}
	}
	return rs
}

// waitDone waits until the batch is no longer running, on the recorder's
// calls (each call is an event) with a deadline.
func waitStatus(t *testing.T, st *store.Store, cid, bid int64, want store.BatchStatus, r *recorder) *store.Batch {
	t.Helper()
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := st.GetBatch(context.Background(), cid, bid)
		if err != nil {
			t.Fatal(err)
		}
		if b.Status == want {
			return b
		}
		select {
		case <-deadline:
			t.Fatalf("batch still %s with %v after 60 s", b.Status, b.Counts)
		case <-r.placedCh:
		case <-tick.C:
		}
	}
}

// TestBatchLimitsAndRetries: 60 recipients at 40 calls/s, 6 at once, three
// attempts at most. A third of the numbers are busy on the first call and
// answer the second; one in ten never answers. Every recipient is called
// exactly as the rules say (answered once, busy-then-answered twice,
// never-answering three times, with the attempts in order and the retry delay
// between them), never more than 6 calls at once nor more than 40 starts in
// any second, and the progress and counts say so.
func TestBatchLimitsAndRetries(t *testing.T) {
	r := redistest.StartRedis(t)
	st := openStore(t, r.URL, "node-a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n, cps, conc = 60, 40.0, 6
	b, rs, err := Prepare(Request{Name: "limits", CallsPerSecond: cps, MaxConcurrent: conc,
		Retry: &RetryRequest{MaxAttempts: 3, DelaySeconds: 0.2, Backoff: 1.5}, Recipients: numbers(n)}, 1, 5)
	if err != nil {
		t.Fatal(err)
	}
	created, err := st.CreateBatch(ctx, b, rs)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(func(c Call) (Result, error) {
		i := c.Recipient
		switch {
		case i%10 == 9:
			return Result{Outcome: NoAnswer, SIPStatus: 487}, nil
		case i%3 == 0 && c.Attempt == 1:
			return Result{Outcome: Busy, SIPStatus: 486}, nil
		}
		return Result{Outcome: Answered, SIPStatus: 200, ConversationID: int64(1000 + i)}, nil
	})
	// Each call lasts 200 ms: at 40 calls/s that would be 8 at once, so the
	// limit of 6 is what holds them back.
	rec.hold = func(c Call) <-chan struct{} {
		ch := make(chan struct{})
		time.AfterFunc(200*time.Millisecond, func() { close(ch) })
		return ch
	}
	w := New(Options{Store: st, Dialer: nodeDialer{rec, "node-a"}, Node: "node-a", Poll: 20 * time.Millisecond, LeaseTTL: 3 * time.Second})
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	got := waitStatus(t, st, 1, created.ID, store.BatchCompleted, rec)
	cancel()
	<-done

	byNum := rec.byNumber()
	wantAnswered, wantNoAnswer := 0, 0
	for i := range n {
		num := rs[i].Number
		calls := byNum[num]
		want := 1
		switch {
		case i%10 == 9:
			want = 3
			wantNoAnswer++
		case i%3 == 0:
			want = 2
			wantAnswered++
		default:
			wantAnswered++
		}
		if len(calls) != want {
			t.Errorf("recipient %d called %d times, want %d", i, len(calls), want)
			continue
		}
		for a, p := range calls {
			if p.call.Attempt != a+1 || p.call.DynamicVariables["i"] != float64(i) {
				t.Errorf("recipient %d call %d: %+v", i, a, p.call)
			}
			if a > 0 { // the retry delay: 0.2 s then 0.3 s, after the previous call ended (30 ms)
				if gap := p.at.Sub(calls[a-1].at); gap < RetryDelay(created.Retry, a) {
					t.Errorf("recipient %d retry %d after %v, want at least %v", i, a, gap, RetryDelay(created.Retry, a))
				}
			}
		}
	}
	if rec.most != conc {
		t.Errorf("%d calls at once, limit %d (reached, never passed)", rec.most, conc)
	}
	starts := make([]time.Time, 0, len(rec.calls))
	for _, p := range rec.calls {
		starts = append(starts, p.at)
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	for i := range starts {
		j := i
		for j < len(starts) && starts[j].Sub(starts[i]) < time.Second {
			j++
		}
		if j-i > int(cps) {
			t.Fatalf("%d calls started within a second from %v, limit %v/s", j-i, starts[i], cps)
		}
	}
	if got.Counts[store.RecipientAnswered] != wantAnswered || got.Counts[store.RecipientNoAnswer] != wantNoAnswer || len(got.Counts) != 2 || got.FinishedAt == nil {
		t.Errorf("counts %v finished %v, want %d answered, %d no_answer", got.Counts, got.FinishedAt, wantAnswered, wantNoAnswer)
	}
	t.Logf("%d calls, at most %d at once; %v", len(rec.calls), rec.most, got.Counts)

	prog, err := st.BatchRecipients(context.Background(), 1, created.ID, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) != 10 || prog[0].Status != store.RecipientAnswered || prog[0].Attempts != 2 || prog[0].Last.ConversationID != 1000 ||
		prog[9].Status != store.RecipientNoAnswer || prog[9].Attempts != 3 || prog[9].Last.SIPStatus != 487 || prog[9].NextAttemptAt != nil {
		t.Errorf("progress: %+v ... %+v", prog[0], prog[9])
	}
	if list, _ := st.ActiveBatches(context.Background()); len(list) != 0 {
		t.Errorf("completed batch still active: %v", list)
	}
}

// TestBatchOneNodeAtATime: two nodes run workers on one Redis; the batch is
// worked by whichever took its lease, and every recipient is called once.
// Cancelling stops new calls: the rest are cancelled, none called after.
func TestBatchOneNodeAtATime(t *testing.T) {
	r := redistest.StartRedis(t)
	sa, sb := openStore(t, r.URL, "node-a"), openStore(t, r.URL, "node-b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, rs, err := Prepare(Request{CallsPerSecond: 100, MaxConcurrent: 4, Recipients: numbers(60)}, 1, 5)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := sa.CreateBatch(ctx, b, rs)
	b2, rs2, _ := Prepare(Request{CallsPerSecond: 5, MaxConcurrent: 1, Recipients: numbers(50)}, 2, 6)
	second, _ := sa.CreateBatch(ctx, b2, rs2)

	rec := newRecorder(func(Call) (Result, error) { return Result{Outcome: Answered, SIPStatus: 200}, nil })
	var wg sync.WaitGroup
	for _, n := range []struct {
		node string
		st   *store.Store
	}{{"node-a", sa}, {"node-b", sb}} {
		w := New(Options{Store: n.st, Dialer: nodeDialer{rec, n.node}, Node: n.node, Poll: 20 * time.Millisecond, LeaseTTL: 3 * time.Second})
		wg.Add(1)
		go func() { defer wg.Done(); w.Run(ctx) }()
	}
	waitStatus(t, sa, 1, first.ID, store.BatchCompleted, rec)
	// The second batch, 5 calls a second: cancel it after its fifth call.
	callsOf := func(bid int64) int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		n := 0
		for _, p := range rec.calls {
			if p.call.Batch.ID == bid {
				n++
			}
		}
		return n
	}
	for callsOf(second.ID) < 5 {
		select {
		case <-rec.placedCh:
		case <-time.After(30 * time.Second):
			t.Fatal("the second batch placed no calls")
		}
	}
	cb, err := sb.CancelBatch(ctx, 2, second.ID)
	if err != nil {
		t.Fatal(err)
	}
	atCancel := callsOf(second.ID)
	cancel()
	wg.Wait()

	nodes := map[int64]map[string]bool{}
	perRecipient := map[string]int{}
	for _, p := range rec.calls {
		if nodes[p.call.Batch.ID] == nil {
			nodes[p.call.Batch.ID] = map[string]bool{}
		}
		nodes[p.call.Batch.ID][p.node] = true
		perRecipient[fmt.Sprint(p.call.Batch, p.call.Recipient)]++
	}
	for k, c := range perRecipient {
		if c != 1 {
			t.Errorf("recipient %s called %d times", k, c)
		}
	}
	if len(nodes[first.ID]) != 1 || len(nodes[second.ID]) != 1 {
		t.Errorf("nodes per batch: %v", nodes)
	}
	final, _ := sa.GetBatch(context.Background(), 2, second.ID)
	// A call claimed just before the cancel may start just after it (one at
	// a time here); none after that.
	placed2 := callsOf(second.ID)
	if final.Status != store.BatchCancelled || cb.Status != store.BatchCancelled || final.Counts[store.RecipientAnswered] != placed2 ||
		final.Counts[store.RecipientCancelled] != 50-placed2 || placed2 > atCancel+1 {
		t.Errorf("cancelled batch after %d calls (%d at the cancel): %+v", placed2, atCancel, final)
	}
	if _, err := sa.CancelBatch(ctx, 1, first.ID); err == nil {
		t.Error("cancelling a completed batch: no error")
	}
}

func redistestStart(t *testing.T) string { return redistest.StartRedis(t).URL }

// slotDialer places calls within the company's shared outbound limits
// (store.AcquireOutbound), as the outbound call path will: refused calls
// return the limit's error; placed ones hold their slot for the call's length.
type slotDialer struct {
	*recorder
	st  *store.Store
	lim store.OutboundLimits
}

func (d slotDialer) Dial(ctx context.Context, c Call) (Result, error) {
	slot, err := d.st.AcquireOutbound(ctx, c.Batch.CompanyID, fmt.Sprint(c.Batch.ID, "-", c.Recipient, "-", c.Attempt), d.lim, time.Minute)
	if err != nil {
		d.recorder.mu.Lock()
		d.recorder.refused++
		d.recorder.mu.Unlock()
		return Result{}, err
	}
	defer slot.Release(context.WithoutCancel(ctx))
	return nodeDialer{d.recorder, "node-a"}.Dial(ctx, c)
}

// TestBatchAtCompanyLimit: a batch allowed 5 calls at once, of a company
// allowed 2: the company's limit holds (never 3 calls), the refused attempts
// do not count, and every recipient is answered on its first counted attempt.
func TestBatchAtCompanyLimit(t *testing.T) {
	st := openStore(t, redistestStart(t), "node-a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, rs, err := Prepare(Request{CallsPerSecond: 100, MaxConcurrent: 5, Recipients: numbers(20)}, 6, 1)
	if err != nil {
		t.Fatal(err)
	}
	created, _ := st.CreateBatch(ctx, b, rs)
	rec := newRecorder(func(c Call) (Result, error) { return Result{Outcome: Answered, SIPStatus: 200}, nil })
	rec.hold = func(c Call) <-chan struct{} {
		ch := make(chan struct{})
		time.AfterFunc(50*time.Millisecond, func() { close(ch) })
		return ch
	}
	w := New(Options{Store: st, Dialer: slotDialer{rec, st, store.OutboundLimits{MaxConcurrent: 2}}, Node: "node-a",
		Poll: 20 * time.Millisecond, LeaseTTL: 3 * time.Second, AtLimitDelay: 20 * time.Millisecond})
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	got := waitStatus(t, st, 6, created.ID, store.BatchCompleted, rec)
	cancel()
	<-done
	prog, _ := st.BatchRecipients(context.Background(), 6, created.ID, 0, 20)
	for _, p := range prog {
		if p.Attempts != 1 || p.Status != store.RecipientAnswered {
			t.Errorf("recipient %d: %s after %d attempts", p.Index, p.Status, p.Attempts)
		}
	}
	t.Logf("%d calls, %d refused at the company's limit, at most %d at once; %v", len(rec.calls), rec.refused, rec.most, got.Counts)
	if rec.most != 2 || rec.refused == 0 || len(rec.calls) != 20 {
		t.Errorf("at most %d at once (company limit 2), %d refused, %d placed", rec.most, rec.refused, len(rec.calls))
	}
}

// lossyStore is the real store, except that the outcome of recipient 3 can
// never be written (as if Redis were unreachable each time).
type lossyStore struct{ *store.Store }

func (s lossyStore) FinishRecipient(ctx context.Context, ref store.BatchRef, index, attempt int, st store.RecipientStatus, keep int, res *store.BatchAttempt, retryAt time.Time) (bool, error) {
	if index == 3 {
		return false, store.ErrUnavailable
	}
	return s.Store.FinishRecipient(ctx, ref, index, attempt, st, keep, res, retryAt)
}

// TestBatchOutcomeNeverWritten: a call whose outcome cannot be recorded is
// tried for FinishTimeout, then, once nothing else is under way, marked
// interrupted — never called again — and the batch completes.
func TestBatchOutcomeNeverWritten(t *testing.T) {
	st := openStore(t, redistestStart(t), "node-a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, rs, _ := Prepare(Request{CallsPerSecond: 100, MaxConcurrent: 2, Recipients: numbers(8)}, 11, 1)
	created, _ := st.CreateBatch(ctx, b, rs)
	rec := newRecorder(func(Call) (Result, error) { return Result{Outcome: Answered, SIPStatus: 200}, nil })
	w := New(Options{Store: lossyStore{st}, Dialer: nodeDialer{rec, "node-a"}, Node: "node-a", Poll: 20 * time.Millisecond,
		LeaseTTL: 3 * time.Second, FinishTimeout: 300 * time.Millisecond})
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	got := waitStatus(t, st, 11, created.ID, store.BatchCompleted, rec)
	cancel()
	<-done
	if got.Counts[store.RecipientInterrupted] != 1 || got.Counts[store.RecipientAnswered] != 7 || len(rec.calls) != 8 {
		t.Errorf("counts %v after %d calls", got.Counts, len(rec.calls))
	}
	prog, _ := st.BatchRecipients(context.Background(), 11, created.ID, 3, 1)
	if prog[0].Status != store.RecipientInterrupted {
		t.Errorf("recipient 3: %+v", prog[0])
	}
}

// TestBatchCallSettings: a batch's ring timeout, machine detection and
// withheld caller ID reach each call (the Dialer's Call), and the verdict the
// call path reports is the recipient's last attempt's.
func TestBatchCallSettings(t *testing.T) {
	st := openStore(t, redistestStart(t), "node-a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, rs, err := Prepare(Request{CallsPerSecond: 100, MachineDetection: "detect", RingTimeoutSeconds: 7, HideCallerID: true, Recipients: numbers(2)}, 12, 1)
	if err != nil {
		t.Fatal(err)
	}
	created, _ := st.CreateBatch(ctx, b, rs)
	rec := newRecorder(func(c Call) (Result, error) {
		return Result{Outcome: Answered, SIPStatus: 200, Machine: map[int]string{0: "machine", 1: "human"}[c.Recipient]}, nil
	})
	w := New(Options{Store: st, Dialer: nodeDialer{rec, "node-a"}, Node: "node-a", Poll: 20 * time.Millisecond})
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	waitStatus(t, st, 12, created.ID, store.BatchCompleted, rec)
	cancel()
	<-done
	for _, p := range rec.calls {
		if p.call.MachineDetection != "detect" || p.call.RingTimeout != 7*time.Second || !p.call.HideCallerID || p.call.Pace == nil {
			t.Errorf("call %+v", p.call)
		}
	}
	got, _ := st.BatchRecipients(context.Background(), 12, created.ID, 0, 2)
	if len(got) != 2 || got[0].Last.Machine != "machine" || got[1].Last.Machine != "human" {
		t.Errorf("recipients: %+v", got)
	}
}

// downStore is the real store whose batch list fails while down is set, as
// when Redis is away.
type downStore struct {
	*store.Store
	down  *atomic.Bool
	lists chan struct{}
}

func (s downStore) ActiveBatches(ctx context.Context) ([]store.BatchRef, error) {
	defer func() {
		select {
		case s.lists <- struct{}{}:
		default:
		}
	}()
	if s.down.Load() {
		return nil, store.ErrUnavailable
	}
	return s.Store.ActiveBatches(ctx)
}

// TestBatchOutageLoggedOnce: while the store cannot list batches the worker
// says so once, not at every poll, and once when it can again.
func TestBatchOutageLoggedOnce(t *testing.T) {
	st := openStore(t, redistestStart(t), "node-a")
	var down atomic.Bool
	down.Store(true)
	ds := downStore{Store: st, down: &down, lists: make(chan struct{})}
	var mu sync.Mutex
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logged.Write(p)
	}), nil))
	ctx, cancel := context.WithCancel(context.Background())
	w := New(Options{Store: ds, Dialer: nodeDialer{newRecorder(nil), "node-a"}, Node: "node-a", Poll: 5 * time.Millisecond, Log: log})
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	wait := func(n int) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for range n {
			select {
			case <-ds.lists:
			case <-deadline:
				t.Fatalf("the worker stopped listing batches")
			}
		}
	}
	wait(20) // 20 failed polls
	down.Store(false)
	wait(3)
	down.Store(true)
	wait(3)
	cancel()
	<-done
	mu.Lock()
	out := logged.String()
	mu.Unlock()
	if n := strings.Count(out, "cannot list batches"); n != 2 {
		t.Errorf("%d warnings for two outages:\n%s", n, out)
	}
	if n := strings.Count(out, "batches listed again"); n != 1 || !strings.Contains(out, "failed_polls=") {
		t.Errorf("%d notices of the end of one outage:\n%s", n, out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
