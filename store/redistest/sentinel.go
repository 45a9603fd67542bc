package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the sentinels of StartSentinel monitor.
const MasterName = "cxco"

// Sentinel is a master, its replica and three redis-sentinel processes watching
// them (quorum 2), on loopback.
type Sentinel struct {
	Master, Replica *Redis
	Sentinels       []*Redis
	// URL is the gateway's redis+sentinel:// URL naming all three sentinels.
	URL string
	t   testing.TB
}

// StartSentinel starts the topology with the given down-after-milliseconds (how
// long the master may be silent before the sentinels fail it over; Sentinel's
// example config says 30 s, tests use about 1 s) and waits until the replica is in
// sync and every sentinel knows the replica and the other two sentinels.
func StartSentinel(t testing.TB, downAfter time.Duration) *Sentinel {
	t.Helper()
	srv, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: install it with `apt-get install -y redis-server` (deploy/test.sh does this)")
	}
	sen, err := exec.LookPath("redis-sentinel")
	if err != nil {
		t.Fatalf("redis-sentinel not found: install it with `apt-get install -y redis-sentinel` (deploy/test.sh does this)")
	}
	s := &Sentinel{t: t}
	s.Master = &Redis{dir: t.TempDir(), bin: srv}
	if err := s.Master.start(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Master.Stop)
	s.Replica = &Redis{dir: t.TempDir(), bin: srv, extra: []string{"--replicaof", "127.0.0.1", fmt.Sprint(s.Master.Port)}}
	if err := s.Replica.start(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Replica.Stop)
	var addrs []string
	for range 3 {
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\nsentinel down-after-milliseconds %[1]s %[3]d\n"+
			"sentinel failover-timeout %[1]s 10000\nsentinel parallel-syncs %[1]s 1\n", MasterName, s.Master.Port, downAfter.Milliseconds())
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		r := &Redis{dir: dir, bin: sen, conf: conf}
		if err := r.start(0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Stop)
		s.Sentinels = append(s.Sentinels, r)
		addrs = append(addrs, r.Addr)
	}
	s.URL = "redis+sentinel://" + addrs[0] + "?master_name=" + MasterName + "&addr=" + strings.Join(addrs[1:], "&addr=")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep := redis.NewClient(&redis.Options{Addr: s.Replica.Addr, DisableIdentity: true})
	defer rep.Close()
	if err := poll(ctx, func() bool {
		info, err := rep.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	}); err != nil {
		t.Fatalf("the replica did not sync: %v", err)
	}
	for _, r := range s.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: r.Addr, DisableIdentity: true})
		err := poll(ctx, func() bool {
			m, err := sc.Master(ctx, MasterName).Result()
			return err == nil && m["num-other-sentinels"] == "2" && m["num-slaves"] == "1" && !strings.Contains(m["flags"], "down")
		})
		sc.Close()
		if err != nil {
			t.Fatalf("sentinel %s did not see the whole topology: %v", r.Addr, err)
		}
	}
	return s
}

// WatchSwitch subscribes to +switch-master on one sentinel and returns a channel
// that gets the new master's address once the sentinels announce a failover.
func (s *Sentinel) WatchSwitch(ctx context.Context) <-chan string {
	s.t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[1].Addr, DisableIdentity: true})
	ps := sc.Subscribe(ctx, "+switch-master")
	if _, err := ps.Receive(ctx); err != nil { // the subscription is in place
		s.t.Fatal(err)
	}
	out := make(chan string, 1)
	go func() {
		defer sc.Close()
		defer ps.Close()
		for {
			select {
			case m, ok := <-ps.Channel():
				if !ok {
					return
				}
				// "<name> <old ip> <old port> <new ip> <new port>"
				f := strings.Fields(m.Payload)
				if len(f) == 5 && f[0] == MasterName {
					out <- net.JoinHostPort(f[3], f[4])
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
