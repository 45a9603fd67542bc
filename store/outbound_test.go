package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/store/redistest"
)

// TestOutboundConcurrencyAcrossNodes: two nodes, 16 goroutines each, all
// placing a call at the same moment against one company's limit of 3 calls at
// once, holding it until the round ends: exactly 3 get a slot, every round,
// and the others are told which limit they met.
func TestOutboundConcurrencyAcrossNodes(t *testing.T) {
	url := redistest.StartRedis(t).URL
	sealer, _ := NewSealer(GenerateSecretKey())
	ctx := context.Background()
	var stores []*Store
	for _, node := range []string{"a", "b"} {
		s, err := Open(ctx, Options{URL: url, Sealer: sealer, NodeID: node})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	for round := range 10 {
		var got []*OutboundSlot
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				slot, err := stores[g%2].AcquireOutbound(ctx, 5, fmt.Sprint(round, "-", g), OutboundLimits{MaxConcurrent: 3}, time.Minute)
				var le *OutboundLimitError
				switch {
				case err == nil:
					mu.Lock()
					got = append(got, slot)
					mu.Unlock()
				case !errors.As(err, &le) || le.Limit != "concurrent_calls":
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if len(got) != 3 {
			t.Fatalf("round %d: %d calls got a slot, limit 3", round, len(got))
		}
		for _, s := range got {
			if err := s.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestOutboundRateAndLapse, on a shared manual clock and both servers: calls
// per second are spaced exactly 1/cps apart whichever node asks, with the wait
// in the error; a slot its node stops renewing lapses after its TTL, and a
// renewed one does not.
func TestOutboundRateAndLapse(t *testing.T) {
	for _, tc := range []struct{ name, url string }{
		{"redis-server", redistest.StartRedis(t).URL},
		{"embedded", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
			sealer, _ := NewSealer(GenerateSecretKey())
			ctx := context.Background()
			a, err := Open(ctx, Options{URL: tc.url, Sealer: sealer, NodeID: "a", Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b := a
			if tc.url != "" {
				if b, err = Open(ctx, Options{URL: tc.url, Sealer: sealer, NodeID: "b", Now: clock}); err != nil {
					t.Fatal(err)
				}
				defer b.Close()
			}
			lim := OutboundLimits{CallsPerSecond: 4} // one every 250 ms
			if _, err := a.AcquireOutbound(ctx, 7, "1", lim, time.Minute); err != nil {
				t.Fatal(err)
			}
			advance(100 * time.Millisecond)
			_, err = b.AcquireOutbound(ctx, 7, "2", lim, time.Minute)
			var le *OutboundLimitError
			if !errors.As(err, &le) || le.Limit != "calls_per_second" || le.RetryAfter != 150*time.Millisecond {
				t.Fatalf("second call 100 ms later: %v", err)
			}
			advance(150 * time.Millisecond)
			if _, err := b.AcquireOutbound(ctx, 7, "2", lim, time.Minute); err != nil {
				t.Fatalf("second call 250 ms later: %v", err)
			}
			// Another company has its own limits.
			if _, err := b.AcquireOutbound(ctx, 8, "x", lim, time.Minute); err != nil {
				t.Fatal(err)
			}

			one := OutboundLimits{MaxConcurrent: 1}
			slot, err := a.AcquireOutbound(ctx, 9, "long", one, 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 { // renewed every second: held for 3 s, past its TTL
				advance(time.Second)
				if err := slot.Renew(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := b.AcquireOutbound(ctx, 9, "other", one, 3*time.Second); !errors.As(err, &le) || le.Limit != "concurrent_calls" {
				t.Fatalf("second call while the first is renewed: %v", err)
			}
			if n, _ := b.OutboundCalls(ctx, 9); n != 1 {
				t.Fatalf("%d calls counted, want 1", n)
			}
			advance(3 * time.Second) // node a is lost: no renewal
			if _, err := b.AcquireOutbound(ctx, 9, "other", one, 3*time.Second); err != nil {
				t.Fatalf("after the lost node's slot lapsed: %v", err)
			}
			if err := slot.Renew(ctx); !errors.Is(err, ErrNotFound) {
				t.Fatalf("renewing a lapsed slot: %v", err)
			}
		})
	}
}
