package webhooks_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxco/gateway/control/webhooks"
	"github.com/cxco/gateway/store"
)

// counter is a lean receiver for the burst: it counts each event id.
type counter struct {
	mu    sync.Mutex
	seen  map[string]int
	total atomic.Int64
	done  chan struct{}
	want  int64
}

func newCounter(t testing.TB, want int64) (*counter, string) {
	c := &counter{seen: map[string]int{}, done: make(chan struct{}), want: want}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct{ ID string }
		json.Unmarshal(body, &ev)
		c.mu.Lock()
		c.seen[ev.ID]++
		c.mu.Unlock()
		if c.total.Add(1) == c.want {
			close(c.done)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL + "/hook"
}

// TestBurstDeliveredOnce: a burst of 10,000 events to 3 webhooks (30,000 deliveries) is
// delivered completely and none twice. The events are recorded first, through the
// store's own agent publish/pause/resume changes, then one worker (32 concurrent
// attempts, the default) drains them; the log reports the delivery rate:
//
//	go test -run TestBurstDeliveredOnce -v ./control/webhooks/
func TestBurstDeliveredOnce(t *testing.T) {
	const (
		events   = 10_000
		hooks    = 3
		agents   = 20
		deadline = 5 * time.Minute
	)
	st := openStore(t, "", "")
	ctx := context.Background()
	cid := newCompany(t, st)
	var counters []*counter
	for range hooks {
		c, url := newCounter(t, events)
		counters = append(counters, c)
		if _, err := st.CreateWebhook(ctx, cid, url, []string{store.EventAgentStatusChanged}, "whsec_burst_secret"); err != nil {
			t.Fatal(err)
		}
	}

	// Record the events: each agent's publish is one, then pause/resume flips.
	genStart := time.Now()
	live := make([]*store.Agent, agents)
	for g := range live {
		live[g] = liveAgent(t, st, cid)
	}
	var wg sync.WaitGroup
	errs := make(chan error, agents)
	for g, a := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			flips := (events - agents) / agents
			if g < (events-agents)%agents {
				flips++
			}
			if err := flipAgent(ctx, st, cid, a.ID, flips); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	gen := time.Since(genStart)
	if n := st.Redis().XLen(ctx, "cxco:{c"+itoa(cid)+"}:outbox").Val(); n != events {
		t.Fatalf("the outbox holds %d events, want %d", n, events)
	}

	start := time.Now()
	w := startWorker(t, webhooks.Options{Store: st, AllowInsecure: true, Retries: webhooks.DefaultRetries()})
	timeout := time.After(deadline)
	for i, c := range counters {
		select {
		case <-c.done:
		case <-timeout:
			t.Fatalf("webhook %d got %d of %d events within %s", i+1, c.total.Load(), events, deadline)
		}
	}
	elapsed := time.Since(start)
	for i, c := range counters {
		c.mu.Lock()
		dups := 0
		for _, n := range c.seen {
			if n != 1 {
				dups++
			}
		}
		distinct := len(c.seen)
		c.mu.Unlock()
		if distinct != events || dups != 0 {
			t.Errorf("webhook %d: %d distinct events, %d delivered more than once; want %d and 0", i+1, distinct, dups, events)
		}
	}
	eventually(t, 10*time.Second, "every success is recorded", func() bool { return w.Stats().Succeeded == events*hooks })
	if s := w.Stats(); s.Attempts != events*hooks {
		t.Errorf("%d attempts for %d deliveries", s.Attempts, events*hooks)
	}
	t.Logf("recorded %d events in %s (%.0f events/s); delivered %d deliveries in %s: %.0f deliveries/s",
		events, gen.Round(time.Millisecond), float64(events)/gen.Seconds(), events*hooks, elapsed.Round(time.Millisecond),
		float64(events*hooks)/elapsed.Seconds())
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
