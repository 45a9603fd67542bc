package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cxco/gateway/store/redistest"
)

// TestNewClientURL: every URL form gives the right client; a cluster URL takes the
// slot-map refresh options, and bad values are refused with the option's name.
func TestNewClientURL(t *testing.T) {
	for _, tc := range []struct {
		name, url string
		interval  time.Duration // cluster only
		err       string
	}{
		{name: "single", url: "redis://127.0.0.1:6379/2"},
		{name: "sentinel", url: "redis+sentinel://127.0.0.1:26379?master_name=m&addr=127.0.0.1:26380"},
		{name: "cluster default refresh", url: "redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001", interval: 10 * time.Second},
		{name: "cluster refresh options", url: "redis+cluster://127.0.0.1:7000?state_reload_interval=3s&reload_on_error=false&addr=127.0.0.1:7001&max_redirects=5", interval: 3 * time.Second},
		{name: "cluster bad interval", url: "redis+cluster://127.0.0.1:7000?state_reload_interval=soon", err: "state_reload_interval"},
		{name: "cluster zero interval", url: "redis+cluster://127.0.0.1:7000?state_reload_interval=0s", err: "state_reload_interval"},
		{name: "cluster bad reload_on_error", url: "redis+cluster://127.0.0.1:7000?reload_on_error=maybe", err: "reload_on_error"},
		{name: "cluster unknown option", url: "redis+cluster://127.0.0.1:7000?colour=blue", err: "colour"},
		{name: "sentinel without master", url: "redis+sentinel://127.0.0.1:26379", err: "master_name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(tc.url)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if cc, ok := c.(*redis.ClusterClient); ok {
				o := cc.Options()
				if o.ClusterStateReloadInterval != tc.interval || len(o.Addrs) != 2 {
					t.Fatalf("cluster options: interval %s, addrs %v", o.ClusterStateReloadInterval, o.Addrs)
				}
				if strings.Contains(tc.url, "max_redirects=5") && o.MaxRedirects != 5 {
					t.Fatalf("go-redis options are lost: max_redirects %d", o.MaxRedirects)
				}
			} else if tc.interval != 0 {
				t.Fatalf("%T, want a cluster client", c)
			}
		})
	}
}

// TestCheckWritable: /readyz asks CheckWritable, not PING, because a Redis that
// answers PING may still refuse every write. A master demoted to a replica (what a
// failover does to an old master that comes back, or a REPLICAOF by mistake)
// answers PING and refuses writes with READONLY: CheckWritable says
// ErrUnavailable until it is a master again.
func TestCheckWritable(t *testing.T) {
	r1, r2 := redistest.StartRedis(t), redistest.StartRedis(t)
	ctx := Context(t, 30*time.Second)
	sealer, _ := NewSealer(GenerateSecretKey())
	s, err := Open(ctx, Options{URL: r1.URL, Sealer: sealer, NodeID: "gw-ro"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CheckWritable(ctx); err != nil {
		t.Fatalf("a master: %v", err)
	}
	admin := redis.NewClient(&redis.Options{Addr: r1.Addr})
	defer admin.Close()
	if err := admin.Do(ctx, "REPLICAOF", "127.0.0.1", r2.Port).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("a replica answers PING: %v", err)
	}
	if err := s.CheckWritable(ctx); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "READONLY") {
		t.Fatalf("a replica: CheckWritable says %v, want ErrUnavailable (READONLY)", err)
	}
	if err := admin.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckWritable(ctx); err != nil {
		t.Fatalf("a master again: %v", err)
	}
}
