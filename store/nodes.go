package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Conversation ownership. A live call belongs to the gateway node that carries it:
// its record names the node (node_id), and the node's live set lists it from the
// INVITE until its end is written. Each node keeps a lease in Redis, renewed by a
// heartbeat. When a node's lease lapses — the process was killed, the machine died,
// it lost Redis for longer than the lease — any other node (one, by lock) closes
// that node's conversations still in progress: status failed, end reason
// node_lost, the end time the last moment the call was known alive (its node's
// last heartbeat, or its last transcript entry if later), usage counted for that
// time, and conversation.completed emitted, as for any other end. A node that
// starts with the id of a dead one closes that one's leftovers at once. If the lost
// node's own end of a call turns up later (replayed from its spool file at its
// restart, or written once a node cut off from Redis gets back), it corrects the
// node_lost record, once (correctsNodeLost in conversations.go).
//
// Timing, for a lease L (--node-lease, default 10 s): the lease key lives L/2 and
// is renewed every min(1 s, L/8); every node looks for lapsed leases every L/8.
// So a dead node's calls are closed within about 5/8 L of its death, and a call is
// billed at most one heartbeat interval (1 s) short of the moment its node died,
// plus the second the stored times are truncated to. A node sweeps only after its
// own heartbeats have succeeded for L/2 in a row: after a Redis outage every live
// node has renewed its lease before anyone judges it lost.
//
// Keys, all under the hash tag {nodes} so each step is one atomic script:
//
//	cxco:{nodes}:all              ZSET    node id -> unix ms of its last heartbeat (the node's clock)
//	cxco:{nodes}:lease:<node>     STRING  the running process's random token, PX L/2
//	cxco:{nodes}:live:<node>      ZSET    "<company id>:<conversation id>" of its calls in progress
//	cxco:{nodes}:sweep:<node>     STRING  held (PX) by the node closing a lost node's calls

const nodesTag = prefix + "{nodes}:"

func keyNodes() string                { return nodesTag + "all" }
func keyNodeLease(node string) string { return nodesTag + "lease:" + node }
func keyNodeLive(node string) string  { return nodesTag + "live:" + node }
func keyNodeSweep(node string) string { return nodesTag + "sweep:" + node }
func liveMember(cid, id int64) string { return itoa(cid) + ":" + itoa(id) }
func parseLiveMember(m string) (int64, int64, bool) {
	a, b, ok := strings.Cut(m, ":")
	cid, id := parseID(a), parseID(b)
	return cid, id, ok && cid > 0 && id > 0
}

// OnNodeLostCorrected tells f of each conversation closed as node_lost whose
// true end this process wrote over it (once per conversation: metrics). Set it
// before the store is used.
func (s *Store) OnNodeLostCorrected(f func(*Conversation)) { s.onCorrected.Store(&f) }

// EndNodeLost is the end reason of a conversation closed because its node was lost.
const EndNodeLost = "node_lost"

// DefaultNodeLease is how long after a node dies its calls are closed, at most.
const DefaultNodeLease = 10 * time.Second

// NodeOptions configure a node's lease.
type NodeOptions struct {
	// Lease bounds how long a dead node's calls stay open (DefaultNodeLease if 0).
	Lease  time.Duration
	Logger *slog.Logger
	// OnClosed is told, once a lost node has been dealt with (or at start-up, this
	// node's own leftovers), which of its conversations this node closed (metrics,
	// tests).
	OnClosed func(node string, closed []*Conversation)
	// OnSwept is told after each pass of the sweeper over the other nodes (one
	// every lease/8 once this node's heartbeats are healthy; none while they are
	// not): which nodes it looked at and which of them it found lost (tests).
	OnSwept func(SweepPass)
}

// SweepPass is one pass of a node's sweeper.
type SweepPass struct {
	Looked []string // the other nodes listed in Redis
	Lost   []string // those whose lease had lapsed and whose sweep this node took
	Closed int      // conversations it closed
}

// Node is this process's membership among the gateway nodes sharing Redis: its
// heartbeat and its sweeper of lost nodes. Run drives both.
type Node struct {
	st       *Store
	id       string
	token    string
	ttl      time.Duration // of the lease key
	beat     time.Duration // heartbeat interval
	sweep    time.Duration // sweep interval
	log      *slog.Logger
	onClosed func(string, []*Conversation)
	onSwept  func(SweepPass)

	mu           sync.Mutex
	healthySince time.Time // of the current run of successful heartbeats; zero after a failure
	lapsedWarned bool
}

// Node returns this store's node (named by Options.NodeID) with its lease.
func (s *Store) Node(opts NodeOptions) (*Node, error) {
	if s.node == "" {
		return nil, errors.New("store: no node id: set Options.NodeID")
	}
	lease := opts.Lease
	if lease <= 0 {
		lease = DefaultNodeLease
	}
	log := opts.Logger
	if log == nil {
		log = s.log
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return &Node{st: s, id: s.node, token: hex.EncodeToString(b), ttl: lease / 2, beat: min(time.Second, lease/8),
		sweep: lease / 8, log: log, onClosed: opts.OnClosed, onSwept: opts.OnSwept}, nil
}

// ID is the node's id.
func (n *Node) ID() string { return n.id }

var heartbeatScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if not cur then return 0 end
if cur ~= ARGV[2] then return 2 end
return 1`)

// heartbeat renews the lease: 1 renewed, 0 it had lapsed (or this is the first),
// 2 another process held this node id.
func (n *Node) heartbeat(ctx context.Context) (int64, error) {
	now := n.st.now()
	r, err := heartbeatScript.Run(ctx, n.st.rdb, []string{keyNodes(), keyNodeLease(n.id)}, n.id, n.token,
		now.UnixMilli(), n.ttl.Milliseconds()).Int64()
	return r, wrapRedis(err)
}

// Start closes what an earlier process with this node id left in progress (it
// was killed, or shut down with Redis away and no spool file to replay), then
// takes the lease. Call it before taking calls.
func (n *Node) Start(ctx context.Context) error {
	prev, err := n.st.rdb.Get(ctx, keyNodeLease(n.id)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return wrapRedis(err)
	}
	if prev != "" {
		n.log.Warn("node id held by another process within its lease: taking it over (if that process still runs, its calls are closed now; give every node its own --node-id)",
			"node", n.id)
	}
	closed, err := n.closeCalls(ctx, n.id, "start-up")
	if err != nil {
		return err
	}
	if len(closed) > 0 {
		n.log.Warn("closed the calls an earlier process with this node id left in progress", "node", n.id, "conversations", len(closed))
	}
	if n.onClosed != nil {
		n.onClosed(n.id, closed)
	}
	if _, err := n.heartbeat(ctx); err != nil {
		return err
	}
	n.mu.Lock()
	n.healthySince = time.Now()
	n.mu.Unlock()
	return nil
}

// Run heartbeats and sweeps until ctx ends.
func (n *Node) Run(ctx context.Context) {
	beat := time.NewTicker(n.beat)
	defer beat.Stop()
	sweep := time.NewTicker(n.sweep)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			n.renew(ctx)
		case <-sweep.C:
			if n.healthy() {
				n.sweepLost(ctx)
			}
		}
	}
}

func (n *Node) renew(ctx context.Context) {
	bctx, cancel := context.WithTimeout(ctx, n.ttl/2)
	r, err := n.heartbeat(bctx)
	cancel()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		if !n.healthySince.IsZero() {
			n.log.Warn("node heartbeat failed", "node", n.id, "err", err)
		}
		n.healthySince = time.Time{}
		return
	}
	switch r {
	case 0:
		if !n.lapsedWarned {
			n.log.Warn("this node's lease had lapsed: other nodes may have closed its calls as node_lost", "node", n.id)
			n.lapsedWarned = true
		}
	case 2:
		n.log.Error("another process runs with this node id: give every node its own --node-id", "node", n.id)
	default:
		n.lapsedWarned = false
	}
	if n.healthySince.IsZero() {
		n.healthySince = time.Now()
	}
}

// healthy: the heartbeats have succeeded for a whole lease TTL in a row, so every
// live node has had the time to renew its lease since Redis last went away.
func (n *Node) healthy() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.healthySince.IsZero() && time.Since(n.healthySince) >= n.ttl
}

var claimSweepScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
return 1`)

var releaseSweepScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('ZCARD', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[4], ARGV[2])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1`)

// sweepLost closes the calls of every node whose lease has lapsed, one node at a
// time under that node's sweep lock.
func (n *Node) sweepLost(ctx context.Context) {
	nodes, err := n.st.rdb.ZRange(ctx, keyNodes(), 0, -1).Result()
	if err != nil {
		return
	}
	var pass SweepPass
	defer func() {
		if n.onSwept != nil {
			n.onSwept(pass)
		}
	}()
	for _, id := range nodes {
		if id == n.id {
			continue
		}
		pass.Looked = append(pass.Looked, id)
		keys := []string{keyNodeLease(id), keyNodeSweep(id), keyNodeLive(id), keyNodes()}
		got, err := claimSweepScript.Run(ctx, n.st.rdb, keys[:2], n.token, (5 * time.Minute).Milliseconds()).Int64()
		if err != nil || got == 0 {
			continue
		}
		pass.Lost = append(pass.Lost, id)
		closed, err := n.closeCalls(ctx, id, n.id)
		pass.Closed += len(closed)
		if len(closed) > 0 || err != nil {
			n.log.Warn("node lost: closed its calls in progress", "lost_node", id, "conversations", len(closed), "err", err)
		}
		_ = releaseSweepScript.Run(context.WithoutCancel(ctx), n.st.rdb, keys, n.token, id).Err()
		if n.onClosed != nil {
			n.onClosed(id, closed)
		}
	}
}

// closeCalls closes every conversation in node's live set that is still in
// progress, as lost at the last moment it was known alive, and empties the set.
// by names who closes them (a node id, or "start-up").
func (n *Node) closeCalls(ctx context.Context, node, by string) ([]*Conversation, error) {
	members, err := n.st.rdb.ZRange(ctx, keyNodeLive(node), 0, -1).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	var lastBeat time.Time
	if ms, err := n.st.rdb.ZScore(ctx, keyNodes(), node).Result(); err == nil {
		lastBeat = time.UnixMilli(int64(ms))
	}
	var closed []*Conversation
	for _, m := range members {
		if by != "start-up" {
			// The node may have come back (a partition, not a death): stop at once.
			if alive, err := n.st.rdb.Exists(ctx, keyNodeLease(node)).Result(); err != nil || alive == 1 {
				return closed, wrapRedis(err)
			}
		}
		cid, id, ok := parseLiveMember(m)
		if ok {
			c, done, err := n.st.closeLost(ctx, cid, id, node, by, lastBeat)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return closed, err
			}
			if done {
				closed = append(closed, c)
			}
		}
		if err := n.st.rdb.ZRem(ctx, keyNodeLive(node), m).Err(); err != nil {
			return closed, wrapRedis(err)
		}
	}
	if len(closed) > 0 {
		// Off the live calls view at once (its readers would drop them as stale later).
		gone := make([]LiveCall, len(closed))
		for i, c := range closed {
			gone[i] = LiveCall{ConversationID: c.ID, CompanyID: c.CompanyID, AgentID: c.AgentID, Node: node}
		}
		_ = n.st.EndLiveCalls(ctx, gone)
	}
	return closed, nil
}

// closeLost ends one conversation of a lost node if it is still in progress; done
// says whether this call closed it.
func (s *Store) closeLost(ctx context.Context, cid, id int64, node, by string, lastBeat time.Time) (*Conversation, bool, error) {
	c, err := s.GetConversation(ctx, cid, id)
	if err != nil {
		return nil, false, err
	}
	if !ConvOpen(c.Status) {
		return c, false, nil
	}
	// The last moment the call was known alive: its node's last heartbeat, or its
	// last transcript entry (seconds since the answer) if that came later.
	alive := lastBeat
	if c.AnsweredAt != nil {
		if raw, err := s.rdb.LIndex(ctx, keyTranscript(cid, id), -1).Result(); err == nil {
			var e TranscriptEntry
			if json.Unmarshal([]byte(raw), &e) == nil {
				if at := c.AnsweredAt.Add(time.Duration(e.Timestamp * float64(time.Second))); at.After(alive) {
					alive = at
				}
			}
		}
		if alive.Before(*c.AnsweredAt) {
			alive = *c.AnsweredAt
		}
	}
	if alive.Before(c.StartedAt) {
		alive = c.StartedAt
	}
	meta := map[string]any{"node_lost": map[string]any{"node": node, "closed_by": by,
		"last_heartbeat_at": fmtTime(lastBeat), "closed_at": fmtTime(s.now())}}
	return s.finishConversation(ctx, cid, id, Final{Status: ConvFailed, EndReason: EndNodeLost, EndedAt: alive, Metadata: meta})
}

func fmtTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Leave is a clean exit: with no call of this node left in progress, its lease and
// its entry are removed so no one has anything to sweep. With calls left (their end
// is still waiting in the spool), the lease just runs out.
func (n *Node) Leave(ctx context.Context) {
	left, err := n.st.rdb.ZCard(ctx, keyNodeLive(n.id)).Result()
	if err != nil || left > 0 {
		return
	}
	_, _ = n.st.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, keyNodeLease(n.id))
		p.ZRem(ctx, keyNodes(), n.id)
		return nil
	})
}

// String names the node for logs.
func (n *Node) String() string { return fmt.Sprintf("node %s", n.id) }
