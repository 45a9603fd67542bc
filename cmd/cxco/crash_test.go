package main

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/store/redistest"
)

// parseTime reads an RFC 3339 timestamp of a record.
func parseTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("timestamp %v: %v", v, err)
	}
	return at
}

// TestNodeKilledMidCall: two gateway nodes share one Redis; node A carries two
// live SIPp calls and is killed with SIGKILL. Node B closes both calls within A's
// lease (3 s here): failed, node_lost, ended at the last moment they were known
// alive — at most a heartbeat (375 ms here) and the second of truncation before
// A died —, billed for that, with conversation.completed delivered.
func TestNodeKilledMidCall(t *testing.T) {
	const lease = 3 * time.Second
	r := redistest.StartRedis(t)
	a := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL,
		Args: []string{"--node-id", "gw-a", "--node-lease", lease.String(), "--webhook-allow-insecure"}})
	b := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL,
		Args: []string{"--node-id", "gw-b", "--node-lease", lease.String(), "--webhook-allow-insecure", "--agency-key", a.AgencyKey}})
	tn := a.NewTenant("Crash")
	hooks := cxcotest.NewHooks(t)
	a.Subscribe(tn, hooks)
	a.AddNumber("+27215550301", "ZA", false)
	agentID, number := a.PublishAgent(tn, "Survivor", "ZA", nil)

	const calls = 2
	run := cxcotest.StartSIPpRun(t, fmt.Sprintf("127.0.0.1:%d", a.SIPPort), "uac_agent.xml", number,
		"-m", fmt.Sprint(calls), "-l", fmt.Sprint(calls), "-r", "20")
	// Killed while the callers talk: after their speech has started to be transcribed.
	if !a.Proc.WaitLog(30*time.Second, func(log string) bool { return strings.Count(log, `"msg":"call answered"`) >= calls }) {
		t.Fatal("the calls were not answered")
	}
	if !b.Proc.WaitLog(5*time.Second, func(log string) bool { return strings.Contains(log, `"msg":"gateway ready"`) }) {
		t.Fatal("node B is not ready")
	}
	// The scenario: calls 10 s old when their node dies, after the callers' speech
	// (2 s to about 8 s into each call) has been answered and transcribed.
	time.Sleep(10 * time.Second)
	a.Proc.Kill()
	killed := time.Now()

	sipp := run.Calls()
	var ids []string
	for id := range sipp {
		ids = append(ids, id)
	}
	if len(ids) != calls {
		t.Fatalf("SIPp's log has %d calls", len(ids))
	}
	ended, ok := hooks.EndedCalls(ids, 30*time.Second)
	if !ok {
		t.Fatalf("conversation.completed for %d of %d calls of the killed node", len(ended), calls)
	}
	var secs float64
	for callID, data := range ended {
		c := b.Must(200, "GET", fmt.Sprintf("/api/conversations/%.0f", data["id"].(float64)), tn.UserKey, nil)
		meta, _ := c["metadata_"].(map[string]any)["node_lost"].(map[string]any)
		if c["status"] != "failed" || c["end_reason"] != "node_lost" || c["node_id"] != "gw-a" || meta["closed_by"] != "gw-b" ||
			len(c["transcript"].([]any)) < 3 {
			t.Fatalf("conversation of call %s: %v", callID, c)
		}
		closedAt := parseTime(t, meta["closed_at"])
		endedAt := parseTime(t, c["ended_at"])
		answered := parseTime(t, c["answered_at"])
		if d := closedAt.Sub(killed); d > lease+time.Second {
			t.Errorf("call %s closed %s after its node died; the lease is %s", callID, d, lease)
		}
		// Known alive until at most a heartbeat before the kill; stored to the second.
		if endedAt.Before(killed.Add(-2*time.Second)) || endedAt.After(killed) {
			t.Errorf("call %s ended at %s; its node died at %s", callID, endedAt, killed)
		}
		var user int
		for _, e := range c["transcript"].([]any) {
			if e.(map[string]any)["role"] == "user" {
				user++
			}
		}
		billed := c["duration_seconds"].(float64)
		secs += billed
		sippSoFar := killed.Sub(sipp[callID].Answered).Seconds()
		// Stored times are whole seconds: a second either way of the truncation.
		if billed != math.Floor(endedAt.Sub(answered).Seconds()) || billed > sippSoFar+1 || billed < sippSoFar-2.5 {
			t.Errorf("call %s billed %.0f s; SIPp had been in it %.2f s when the node died", callID, billed, sippSoFar)
		}
		t.Logf("call %s: node died %.2f s into it (SIPp's clock), closed %s after, billed %.0f s, %d caller entries kept",
			callID, sippSoFar, closedAt.Sub(killed).Round(time.Millisecond), billed, user)
	}
	u := b.Must(200, "GET", fmt.Sprintf("/api/agents/%d/usage", agentID), tn.UserKey, nil)["voice"].(map[string]any)
	if u["total_conversations"].(float64) != calls || u["total_minutes"].(float64) != math.Round(secs/60*100)/100 {
		t.Fatalf("usage %v; records: %.0f s", u, secs)
	}
}

// TestRestartClosesLeftovers: a node killed mid-call and started again with the
// same --node-id closes the call its earlier process left in progress before it
// is ready, without waiting for its lease (60 s here) to lapse.
func TestRestartClosesLeftovers(t *testing.T) {
	r := redistest.StartRedis(t)
	args := []string{"--node-id", "gw-r", "--node-lease", "60s", "--webhook-allow-insecure"}
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: args})
	tn := g.NewTenant("Restart")
	hooks := cxcotest.NewHooks(t)
	g.Subscribe(tn, hooks)
	g.AddNumber("+27215550401", "ZA", false)
	_, number := g.PublishAgent(tn, "Phoenix", "ZA", nil)
	ph, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), number, "PCMU")
	if code != 200 {
		t.Fatalf("answered %d", code)
	}
	if ph.Heard(0, 500*time.Millisecond, 300*time.Millisecond, 15*time.Second) == nil {
		t.Fatal("no opening line")
	}
	g.Proc.Kill()
	killed := time.Now()
	g2 := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: append(args, "--agency-key", g.AgencyKey)})
	g2.Proc.WaitStderr(t, `"msg":"gateway ready"`, 10*time.Second)
	log := g2.Proc.Stderr()
	closed, ready := strings.Index(log, "closed the calls an earlier process"), strings.Index(log, `"msg":"gateway ready"`)
	if closed < 0 || ready < 0 || closed > ready {
		t.Fatalf("the restarted node did not close its leftover before it was ready:\n%s", log)
	}
	ended, ok := hooks.EndedCalls([]string{ph.CallID()}, 30*time.Second)
	if !ok {
		t.Fatal("no conversation.completed for the leftover call")
	}
	c := ended[ph.CallID()]
	meta, _ := c["metadata_"].(map[string]any)["node_lost"].(map[string]any)
	endedAt := parseTime(t, c["ended_at"])
	if c["status"] != "failed" || c["end_reason"] != "node_lost" || meta["closed_by"] != "start-up" ||
		endedAt.After(killed) || endedAt.Before(killed.Add(-2*time.Second)) {
		t.Fatalf("leftover: %v (killed at %s)", c, killed)
	}
}

// TestShutdownDuringOutageKeepsWrites: a node is sent SIGTERM while Redis is away,
// after a call that talked through the outage has ended. Its pending writes — the
// transcript entries said during the outage and the call's end with its usage —
// go to the spool file; the node started again on the same machine replays them
// once Redis is back: the call is recorded completed, billed to its own hang-up,
// with every entry.
func TestShutdownDuringOutageKeepsWrites(t *testing.T) {
	r := redistest.StartPersistentRedis(t)
	spool := t.TempDir()
	args := []string{"--node-id", "gw-s", "--spool-dir", spool, "--spool-wait", "1s", "--drain-timeout", "5s", "--webhook-allow-insecure"}
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: args})
	tn := g.NewTenant("Spool")
	hooks := cxcotest.NewHooks(t)
	g.Subscribe(tn, hooks)
	g.AddNumber("+27215550501", "ZA", false)
	_, number := g.PublishAgent(tn, "Patient", "ZA", nil)
	ph, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), number, "PCMU")
	answered := time.Now()
	if code != 200 {
		t.Fatalf("answered %d", code)
	}
	if ph.Heard(0, 500*time.Millisecond, 300*time.Millisecond, 15*time.Second) == nil {
		t.Fatal("no opening line")
	}
	r.Stop()
	// Two utterances during the outage, each answered.
	for i := range 2 {
		before := len(ph.Audio())
		ph.SendAudio(cxcotest.Tone(800+200*float64(i), -10, 800*time.Millisecond))
		if ph.Heard(before, 600*time.Millisecond, 300*time.Millisecond, 15*time.Second) == nil {
			t.Fatal("no answer during the outage")
		}
	}
	ph.Hangup()
	hungUp := time.Now()
	g.Proc.WaitStderr(t, `"msg":"call ended"`, 15*time.Second)
	g.Proc.Signal(syscall.SIGTERM)
	if c := g.Proc.Wait(30 * time.Second); c < 0 {
		t.Fatal("the node did not stop")
	}
	if !strings.Contains(g.Proc.Stderr(), "pending writes saved to the spool file") {
		t.Fatalf("no spool file at shutdown:\n%s", g.Proc.Stderr())
	}
	files, _ := filepath.Glob(filepath.Join(spool, "spool-*.log"))
	if len(files) != 1 {
		t.Fatalf("spool files: %v", files)
	}

	r.Restart(t)
	restarted := time.Now()
	g2 := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: append(args, "--agency-key", g.AgencyKey)})
	ended, ok := hooks.EndedCalls([]string{ph.CallID()}, 30*time.Second)
	t.Logf("stopped %s after the hang-up; the restarted node delivered the call's end %s after it started",
		restarted.Sub(hungUp).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	if !ok {
		t.Fatal("the call's end was not replayed")
	}
	c := g2.Must(200, "GET", fmt.Sprintf("/api/conversations/%.0f", ended[ph.CallID()]["id"].(float64)), tn.UserKey, nil)
	var user, agent int
	for _, e := range c["transcript"].([]any) {
		switch e.(map[string]any)["role"] {
		case "user":
			user++
		case "agent":
			agent++
		}
	}
	billed := c["duration_seconds"].(float64)
	phone := hungUp.Sub(answered).Seconds()
	if c["status"] != "completed" || c["end_reason"] != "caller_hangup" || user != 2 || agent != 3 || math.Abs(billed-phone) > 1.5 {
		t.Fatalf("replayed conversation (phone talked %.1f s): %v", phone, c)
	}
	if _, err := os.Stat(files[0]); !os.IsNotExist(err) {
		t.Fatalf("the spool file is still there after its replay: %v", err)
	}
	if !strings.Contains(g2.Proc.Stderr(), "replaying writes saved at an earlier shutdown") {
		t.Fatal("the restart did not say it replayed the spool")
	}
	t.Logf("shutdown during the outage: the call and its %d caller entries kept; billed %.0f s, the phone talked %.2f s", user, billed, phone)
}

// TestSpooledEndCorrectsNodeLost: two nodes share Redis; node A is sent SIGTERM
// during a Redis outage after a call that talked through the outage has ended, so
// its true end goes to A's spool file. Once Redis is back node B finds A's lease
// lapsed and closes the call as failed/node_lost, billed to A's last heartbeat
// (before the outage). A restarted on the same machine replays its file, and the
// true end corrects the record: completed, caller_hangup, billed to the phone's own
// hang-up, usage counting the call once with its true time, a second
// conversation.completed with the corrected record and metadata_.node_lost saying
// when and by whom it was corrected.
func TestSpooledEndCorrectsNodeLost(t *testing.T) {
	const lease = 3 * time.Second
	r := redistest.StartPersistentRedis(t)
	spool := t.TempDir()
	argsA := []string{"--node-id", "gw-a", "--node-lease", lease.String(), "--spool-dir", spool, "--spool-wait", "1s", "--drain-timeout", "5s", "--webhook-allow-insecure"}
	a := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: argsA})
	b := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL,
		Args: []string{"--node-id", "gw-b", "--node-lease", lease.String(), "--spool-dir", t.TempDir(), "--webhook-allow-insecure", "--agency-key", a.AgencyKey}})
	tn := a.NewTenant("SpoolSweep")
	hooks := cxcotest.NewHooks(t)
	a.Subscribe(tn, hooks)
	a.AddNumber("+27215550601", "ZA", false)
	_, number := a.PublishAgent(tn, "Patient", "ZA", nil)
	ph, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", a.SIPPort), number, "PCMU")
	answered := time.Now()
	if code != 200 {
		t.Fatalf("answered %d", code)
	}
	if ph.Heard(0, 500*time.Millisecond, 300*time.Millisecond, 15*time.Second) == nil {
		t.Fatal("no opening line")
	}
	t0 := time.Now()
	phase := func(what string) { t.Logf("+%s %s", time.Since(t0).Round(time.Millisecond), what) }
	r.Stop()
	// Two utterances during the outage, each answered: the call outlives A's last
	// heartbeat by a few seconds.
	for i := range 2 {
		before := len(ph.Audio())
		ph.SendAudio(cxcotest.Tone(800+200*float64(i), -10, 800*time.Millisecond))
		if ph.Heard(before, 600*time.Millisecond, 300*time.Millisecond, 15*time.Second) == nil {
			t.Fatal("no answer during the outage")
		}
	}
	ph.Hangup()
	phone := time.Since(answered).Seconds()
	phase("hung up")
	a.Proc.WaitStderr(t, `"msg":"call ended"`, 15*time.Second)
	phase("call ended")
	a.Proc.Signal(syscall.SIGTERM)
	if c := a.Proc.Wait(30 * time.Second); c < 0 {
		t.Fatal("node A did not stop")
	}
	if !strings.Contains(a.Proc.Stderr(), "pending writes saved to the spool file") {
		t.Fatalf("no spool file at shutdown:\n%s", a.Proc.Stderr())
	}

	// Redis back: B closes A's call as lost (the event is B's doing: A is down).
	phase("A stopped")
	r.Restart(t)
	phase("Redis back")
	ended, ok := hooks.EndedCalls([]string{ph.CallID()}, 30*time.Second)
	if !ok {
		t.Fatal("B did not close A's call")
	}
	lost := ended[ph.CallID()]
	if lost["status"] != "failed" || lost["end_reason"] != "node_lost" {
		t.Fatalf("before A's restart: %v", lost)
	}
	convID := lost["id"].(float64)
	phase("node_lost delivered")

	// A restarts and replays its spool file: a second conversation.completed.
	a2 := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: append(argsA, "--agency-key", a.AgencyKey)})
	var completed []map[string]any
	if !hooks.Wait(30*time.Second, func(evs []map[string]any) bool {
		completed = completed[:0]
		for _, ev := range evs {
			if data, _ := ev["data"].(map[string]any); ev["type"] == "conversation.completed" && data["id"] == convID {
				completed = append(completed, data)
			}
		}
		return len(completed) >= 2
	}) {
		t.Fatalf("no corrected conversation.completed after A's replay; events: %v", hooks.Events())
	}
	phase("correction delivered")
	a2.Proc.WaitStderr(t, `"msg":"gateway ready"`, 20*time.Second)
	c := b.Must(200, "GET", fmt.Sprintf("/api/conversations/%.0f", convID), tn.UserKey, nil)
	billed := c["duration_seconds"].(float64)
	lostBilled := lost["duration_seconds"].(float64)
	meta, _ := c["metadata_"].(map[string]any)
	nl, _ := meta["node_lost"].(map[string]any)
	if c["status"] != "completed" || c["end_reason"] != "caller_hangup" || math.Abs(billed-phone) > 1.5 || !(lostBilled < billed) {
		t.Fatalf("after A's replay (phone talked %.2f s, node_lost billed %.0f s): %v", phone, lostBilled, c)
	}
	if nl["corrected_by"] != "gw-a" || nl["corrected_at"] == nil || nl["closed_by"] != "gw-b" || nl["lost_duration_seconds"] != lostBilled {
		t.Fatalf("metadata_.node_lost: %v", nl)
	}
	if fix := completed[1]; fix["status"] != "completed" || fix["duration_seconds"] != billed || fix["ended_at"] != c["ended_at"] {
		t.Fatalf("the correction's event: %v, record %v", fix, c)
	}
	u := b.Must(200, "GET", "/api/usage/summary", tn.UserKey, nil)["voice"].(map[string]any)
	if u["total_conversations"].(float64) != 1 || u["total_minutes"].(float64) != math.Round(billed/60*100)/100 {
		t.Fatalf("usage %v, want one conversation of %.0f s", u, billed)
	}
	if n := len(completed); n != 2 {
		t.Fatalf("%d conversation.completed events, want 2", n)
	}
	// The metrics: B closed one call as lost, A corrected it: none actually lost.
	lostB := metricValue(t, http.DefaultClient, b.HTTP, "cxco_conversations_node_lost_total")
	lostA := metricValue(t, http.DefaultClient, a2.HTTP, "cxco_conversations_node_lost_total")
	fixedB := metricValue(t, http.DefaultClient, b.HTTP, "cxco_conversations_node_lost_corrected_total")
	fixedA := metricValue(t, http.DefaultClient, a2.HTTP, "cxco_conversations_node_lost_corrected_total")
	if lostB != 1 || lostA != 0 || fixedA != 1 || fixedB != 0 || lostA+lostB-fixedA-fixedB != 0 {
		t.Fatalf("node_lost_total B %v, A %v; node_lost_corrected_total B %v, A %v: want one closed by B, corrected by A, none lost",
			lostB, lostA, fixedB, fixedA)
	}
	t.Logf("node_lost billed %.0f s (ended %v); A's replay corrected it to %.0f s (ended %v); the phone talked %.2f s",
		lostBilled, lost["ended_at"], billed, c["ended_at"], phone)
}
