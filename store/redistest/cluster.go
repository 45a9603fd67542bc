package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a real Redis Cluster of 3 masters and 3 replicas on loopback, made the
// way an operator makes one: six `redis-server --cluster-enabled yes` and
// `redis-cli --cluster create ... --cluster-replicas 1`.
type Cluster struct {
	Nodes []*Redis
	// URL names every node, in the gateway's redis+cluster:// form.
	URL         string
	NodeTimeout time.Duration
	t           testing.TB
}

// StartCluster starts the six nodes with the given cluster-node-timeout (how long
// a master may be silent before its replica takes over; Redis's default is 15 s,
// tests use about 1 s to keep failovers short), creates the cluster and waits until
// every node reports cluster_state:ok. It stops the nodes when the test ends.
func StartCluster(t testing.TB, nodeTimeout time.Duration) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: install it with `apt-get install -y redis-server` (deploy/test.sh does this)")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found: install it with `apt-get install -y redis-tools` (deploy/test.sh does this)")
	}
	c := &Cluster{NodeTimeout: nodeTimeout, t: t}
	var addrs []string
	for range 6 {
		r := &Redis{dir: t.TempDir(), bin: bin, extra: []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", fmt.Sprint(nodeTimeout.Milliseconds()),
			// A replica may take over whatever its last contact with the master: the
			// tests kill masters that were busy a moment ago.
			"--cluster-replica-validity-factor", "0",
			// Replicas sync at once rather than waiting 5 s for others to share the transfer.
			"--repl-diskless-sync-delay", "0"}}
		if err := r.startBus(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Stop)
		c.Nodes = append(c.Nodes, r)
		addrs = append(addrs, r.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.URL = "redis+cluster://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range c.Nodes {
		if err := c.waitOK(ctx, r); err != nil {
			t.Fatalf("cluster did not form: %v", err)
		}
	}
	return c
}

// startBus starts a cluster node on a port whose bus port (port+10000) is free too.
func (r *Redis) startBus() error {
	var err error
	for range 20 {
		p := freePort()
		if p+10000 > 65535 || !portFree(p+10000) {
			continue
		}
		if err = r.start(p); err == nil {
			return nil
		}
	}
	return fmt.Errorf("cluster node: %w", err)
}

func (c *Cluster) client(r *Redis) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: 300 * time.Millisecond, MaxRetries: -1,
		ReadTimeout: 500 * time.Millisecond, DisableIdentity: true})
}

// waitOK waits until r says cluster_state:ok, sees every slot served and, if it is
// a replica, has finished its first sync (a replica that has not is no backup).
func (c *Cluster) waitOK(ctx context.Context, r *Redis) error {
	cl := c.client(r)
	defer cl.Close()
	return poll(ctx, func() bool {
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return false
		}
		repl, err := cl.Info(ctx, "replication").Result()
		return err == nil && (strings.Contains(repl, "role:master") || strings.Contains(repl, "master_link_status:up"))
	})
}

// Slot is the hash slot of key.
func (c *Cluster) Slot(key string) int {
	c.t.Helper()
	for _, r := range c.Nodes {
		if r.Pid() == 0 {
			continue
		}
		cl := c.client(r)
		n, err := cl.ClusterKeySlot(context.Background(), key).Result()
		cl.Close()
		if err == nil {
			return int(n)
		}
	}
	c.t.Fatal("no cluster node answers")
	return 0
}

// MasterOf is the node that serves slot now, as the live nodes see it.
func (c *Cluster) MasterOf(slot int) *Redis {
	c.t.Helper()
	addr, err := c.masterAddr(context.Background(), slot)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, r := range c.Nodes {
		if r.Addr == addr {
			return r
		}
	}
	c.t.Fatalf("slot %d is served by %s, not one of ours", slot, addr)
	return nil
}

func (c *Cluster) masterAddr(ctx context.Context, slot int) (string, error) {
	var lastErr error
	for _, r := range c.Nodes {
		if r.Pid() == 0 {
			continue
		}
		cl := c.client(r)
		slots, err := cl.ClusterSlots(ctx).Result()
		cl.Close()
		if err != nil {
			lastErr = err
			continue
		}
		for _, s := range slots {
			if slot >= s.Start && slot <= s.End && len(s.Nodes) > 0 {
				return s.Nodes[0].Addr, nil
			}
		}
		lastErr = fmt.Errorf("slot %d is not served", slot)
	}
	if lastErr == nil {
		lastErr = errors.New("no cluster node is running")
	}
	return "", lastErr
}

// WaitFailover waits until a node other than old serves slot and every live node
// says cluster_state:ok: Redis itself is back. It returns when that was first seen.
func (c *Cluster) WaitFailover(ctx context.Context, slot int, old *Redis) (time.Time, error) {
	var at time.Time
	err := poll(ctx, func() bool {
		addr, err := c.masterAddr(ctx, slot)
		if err != nil || addr == old.Addr {
			return false
		}
		for _, r := range c.Nodes {
			if r.Pid() == 0 {
				continue
			}
			cl := c.client(r)
			info, err := cl.ClusterInfo(ctx).Result()
			cl.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false
			}
		}
		at = time.Now()
		return true
	})
	return at, err
}

// poll checks cond every 50 ms until it holds or ctx ends. It is for the state of
// Redis processes (which announce nothing a client could wait on), never for state
// inside the test process.
func poll(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// WaitReplicated waits until every replica of the master r has taken every write
// r had taken when it was called (Redis replicates asynchronously: a master killed
// a moment after a write may take it to the grave, which is Redis's trade-off,
// not what a test of the gateway means to measure).
func WaitReplicated(ctx context.Context, r *Redis) error {
	cl := redis.NewClient(&redis.Options{Addr: r.Addr, DisableIdentity: true})
	defer cl.Close()
	offsets := func() (master int64, replicas []int64, err error) {
		info, err := cl.Info(ctx, "replication").Result()
		if err != nil {
			return 0, nil, err
		}
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "master_repl_offset:"); ok {
				fmt.Sscan(v, &master)
			}
			if strings.HasPrefix(l, "slave") && strings.Contains(l, "offset=") {
				for _, kv := range strings.Split(l, ",") {
					if v, ok := strings.CutPrefix(kv, "offset="); ok {
						var o int64
						fmt.Sscan(v, &o)
						replicas = append(replicas, o)
					}
				}
			}
		}
		return master, replicas, nil
	}
	want, _, err := offsets()
	if err != nil {
		return err
	}
	return poll(ctx, func() bool {
		_, reps, err := offsets()
		if err != nil || len(reps) == 0 {
			return false
		}
		for _, o := range reps {
			if o < want {
				return false
			}
		}
		return true
	})
}
