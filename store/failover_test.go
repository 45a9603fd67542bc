package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cxco/gateway/store/redistest"
)

// outageProbe writes through the store every 20 ms (each write with its own short
// deadline, as an API request would) and records when writes started failing and
// when the first one succeeded again.
type outageProbe struct {
	firstFail, back time.Time
	fails           int
	other           error // a failure that is not ErrUnavailable
}

func probeWrites(ctx context.Context, s *Store, cid int64, stop <-chan struct{}) *outageProbe {
	p := &outageProbe{}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := s.UpdateCompany(wctx, cid, CompanyPatch{Name: ptr(fmt.Sprintf("Probe %d", i))})
		cancel()
		switch {
		case err == nil && !p.firstFail.IsZero():
			p.back = time.Now()
			return p
		case err != nil:
			if p.firstFail.IsZero() {
				p.firstFail = time.Now()
			}
			p.fails++
			if !errors.Is(err, ErrUnavailable) && p.other == nil {
				p.other = err
			}
		}
		select {
		case <-stop:
			return p
		case <-tick.C:
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestClusterMasterFailover kills, by pid, the Redis Cluster master that serves a
// company's hash slot while the store writes to it. Writes fail with
// ErrUnavailable (the API's 503) while the slot has no master, and succeed again
// soon after the replica takes over: the client reloads its slot map on the
// connection errors instead of waiting for its periodic refresh.
func TestClusterMasterFailover(t *testing.T) {
	c := redistest.StartCluster(t, time.Second)
	sealer, _ := NewSealer(GenerateSecretKey())
	ctx := context.Background()
	s, err := Open(ctx, Options{URL: c.URL, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	co, _, err := s.CreateCompany(ctx, "Failover Co", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	slot := c.Slot(keyCompany(co.ID))
	master := c.MasterOf(slot)
	if err := redistest.WaitReplicated(Context(t, 10*time.Second), master); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	res := make(chan *outageProbe, 1)
	master.Kill()
	killed := time.Now()
	// /readyz's question: a master is gone, so the cluster cannot take every write,
	// though PING still finds a live node two times in three.
	if err := s.CheckWritable(Context(t, 5*time.Second)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("CheckWritable with a master killed: %v, want ErrUnavailable", err)
	}
	go func() { res <- probeWrites(ctx, s, co.ID, stop) }()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	redisBack, err := c.WaitFailover(wctx, slot, master)
	if err != nil {
		close(stop)
		t.Fatalf("the cluster did not fail over: %v", err)
	}
	var p *outageProbe
	select {
	case p = <-res:
	case <-time.After(30 * time.Second):
		close(stop)
		p = <-res
	}
	if p.other != nil {
		t.Errorf("a write failed with %v, want ErrUnavailable", p.other)
	}
	if p.back.IsZero() {
		t.Fatalf("writes did not come back within 30 s of the cluster (%d failures)", p.fails)
	}
	// The target is 3 s; the bound is looser so a loaded machine does not fail it,
	// and still far below what the periodic refresh alone gives (about 8 s here).
	if d := p.back.Sub(redisBack); d > 5*time.Second {
		t.Errorf("writes came back %s after the cluster", d)
	}
	t.Logf("cluster failover: master killed; cluster back after %s; writes back after %s (%s after the cluster); %d writes failed",
		redisBack.Sub(killed).Round(time.Millisecond), p.back.Sub(killed).Round(time.Millisecond),
		p.back.Sub(redisBack).Round(time.Millisecond), p.fails)
}

// TestSentinelFailover kills, by pid, the master three sentinels watch while the
// store writes to it. Writes fail with ErrUnavailable until the sentinels promote
// the replica, and succeed again as soon as they announce it (+switch-master).
func TestSentinelFailover(t *testing.T) {
	sn := redistest.StartSentinel(t, time.Second)
	sealer, _ := NewSealer(GenerateSecretKey())
	ctx := context.Background()
	s, err := Open(ctx, Options{URL: sn.URL, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	co, _, err := s.CreateCompany(ctx, "Sentinel Co", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switched := sn.WatchSwitch(wctx)
	if err := redistest.WaitReplicated(wctx, sn.Master); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	res := make(chan *outageProbe, 1)
	sn.Master.Kill()
	killed := time.Now()
	go func() { res <- probeWrites(ctx, s, co.ID, stop) }()
	var redisBack time.Time
	select {
	case addr := <-switched:
		redisBack = time.Now()
		if addr != sn.Replica.Addr {
			t.Fatalf("the sentinels made %s the master, want the replica %s", addr, sn.Replica.Addr)
		}
	case <-wctx.Done():
		close(stop)
		t.Fatal("the sentinels did not fail over within 30 s")
	}
	var p *outageProbe
	select {
	case p = <-res:
	case <-time.After(30 * time.Second):
		close(stop)
		p = <-res
	}
	if p.other != nil {
		t.Errorf("a write failed with %v, want ErrUnavailable", p.other)
	}
	if p.back.IsZero() {
		t.Fatalf("writes did not come back within 30 s of the switch (%d failures)", p.fails)
	}
	if d := p.back.Sub(redisBack); d > 5*time.Second {
		t.Errorf("writes came back %s after the switch", d)
	}
	t.Logf("sentinel failover: master killed; +switch-master after %s; writes back after %s (%s after the switch); %d writes failed",
		redisBack.Sub(killed).Round(time.Millisecond), p.back.Sub(killed).Round(time.Millisecond),
		p.back.Sub(redisBack).Round(time.Millisecond), p.fails)
}
