package store

import (
	"context"
	"encoding/json"
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
