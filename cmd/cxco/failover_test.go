package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/store/redistest"
)

// These tests take Redis away under live calls the way production loses it — a
// master killed by pid in a real Redis Cluster or under real sentinels — and a
// gateway node killed with SIGKILL or stopped while Redis is away. They assert
// what an operator is promised (every answered call recorded, billed to its own
// end, its transcript whole) and measure the windows; the figures go in the log
// (go test -v) and, from there, in deploy/README.md.

// window records, for one kind of request, when it first failed after the fault
// and when it first succeeded after that.
type window struct {
	mu               sync.Mutex
	name             string
	firstFail, back  time.Time
	fails, successes int
	changed          chan struct{} // closed (and replaced) at each record
}

func newWindow(name string) *window { return &window{name: name, changed: make(chan struct{})} }

// ok: it has not failed, or it is back since it did.
func (w *window) ok() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.firstFail.IsZero() || !w.back.IsZero()
}

func (w *window) record(ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { close(w.changed); w.changed = make(chan struct{}) }()
	now := time.Now()
	switch {
	case !ok && w.firstFail.IsZero():
		w.firstFail = now
		w.fails++
	case !ok:
		w.fails++
		w.back = time.Time{} // failing again: not back yet
	case !w.firstFail.IsZero() && w.back.IsZero():
		w.back = now
		w.successes++
	default:
		w.successes++
	}
}

// report is the window as text: how long it failed, and when it was back
// relative to the fault and to Redis being back.
func (w *window) report(fault, redisBack time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.firstFail.IsZero() {
		return fmt.Sprintf("%s: never failed (%d ok)", w.name, w.successes)
	}
	if w.back.IsZero() {
		return fmt.Sprintf("%s: failing since %s after the fault, not back", w.name, w.firstFail.Sub(fault).Round(time.Millisecond))
	}
	return fmt.Sprintf("%s: 503 from +%s to +%s after the fault (%s), back %s after Redis; %d failed, %d ok",
		w.name, w.firstFail.Sub(fault).Round(time.Millisecond), w.back.Sub(fault).Round(time.Millisecond),
		w.back.Sub(w.firstFail).Round(time.Millisecond), w.back.Sub(redisBack).Round(time.Millisecond), w.fails, w.successes)
}

func (w *window) backAt() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.back }

func (w *window) failedAt() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.firstFail }

// probes keep asking the gateway — an API read, /readyz and a new call — until
// stopped, and record each one's window.
type probes struct {
	api, ready, calls *window
	stop              chan struct{}
	wg                sync.WaitGroup
}

func startProbes(t *testing.T, g *cxcotest.Gateway, tn cxcotest.Tenant, probeNumber string) *probes {
	p := &probes{api: newWindow("API"), ready: newWindow("/readyz"), calls: newWindow("new calls"), stop: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path, key string) bool {
		req, _ := http.NewRequest("GET", g.HTTP+path, nil)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		res, err := client.Do(req)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	}
	loop := func(every time.Duration, f func()) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				f()
				select {
				case <-p.stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	loop(100*time.Millisecond, func() { p.api.record(get("/api/agents/", tn.UserKey)) })
	loop(100*time.Millisecond, func() { p.ready.record(get("/readyz", "")) })
	loop(500*time.Millisecond, func() {
		ph, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), probeNumber, "PCMU")
		if ph != nil {
			ph.Hangup()
		}
		p.calls.record(code == 200)
	})
	return p
}

func (p *probes) close() { close(p.stop); p.wg.Wait() }

// allBack waits until every probe that failed has succeeded since, checking at
// each probe's answer, or until d passes.
func (p *probes) allBack(d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	ws := []*window{p.api, p.ready, p.calls}
	for {
		var next []chan struct{}
		all := true
		for _, w := range ws {
			w.mu.Lock()
			next = append(next, w.changed)
			w.mu.Unlock()
			all = all && w.ok()
		}
		if all {
			return true
		}
		select {
		case <-next[0]:
		case <-next[1]:
		case <-next[2]:
		case <-deadline.C:
			return false
		}
	}
}

// failoverDuringCalls runs four SIPp calls (uac_agent.xml: the caller talks for
// about 6 s of a 12 s call) through one gateway on url, kills Redis's master with
// kill once all are answered, and waits with redisBack until Redis serves again.
// Every call must complete, be recorded completed with its transcript, and be
// billed within a second of SIPp's own clock; the windows are reported.
func failoverDuringCalls(t *testing.T, url string, slotKey func(companyID int64) string,
	kill func(slotKey string), redisBack func(ctx context.Context) (time.Time, error)) {
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: url, Args: []string{"--webhook-allow-insecure"}})
	tn := g.NewTenant("Failover")
	hooks := cxcotest.NewHooks(t)
	g.Subscribe(tn, hooks)
	g.AddNumber("+27215550201", "ZA", false)
	g.AddNumber("+27215550202", "ZA", false)
	agentID, number := g.PublishAgent(tn, "Steadfast", "ZA", nil)
	_, probeNumber := g.PublishAgent(tn, "Probe", "ZA", nil)
	gw := fmt.Sprintf("127.0.0.1:%d", g.SIPPort)

	const calls = 4
	run := cxcotest.StartSIPpRun(t, gw, "uac_agent.xml", number, "-m", fmt.Sprint(calls), "-l", fmt.Sprint(calls), "-r", "20")
	if !g.Proc.WaitLog(20*time.Second, func(log string) bool { return strings.Count(log, `"msg":"call answered"`) >= calls }) {
		t.Fatal("the SIPp calls were not all answered")
	}
	p := startProbes(t, g, tn, probeNumber)
	key := slotKey(tn.CompanyID)
	kill(key)
	fault := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	back, err := redisBack(ctx)
	if err != nil {
		p.close()
		t.Fatalf("Redis did not fail over: %v", err)
	}
	allBack := p.allBack(30 * time.Second)
	p.close()
	t.Logf("Redis back %s after the fault", back.Sub(fault).Round(time.Millisecond))
	for _, w := range []*window{p.api, p.ready, p.calls} {
		t.Log(w.report(fault, back))
	}
	if !allBack {
		t.Fatal("the gateway did not come back within 30 s of Redis")
	}
	// Each probe must have failed while Redis was away (else "back in time" proves
	// nothing), and be back within the target of Redis serving again: 3 s
	// for the API and /readyz (measured: at most 0.52 s, on a loaded machine), and
	// for new calls 3 s plus the probe's period (a call is tried every 0.5 s).
	const target = 3 * time.Second
	for _, c := range []struct {
		w     *window
		bound time.Duration
	}{{p.api, target}, {p.ready, target}, {p.calls, target + 500*time.Millisecond}} {
		if c.w.failedAt().IsZero() {
			t.Errorf("%s never failed while Redis was away", c.w.name)
		} else if d := c.w.backAt().Sub(back); d > c.bound {
			t.Errorf("%s came back %s after Redis, want within %s", c.w.name, d.Round(time.Millisecond), c.bound)
		}
	}

	code, out := run.Wait()
	if code != 0 {
		t.Fatalf("SIPp: exit %d (a call answered before the fault was lost)\n%s", code, out)
	}
	sipp := run.Calls()
	if len(sipp) != calls {
		t.Fatalf("SIPp's log has %d calls", len(sipp))
	}
	var ids []string
	for id := range sipp {
		ids = append(ids, id)
	}
	ended, ok := hooks.EndedCalls(ids, 60*time.Second)
	if !ok {
		t.Fatalf("conversation.completed for %d of the %d SIPp calls", len(ended), calls)
	}
	var secs float64
	var worst time.Duration
	found := 0
	for callID, data := range ended {
		sc := sipp[callID]
		c := g.Must(200, "GET", fmt.Sprintf("/api/conversations/%.0f", data["id"].(float64)), tn.UserKey, nil)
		found++
		var agent, user int
		for _, e := range c["transcript"].([]any) {
			switch e.(map[string]any)["role"] {
			case "agent":
				agent++
			case "user":
				user++
			}
		}
		if c["status"] != "completed" || c["end_reason"] != "caller_hangup" || agent < 2 || user < 1 {
			t.Fatalf("conversation of SIPp call %s: %v", sc.CallID, c)
		}
		billed := c["duration_seconds"].(float64)
		secs += billed
		diff := time.Duration((billed - sc.Length().Seconds()) * float64(time.Second))
		if diff.Abs() > worst.Abs() {
			worst = diff
		}
		if diff.Abs() > time.Second {
			t.Errorf("call %s billed %.0f s; SIPp's own clock says %.2f s", sc.CallID, billed, sc.Length().Seconds())
		}
	}
	if found != calls {
		t.Fatalf("%d of the %d SIPp calls have a conversation.completed", found, calls)
	}
	t.Logf("%d calls answered before the fault: 0 lost, 0 left open; billed %.0f s in all, worst %+.2f s against SIPp's call times", calls, secs, worst.Seconds())
	u := g.Must(200, "GET", fmt.Sprintf("/api/agents/%d/usage", agentID), tn.UserKey, nil)["voice"].(map[string]any)
	if u["total_conversations"].(float64) != calls || u["total_minutes"].(float64) != math.Round(secs/60*100)/100 {
		t.Fatalf("usage %v; records: %.0f s", u, secs)
	}
}

// TestClusterFailoverDuringCalls: a real 6-node Redis Cluster (3 masters, 3
// replicas, cluster-node-timeout 1 s); the master serving the company's hash slot
// is killed by pid during four live SIPp calls.
func TestClusterFailoverDuringCalls(t *testing.T) {
	c := redistest.StartCluster(t, time.Second)
	var slot int
	var master *redistest.Redis
	failoverDuringCalls(t, c.URL, func(cid int64) string { return fmt.Sprintf("cxco:{c%d}:company", cid) },
		func(key string) {
			slot = c.Slot(key)
			master = c.MasterOf(slot)
			if err := redistest.WaitReplicated(cxcotest.Context(t, 10*time.Second), master); err != nil {
				t.Fatal(err)
			}
			master.Kill()
		},
		func(ctx context.Context) (time.Time, error) { return c.WaitFailover(ctx, slot, master) })
}

// TestSentinelFailoverDuringCalls: a master, its replica and three sentinels
// (down-after-milliseconds 1 s); the master is killed by pid during four live
// SIPp calls. Redis is back when the sentinels announce +switch-master.
func TestSentinelFailoverDuringCalls(t *testing.T) {
	s := redistest.StartSentinel(t, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var switched <-chan string
	failoverDuringCalls(t, s.URL, func(int64) string { return "" },
		func(string) {
			switched = s.WatchSwitch(ctx)
			if err := redistest.WaitReplicated(ctx, s.Master); err != nil {
				t.Fatal(err)
			}
			s.Master.Kill()
		},
		func(ctx context.Context) (time.Time, error) {
			select {
			case <-switched:
				return time.Now(), nil
			case <-ctx.Done():
				return time.Time{}, ctx.Err()
			}
		})
}
