package store

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cxco/gateway/store/redistest"
)

// TestNodeLostSweep: node A carries a call and dies (its heartbeat stops); node B
// or C (one of them) closes A's call once A's lease lapses — failed, node_lost, ended at the last
// moment it was known alive (its last transcript entry, later than A's last
// heartbeat), billed for that time, with its conversation.completed event —
// while node C's call, whose node lives, is left alone. A later process with A's
// id finds nothing left; one started with C's id while C's old process is gone
// closes C's leftovers at start-up.
func TestNodeLostSweep(t *testing.T) {
	r := redistest.StartRedis(t)
	ctx := context.Background()
	sealer, _ := NewSealer(GenerateSecretKey())
	open := func(node string) *Store {
		s, err := Open(ctx, Options{URL: r.URL, Sealer: sealer, NodeID: node})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	const lease = 2 * time.Second
	a, b, c := open("node-a"), open("node-b"), open("node-c")
	co, _, err := a.CreateCompany(ctx, "Sweep Co", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	call := func(s *Store, answered time.Time, spoken float64) *Conversation {
		t.Helper()
		cv, err := s.CreateConversation(ctx, Conversation{CompanyID: co.ID, AgentID: 4, Channel: "voice", Direction: "inbound", StartedAt: answered.Add(-time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if cv.NodeID != s.node {
			t.Fatalf("conversation on %s records node %q", s.node, cv.NodeID)
		}
		if _, err := s.UpdateConversation(ctx, co.ID, cv.ID, func(c *Conversation) error { c.AnsweredAt = &answered; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendTranscriptAt(ctx, co.ID, cv.ID, 0, TranscriptEntry{Role: "agent", Message: "Hi", Timestamp: spoken}); err != nil {
			t.Fatal(err)
		}
		return cv
	}
	type closedBy struct {
		node  string
		convs []*Conversation
	}
	nodeOf := func(s *Store, closed chan closedBy) *Node {
		n, err := s.Node(NodeOptions{Lease: lease, OnClosed: func(node string, c []*Conversation) {
			if closed != nil {
				closed <- closedBy{node, c}
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return n
	}
	run := func(n *Node) (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); n.Run(rctx) }()
		stop = func() { cancel(); <-done }
		t.Cleanup(stop)
		return stop
	}

	// A: one heartbeat, a call whose last words came 1.5 s after A's heartbeat, then silence.
	nodeOf(a, nil)
	beat, err := a.rdb.ZScore(ctx, keyNodes(), "node-a").Result()
	if err != nil {
		t.Fatal(err)
	}
	lastBeat := time.UnixMilli(int64(beat))
	answered := lastBeat.Add(-10 * time.Second).Truncate(time.Second)
	lost := call(a, answered, 11.5)

	// C lives, with a call of its own; B has none. Both sweep.
	swept := make(chan closedBy, 8)
	nc := nodeOf(c, swept)
	kept := call(c, answered, 1)
	nb := nodeOf(b, swept)
	for range 2 {
		if sb := <-swept; len(sb.convs) != 0 { // their own start-ups: nothing left over
			t.Fatalf("node %s closed %d calls of its own at start-up", sb.node, len(sb.convs))
		}
	}
	stopC := run(nc)
	run(nb)
	var sb closedBy
	select {
	case sb = <-swept:
	case <-time.After(10 * lease):
		t.Fatalf("A's call was not closed within %s", 10*lease)
	}
	if sb.node != "node-a" || len(sb.convs) != 1 {
		t.Fatalf("closed %d calls of %s, want A's one", len(sb.convs), sb.node)
	}
	got := sb.convs[0]
	if got.ID != lost.ID {
		t.Fatalf("closed conversation %d (of %s), want %d", got.ID, got.NodeID, lost.ID)
	}
	rec, err := b.GetConversation(ctx, co.ID, lost.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantEnd := answered.Add(11 * time.Second) // answered + 11.5 s, truncated to the second
	if rec.Status != ConvFailed || rec.EndReason == nil || *rec.EndReason != EndNodeLost || rec.EndedAt == nil ||
		!rec.EndedAt.Equal(wantEnd) || rec.DurationSeconds == nil || *rec.DurationSeconds != 11 {
		t.Fatalf("closed conversation: %+v (ended %v, want %v)", rec, rec.EndedAt, wantEnd)
	}
	if m, _ := rec.Metadata["node_lost"].(map[string]any); m["node"] != "node-a" || (m["closed_by"] != "node-b" && m["closed_by"] != "node-c") {
		t.Fatalf("metadata_.node_lost: %v", rec.Metadata)
	}
	u, err := b.UsageRange(ctx, co.ID, answered, answered, 0)
	if err != nil || u.Total.VoiceConversations != 1 || u.Total.VoiceSeconds != 11 {
		t.Fatalf("usage: %+v, %v", u.Total, err)
	}
	evs, err := b.rdb.XRange(ctx, keyOutbox(co.ID), "-", "+").Result()
	if err != nil || len(evs) != 1 || evs[0].Values["type"] != EventConversationCompleted {
		t.Fatalf("outbox: %v, %v", evs, err)
	}
	var ev Event
	if err := json.Unmarshal([]byte(evs[0].Values["event"].(string)), &ev); err != nil || ev.Data.(map[string]any)["end_reason"] != EndNodeLost {
		t.Fatalf("event: %+v, %v", ev, err)
	}
	// A is forgotten once its calls are closed; C's call is untouched.
	if n, _ := b.rdb.ZCard(ctx, keyNodeLive("node-a")).Result(); n != 0 {
		t.Fatalf("node A still lists %d calls", n)
	}
	if st, _ := b.GetConversation(ctx, co.ID, kept.ID); st.Status != ConvInProgress {
		t.Fatalf("the live node's call was closed: %+v", st)
	}
	if _, err := b.rdb.ZScore(ctx, keyNodes(), "node-a").Result(); err != redis.Nil {
		t.Fatalf("node A is still listed among the nodes: %v", err)
	}

	// A new process with C's id (C's old one is gone, within its lease: a quick
	// restart): it closes C's leftover at start-up, before taking calls.
	stopC()
	own := make(chan closedBy, 1)
	nodeOf(open("node-c"), own)
	so := <-own
	if len(so.convs) != 1 {
		t.Fatalf("start-up closed %d calls, want C's one", len(so.convs))
	}
	got = so.convs[0]
	if got.ID != kept.ID || *got.EndReason != EndNodeLost || got.Metadata["node_lost"].(map[string]any)["closed_by"] != "start-up" {
		t.Fatalf("start-up closed %+v", got)
	}

	// A clean exit with nothing in progress leaves nothing to sweep.
	nb.Leave(ctx)
	if _, err := b.rdb.Get(ctx, keyNodeLease("node-b")).Result(); err != redis.Nil {
		t.Fatalf("node B's lease after it left: %v", err)
	}
}

// TestNodeLostCorrectedByTrueEnd: node A stops while Redis is away with its call's
// true end in its spool file; node B closes the call as node_lost (billed to A's
// last heartbeat); A's restart replays the true end, which corrects the record —
// status, end reason, end, duration, usage by the difference, success counters
// untouched, metadata_.node_lost.corrected_at, a second conversation.transferred
// with the corrected record — once: replaying the file again, or B's node_lost end
// arriving again, changes nothing.
func TestNodeLostCorrectedByTrueEnd(t *testing.T) {
	r := redistest.StartRedis(t)
	ctx := context.Background()
	sealer, _ := NewSealer(GenerateSecretKey())
	open := func(node string) *Store {
		s, err := Open(ctx, Options{URL: r.URL, Sealer: sealer, NodeID: node})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open("node-a"), open("node-b")
	co, _, err := a.CreateCompany(ctx, "Correct Co", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	na, err := a.Node(NodeOptions{Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := na.Start(ctx); err != nil { // one heartbeat, then A is gone
		t.Fatal(err)
	}
	beat, _ := a.rdb.ZScore(ctx, keyNodes(), "node-a").Result()
	answered := time.UnixMilli(int64(beat)).Add(-4 * time.Second).Truncate(time.Second)
	cv, err := a.CreateConversation(ctx, Conversation{CompanyID: co.ID, AgentID: 4, Channel: "voice", Direction: Outbound, StartedAt: answered.Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.UpdateConversation(ctx, co.ID, cv.ID, func(c *Conversation) error { c.AnsweredAt = &answered; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := a.AppendTranscriptAt(ctx, co.ID, cv.ID, 0, TranscriptEntry{Role: "agent", Message: "Hi", Timestamp: 0.5}); err != nil {
		t.Fatal(err)
	}
	// A's true end, 30 s after the answer (a transfer, 6 s of it with the human),
	// and the analysis after it, as its spool file holds them.
	yes := true
	trueEnd := answered.Add(30*time.Second + 400*time.Millisecond)
	writes := []Write{
		{Op: WriteAppend, CompanyID: co.ID, Conversation: cv.ID, Index: 1, Entry: &TranscriptEntry{Role: "user", Message: "Bye", Timestamp: 20}},
		{Op: WriteFinish, CompanyID: co.ID, Conversation: cv.ID, Final: &Final{Status: ConvTransferred, EndedAt: trueEnd, EndReason: "transferred",
			SIPReferSeconds: 6, ReferTo: "sip:+27215550000@pbx", Metadata: map[string]any{"rtp": map[string]any{"lost": 1.0}}}},
		{Op: WriteAnalysis, CompanyID: co.ID, Conversation: cv.ID, Successful: &yes},
	}

	closed := make(chan []*Conversation, 4)
	nb, err := b.Node(NodeOptions{Lease: time.Second, OnClosed: func(node string, c []*Conversation) {
		if node == "node-a" {
			closed <- c
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := nb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); nb.Run(rctx) }()
	select {
	case c := <-closed:
		if len(c) != 1 || c[0].ID != cv.ID {
			t.Fatalf("B closed %d of A's calls", len(c))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("B did not close A's call")
	}
	cancel()
	<-done
	lost, _ := b.GetConversation(ctx, co.ID, cv.ID)
	if lost.Status != ConvFailed || *lost.EndReason != EndNodeLost || *lost.DurationSeconds != 4 {
		t.Fatalf("closed as lost: %s %v %v", lost.Status, *lost.EndReason, *lost.DurationSeconds)
	}
	usage := func() Usage {
		t.Helper()
		u, err := b.UsageRange(ctx, co.ID, answered, answered, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ag := u.ByAgent[4]; ag == nil || *ag != u.Total {
			t.Fatalf("agent's usage %+v, company's %+v", ag, u.Total)
		}
		return u.Total
	}
	if u := usage(); u.VoiceConversations != 1 || u.VoiceSeconds != 4 || u.OutboundSeconds != 4 {
		t.Fatalf("usage once lost: %+v", u)
	}

	// A restarts and replays its file: the true end corrects the record.
	dir := t.TempDir()
	a2 := open("node-a")
	var corrections atomic.Int32 // what cxco_conversations_node_lost_corrected_total counts
	a2.OnNodeLostCorrected(func(c *Conversation) {
		if c.ID == cv.ID && c.Status == ConvTransferred {
			corrections.Add(1)
		}
	})
	replay := func() {
		t.Helper()
		if _, _, err := writeSpoolFile(dir, "node-a", writes, 1<<20); err != nil {
			t.Fatal(err)
		}
		sp := NewSpool(a2, SpoolOptions{Dir: dir, Node: "node-a"})
		if st, err := sp.Replay(); err != nil || st.Writes != len(writes) {
			t.Fatalf("replay: %+v, %v", st, err)
		}
		if err := sp.Flush(Context(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		sp.Close(time.Second)
	}
	wantEnd := trueEnd.UTC().Truncate(time.Second)
	check := func(when string) {
		t.Helper()
		c, err := b.GetConversation(ctx, co.ID, cv.ID)
		if err != nil {
			t.Fatal(err)
		}
		if c.Status != ConvTransferred || c.EndReason == nil || *c.EndReason != "transferred" || !c.EndedAt.Equal(wantEnd) ||
			*c.DurationSeconds != 30 || c.SIPReferSeconds != 6 || *c.MessageCount != 2 || c.CallSuccessful == nil || !*c.CallSuccessful {
			t.Fatalf("%s: %s %v ended %v (want %v) duration %v refer %d messages %v", when, c.Status, *c.EndReason, c.EndedAt, wantEnd,
				*c.DurationSeconds, c.SIPReferSeconds, *c.MessageCount)
		}
		m, _ := c.Metadata["node_lost"].(map[string]any)
		if m["node"] != "node-a" || m["closed_by"] != "node-b" || m["corrected_by"] != "node-a" || m["corrected_at"] == nil ||
			m["lost_duration_seconds"] != 4.0 || m["lost_ended_at"] != lost.EndedAt.Format(time.RFC3339Nano) || c.Metadata["rtp"] == nil {
			t.Fatalf("%s: metadata_ %v", when, c.Metadata)
		}
		// Usage: the conversation once, with its true time: 24 s with the agent, 6 with the human.
		if u := usage(); u.VoiceConversations != 1 || u.VoiceSeconds != 24 || u.ReferSeconds != 6 ||
			u.OutboundConversations != 1 || u.OutboundSeconds != 24 || u.Analysed != 1 || u.Successful != 1 {
			t.Fatalf("%s: usage %+v", when, u)
		}
		evs, err := b.rdb.XRange(ctx, keyOutbox(co.ID), "-", "+").Result()
		if err != nil || len(evs) != 2 || evs[0].Values["type"] != EventConversationCompleted || evs[1].Values["type"] != EventConversationTransferred {
			t.Fatalf("%s: outbox %v, %v", when, evs, err)
		}
		var ev Event
		if err := json.Unmarshal([]byte(evs[1].Values["event"].(string)), &ev); err != nil {
			t.Fatal(err)
		}
		data := ev.Data.(map[string]any)
		if data["status"] != ConvTransferred || data["duration_seconds"] != 30.0 || data["metadata_"].(map[string]any)["node_lost"].(map[string]any)["corrected_at"] == nil {
			t.Fatalf("%s: the correction's event: %v", when, data)
		}
		if n := corrections.Load(); n != 1 {
			t.Fatalf("%s: %d corrections told, want 1", when, n)
		}
	}
	replay()
	check("after the replay")
	replay() // the same file again: a crash before it was removed
	check("after the same replay again")
	// A node_lost end again (a sweeper that read the record before the correction).
	if _, err := b.FinishConversation(ctx, co.ID, cv.ID, Final{Status: ConvFailed, EndReason: EndNodeLost, EndedAt: time.UnixMilli(int64(beat))}); err != nil {
		t.Fatal(err)
	}
	check("after a node_lost end again")
}

// logWatch is a slog handler that keeps each record's message and lets a test
// wait for one.
type logWatch struct {
	mu      sync.Mutex
	msgs    []string
	arrived chan struct{}
}

func newLogWatch() *logWatch { return &logWatch{arrived: make(chan struct{})} }

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *logWatch) WithGroup(string) slog.Handler            { return w }
func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.msgs = append(w.msgs, r.Message)
	close(w.arrived)
	w.arrived = make(chan struct{})
	w.mu.Unlock()
	return nil
}

// wait waits up to d for a message containing substr logged after the first from.
func (w *logWatch) wait(from int, substr string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		w.mu.Lock()
		msgs, next := w.msgs, w.arrived
		w.mu.Unlock()
		for _, m := range msgs[min(from, len(msgs)):] {
			if strings.Contains(m, substr) {
				return true
			}
		}
		select {
		case <-next:
		case <-deadline:
			return false
		}
	}
}

func (w *logWatch) count() int { w.mu.Lock(); defer w.mu.Unlock(); return len(w.msgs) }

// TestOutageLongerThanLeaseLosesNoNode: two nodes, each with a live call, lose Redis
// for longer than their lease (Redis says so: both leases had lapsed when it came
// back). Once Redis is back, each node's sweeper runs and finds no node lost, and
// both calls are still in progress under their nodes: a node sweeps only after
// half a lease of healthy heartbeats, by which time every live node has renewed.
func TestOutageLongerThanLeaseLosesNoNode(t *testing.T) {
	// 2 s: a node sweeps after 1 s of healthy heartbeats, while the other renews
	// every 250 ms; the margin holds on a loaded machine.
	const lease = 2 * time.Second
	r := redistest.StartPersistentRedis(t)
	ctx := context.Background()
	sealer, _ := NewSealer(GenerateSecretKey())
	type node struct {
		st    *Store
		n     *Node
		log   *logWatch
		swept chan SweepPass
		call  *Conversation
	}
	co := int64(0)
	start := func(id string) *node {
		s, err := Open(ctx, Options{URL: r.URL, Sealer: sealer, NodeID: id})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if co == 0 {
			c, _, err := s.CreateCompany(ctx, "Outage Co", "", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			co = c.ID
		}
		nd := &node{st: s, log: newLogWatch(), swept: make(chan SweepPass, 1024)}
		nd.n, err = s.Node(NodeOptions{Lease: lease, Logger: slog.New(nd.log), OnSwept: func(p SweepPass) {
			select {
			case nd.swept <- p:
			default:
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := nd.n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		nd.call, err = s.CreateConversation(ctx, Conversation{CompanyID: co, AgentID: 4, Channel: "voice", Direction: Inbound, StartedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); nd.n.Run(rctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return nd
	}
	a, b := start("node-a"), start("node-b")
	other := map[*node]string{a: "node-b", b: "node-a"}
	// passes waits for k sweeps of nd that looked at the other node and found nothing.
	passes := func(nd *node, k int, when string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for got := 0; got < k; {
			select {
			case p := <-nd.swept:
				if len(p.Lost) != 0 || p.Closed != 0 {
					t.Fatalf("%s: %s found %v lost and closed %d calls", when, nd.n.ID(), p.Lost, p.Closed)
				}
				if slices.Contains(p.Looked, other[nd]) {
					got++
				}
			case <-deadline:
				t.Fatalf("%s: %s swept %d times in 20 s, want %d", when, nd.n.ID(), got, k)
			}
		}
	}
	passes(a, 1, "before the outage")
	passes(b, 1, "before the outage")

	from := map[*node]int{a: a.log.count(), b: b.log.count()}
	r.Stop()
	for _, nd := range []*node{a, b} {
		if !nd.log.wait(from[nd], "node heartbeat failed", 10*time.Second) {
			t.Fatalf("%s did not see the outage", nd.n.ID())
		}
	}
	// The scenario: Redis stays away for twice the lease.
	time.Sleep(2 * lease)
	for _, nd := range []*node{a, b} {
		for len(nd.swept) > 0 {
			<-nd.swept
		}
		from[nd] = nd.log.count()
	}
	r.Restart(t)
	for _, nd := range []*node{a, b} {
		// Redis's own word that the outage outlasted the lease.
		if !nd.log.wait(from[nd], "this node's lease had lapsed", 10*time.Second) {
			t.Fatalf("%s: no lapsed lease after the outage", nd.n.ID())
		}
	}
	// Each sweeper runs (it waits for half a lease of healthy heartbeats) and
	// finds no one lost, three times over.
	passes(a, 3, "after the outage")
	passes(b, 3, "after the outage")
	for _, nd := range []*node{a, b} {
		c, err := a.st.GetConversation(ctx, co, nd.call.ID)
		if err != nil || c.Status != ConvInProgress {
			t.Fatalf("%s's call after the outage: %+v, %v", nd.n.ID(), c, err)
		}
		if _, err := a.st.rdb.ZScore(ctx, keyNodeLive(nd.n.ID()), liveMember(co, nd.call.ID)).Result(); err != nil {
			t.Fatalf("%s's call is no longer listed under it: %v", nd.n.ID(), err)
		}
	}
}
