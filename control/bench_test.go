package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxco/gateway/store"
)

// benchClient keeps enough idle connections for every benchmark worker.
var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}}

// benchRequest sends one request with a key and returns its status.
func benchRequest(method, url, key, body string) (int, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-API-Key", key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := benchClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// measure runs b.N requests from parallelism×GOMAXPROCS concurrent workers, times each
// one, and reports requests/s, p50 and p99 latency. do gets the iteration's index.
func measure(b *testing.B, parallelism, want int, do func(i int) (int, error)) {
	var next atomic.Int64
	var failures atomic.Int64
	var firstErr atomic.Value
	var mu sync.Mutex
	all := make([]time.Duration, 0, b.N)
	b.SetParallelism(parallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 256)
		for pb.Next() {
			i := int(next.Add(1) - 1)
			t0 := time.Now()
			status, err := do(i)
			local = append(local, time.Since(t0))
			if err != nil || status != want {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d, err %v", status, err))
			}
		}
		mu.Lock()
		all = append(all, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failures.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed; first: %v", n, b.N, firstErr.Load())
	}
	slices.Sort(all)
	pct := func(q float64) time.Duration { return all[min(len(all)-1, int(float64(len(all))*q))] }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99_ms")
}

var benchNumber atomic.Int64

// BenchmarkAPI measures the API's hot paths against a real redis-server, over real
// HTTP, with the provider simulator: an authenticated GET /api/agents/{id}, a
// GET /api/conversations/ page of 30, and publish (each iteration publishes a fresh
// draft and takes a number from the pool).
//
//	go test -run '^$' -bench . -benchtime 3s ./control/
func BenchmarkAPI(b *testing.B) {
	e := newEnv(b, envOpts{})
	// A rate limit the benchmark does not reach (the check itself is still on the path).
	c := e.must(201, "POST", "/api/agency/companies", e.agency, map[string]any{"name": "Bench Co", "plan": "enterprise",
		"rate_limit_per_minute": 1_000_000}).json(b)
	cid, compKey := num(c["id"]), c["api_key"].(string)
	userKey := e.must(201, "POST", "/api/users/", compKey, map[string]any{"email": "bench@example.com", "name": "Bench"}).json(b)["api_key"].(string)
	tn := tenant{id: cid, compKey: compKey, userKey: userKey}
	e.addNumbers("ZA", 1)
	agent := e.newAgent(tn, "Hot Agent")
	e.publish(tn, agent) // the full view: voice, number and WhatsApp state
	for i := 0; i < 100; i++ {
		e.makeConv(cid, convSpec{agent: agent, caller: p("+2782%07d", i), started: time.Now().UTC().Add(-time.Duration(i) * time.Minute),
			answered: true, dur: 60 + i, status: "completed", success: bptr(i%2 == 0)})
	}
	items, _, _ := pageOf(b, e.must(200, "GET", "/api/conversations/", userKey, nil))
	if len(items) != 30 {
		b.Fatalf("conversation page of %d", len(items))
	}
	const parallelism = 8 // × GOMAXPROCS workers

	b.Run("GetAgent", func(b *testing.B) {
		url := p("%s/api/agents/%d", e.base, agent)
		measure(b, parallelism, 200, func(int) (int, error) { return benchRequest("GET", url, userKey, "") })
	})

	b.Run("ConversationsPage", func(b *testing.B) {
		url := e.base + "/api/conversations/"
		measure(b, parallelism, 200, func(int) (int, error) { return benchRequest("GET", url, userKey, "") })
	})

	b.Run("Publish", func(b *testing.B) {
		// b.N fresh drafts and b.N numbers, made through the store (not timed).
		ctx := context.Background()
		agents := make([]int64, b.N)
		var wg sync.WaitGroup
		var setupErr atomic.Value
		work := make(chan int)
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					a, err := e.st.CreateAgent(ctx, store.Agent{CompanyID: cid, Name: p("Bench %d", i), Personality: "You answer calls.",
						OpeningLine: "Hello!", VoiceID: 1, Language: "en", Config: map[string]any{}})
					if err == nil {
						agents[i] = a.ID
						_, err = e.st.AddNumber(ctx, p("+2731%07d", benchNumber.Add(1)), "ZA", "sip_trunk", false)
					}
					if err != nil {
						setupErr.CompareAndSwap(nil, err)
					}
				}
			}()
		}
		for i := 0; i < b.N; i++ {
			work <- i
		}
		close(work)
		wg.Wait()
		if err := setupErr.Load(); err != nil {
			b.Fatal(err)
		}
		body, _ := json.Marshal(map[string]any{"country_code": "ZA"})
		measure(b, parallelism, 200, func(i int) (int, error) {
			return benchRequest("POST", p("%s/api/agents/%d/publish", e.base, agents[i]), userKey, string(body))
		})
	})
}
