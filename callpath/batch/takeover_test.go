package batch

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/store"
	"github.com/redis/go-redis/v9"
)

// The child process of TestBatchNodeKilled: a gateway node working batches,
// whose dialer writes each call it places to a Redis list before placing it
// and holds every fifth call open (a long conversation) until the process dies.
const childEnv = "CXCO_BATCH_TEST_CHILD_REDIS"

func TestMain(m *testing.M) {
	if url := os.Getenv(childEnv); url != "" {
		runChild(url)
		return
	}
	os.Exit(m.Run())
}

type listDialer struct {
	rdb  *redis.Client
	node string
}

func (d listDialer) Dial(ctx context.Context, c Call) (Result, error) {
	d.rdb.RPush(ctx, "test:dialed", fmt.Sprintf("%s:%d:%d", d.node, c.Recipient, c.Attempt))
	if c.Recipient%5 == 4 {
		<-ctx.Done() // a long call: still under way when the node is killed
	}
	return Result{Outcome: Answered, SIPStatus: 200}, nil
}

func runChild(url string) {
	opt, _ := redis.ParseURL(url)
	sealer, _ := store.NewSealer(store.GenerateSecretKey())
	st, err := store.Open(context.Background(), store.Options{URL: url, Sealer: sealer, NodeID: "node-a"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := New(Options{Store: st, Dialer: listDialer{redis.NewClient(opt), "node-a"}, Node: "node-a", Poll: 20 * time.Millisecond, LeaseTTL: time.Second})
	w.Run(context.Background()) // until killed
}

// TestBatchNodeKilled: node A (another process) works a batch of 100 at 50
// calls/s, 10 at once, and is killed with SIGKILL a third of the way in, with
// long calls under way. Node B takes the batch over when A's lease lapses and
// finishes it. Every recipient is called at most once: answered ones once,
// and those A was calling (or had just claimed) when it died are marked
// interrupted and never called again (they may have reached the callee).
// Nothing is lost and nothing doubled.
func TestBatchNodeKilled(t *testing.T) {
	r := redistestStart(t)
	st := openStore(t, r, "node-b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, rs, err := Prepare(Request{CallsPerSecond: 50, MaxConcurrent: 10, Recipients: numbers(100)}, 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	created, err := st.CreateBatch(ctx, b, rs)
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"="+r)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = child.Wait(); close(exited) }()
	t.Cleanup(func() { _ = child.Process.Kill(); <-exited })

	rdb := st.Redis()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := rdb.LLen(ctx, "test:dialed").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n >= 33 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node A placed %d calls in 30 s", n)
		}
		// Wait for the next call on the list (BLMOVE would consume it; poll the length).
		select {
		case <-exited:
			t.Fatal("node A exited by itself")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	killedAt := time.Now()
	byA, err := rdb.LRange(ctx, "test:dialed", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	// A's calls under way when it died: the long ones it placed.
	inFlight, long := 0, -1
	for _, e := range byA {
		var i, a int
		fmt.Sscanf(e[strings.Index(e, ":")+1:], "%d:%d", &i, &a)
		if i%5 == 4 {
			inFlight++
			long = i
		}
	}
	if inFlight == 0 {
		t.Fatal("node A had no call under way")
	}

	rec := newRecorder(func(Call) (Result, error) { return Result{Outcome: Answered, SIPStatus: 200}, nil })
	w := New(Options{Store: st, Dialer: nodeDialer{rec, "node-b"}, Node: "node-b", Poll: 20 * time.Millisecond, LeaseTTL: time.Second})
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	final := waitStatus(t, st, 3, created.ID, store.BatchCompleted, rec)
	cancel()
	<-done

	calls := map[int]int{}
	for _, e := range byA {
		i, _ := strconv.Atoi(strings.Split(e, ":")[1])
		calls[i]++
	}
	first := time.Time{}
	for _, p := range rec.calls {
		calls[p.call.Recipient]++
		if first.IsZero() || p.at.Before(first) {
			first = p.at
		}
	}
	// Every recipient is called at most once. Those answered were called
	// once; the interrupted ones are A's calls under way (its long calls, a
	// short call whose outcome A had not written yet) and any A had claimed
	// but not yet dialled when it died: called once or never, never by B.
	prog, err := st.BatchRecipients(context.Background(), 3, created.ID, 0, 100)
	if err != nil || len(prog) != 100 {
		t.Fatalf("progress: %d, %v", len(prog), err)
	}
	byB := map[int]bool{}
	for _, p := range rec.calls {
		byB[p.call.Recipient] = true
	}
	for i, p := range prog {
		switch {
		case calls[i] > 1:
			t.Errorf("recipient %d called %d times", i, calls[i])
		case p.Status == store.RecipientAnswered && calls[i] != 1:
			t.Errorf("recipient %d answered after %d calls", i, calls[i])
		case p.Status == store.RecipientInterrupted && byB[i]:
			t.Errorf("recipient %d interrupted on A, then called by B", i)
		case p.Status != store.RecipientAnswered && p.Status != store.RecipientInterrupted:
			t.Errorf("recipient %d ends %s", i, p.Status)
		case i%5 == 4 && calls[i] == 1 && !byB[i] && p.Status != store.RecipientInterrupted:
			t.Errorf("recipient %d (a long call of A's under way) ends %s", i, p.Status)
		}
	}
	if n := final.Counts[store.RecipientInterrupted]; n < inFlight || n > inFlight+10 || final.Counts[store.RecipientAnswered] != 100-n {
		t.Errorf("counts %v; A had %d long calls under way (10 at once at most)", final.Counts, inFlight)
	}
	t.Logf("A placed %d calls (%d under way when killed), B %d; B's first call %v after the kill (lease 1 s); %v",
		len(byA), inFlight, len(rec.calls), first.Sub(killedAt).Round(time.Millisecond), final.Counts)
	if p := prog[long]; p.Status != store.RecipientInterrupted || p.Attempts != 1 || p.Last != nil {
		t.Errorf("recipient %d (a long call of A's): %+v", long, p)
	}
}

// TestBatchCallingHours: at 10:00 UTC on a Thursday with hours 09:00-17:00,
// London numbers are called; Tokyo (19:00) waits for 09:00 JST the next day
// and New York (05:00) for 09:00 EST, shown as their next_attempt_at; none of
// them is called.
func TestBatchCallingHours(t *testing.T) {
	r := redistestStart(t)
	// The clock runs from 10:00 UTC.
	base, start := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), time.Now()
	now := func() time.Time { return base.Add(time.Since(start)) }
	st := openStore(t, r, "node-a", now)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, rs, err := Prepare(Request{CallsPerSecond: 100, CallingHours: &store.CallingHours{Start: "09:00", End: "17:00"},
		Recipients: []RecipientRequest{{PhoneNumber: "+442071234567"}, {PhoneNumber: "+81312345678"},
			{PhoneNumber: "+12125550100", TimeZone: "America/New_York"}, {PhoneNumber: "+447700900123"}}}, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	created, _ := st.CreateBatch(ctx, b, rs)
	rec := newRecorder(func(Call) (Result, error) { return Result{Outcome: Answered}, nil })
	w := New(Options{Store: st, Dialer: nodeDialer{rec, "node-a"}, Node: "node-a", Poll: 20 * time.Millisecond,
		LeaseTTL: 3 * time.Second, Now: now})
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	want := map[int]time.Time{1: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC), 2: time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)}
	deadline := time.After(30 * time.Second)
	for {
		prog, err := st.BatchRecipients(ctx, 4, created.ID, 0, 4)
		if err != nil {
			t.Fatal(err)
		}
		ok := prog[0].Status == store.RecipientAnswered && prog[3].Status == store.RecipientAnswered
		for i, at := range want {
			ok = ok && prog[i].NextAttemptAt != nil && prog[i].NextAttemptAt.Equal(at) && prog[i].Status == store.RecipientPending
		}
		if ok {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("progress %+v", prog)
		case <-rec.placedCh:
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	<-done
	for _, p := range rec.calls {
		if p.call.Recipient == 1 || p.call.Recipient == 2 {
			t.Errorf("called %s outside its hours", p.call.Number)
		}
	}
}
