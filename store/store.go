// Package store persists everything the gateway knows — companies, keys, agents,
// numbers, conversations, transcripts, usage, webhooks and the event outbox — on
// Redis through go-redis v9.
//
// Every key is listed in keys.go. Keys that belong to one company share the hash tag
// {c<id>}, so every multi-key change of a company (a status change and its outbox
// event, a conversation's end and its usage counters) is one atomic MULTI/EXEC or
// script that Redis Cluster accepts. The number pool lives under {pool}.
//
// With no Redis URL the store starts an embedded, in-process Redis-compatible server
// (miniredis) and runs the very same code over it.
package store

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Store is the gateway's persistence. It is safe for concurrent use.
type Store struct {
	rdb      redis.UniversalClient
	embedded *miniredis.Miniredis
	sealer   *Sealer
	log      *slog.Logger
	now      func() time.Time
	spool    atomic.Pointer[Spool]
	// onNotJSON counts writes that held values JSON cannot hold (OnNotJSON).
	onNotJSON atomic.Pointer[func(what string)]
	// onCorrected is told of each node_lost end this process corrects (OnNodeLostCorrected).
	onCorrected atomic.Pointer[func(*Conversation)]
	node        string // this process's node id: its conversations are listed under it (nodes.go)
}

// Options configure Open.
type Options struct {
	// URL is a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL.
	// Empty starts the embedded in-process server.
	URL string
	// Sealer encrypts provider credentials and webhook secrets at rest.
	Sealer *Sealer
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NodeID names this gateway node: the conversations it creates are its own
	// until they end, and are closed by the others if it is lost (nodes.go).
	// Empty: no ownership is recorded (tools and tests).
	NodeID string
}

// Open connects to Redis (or starts the embedded server), checks the connection
// and prepares the static data (the default voice catalogue).
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Sealer == nil {
		return nil, errors.New("store: a Sealer is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{sealer: opts.Sealer, log: log, now: opts.Now, node: opts.NodeID}
	if opts.Logger != nil {
		redis.SetLogger(redisLog{opts.Logger}) // go-redis has one logger per process
	}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.URL == "" {
		m := miniredis.NewMiniRedis()
		m.ClockTTL(true)
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("store: start embedded server: %w", err)
		}
		// go-redis reaches it over TCP on loopback; a password only this process
		// knows keeps other local users out.
		password := rand.Text()
		m.RequireAuth(password)
		s.embedded = m
		o := &redis.Options{Addr: m.Addr(), Password: password, PoolSize: 64}
		smallBuffers(&o.ReadBufferSize, &o.WriteBufferSize, &o.PipelineReadBufferSize, &o.PipelineWriteBufferSize)
		s.rdb = redis.NewClient(o)
		log.Warn("no Redis URL given: using the embedded in-process store; all data is lost when the process exits", "addr", m.Addr())
	} else {
		rdb, err := NewClient(opts.URL)
		if err != nil {
			return nil, err
		}
		s.rdb = rdb
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: %w: %w", ErrUnavailable, err)
	}
	if err := s.seedVoices(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.seedOpenAIVoices(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// redisLog passes go-redis's own log lines (a failed dial, a sentinel's new
// master, ...) to the gateway's log at debug level: what matters of them the store
// reports itself, as errors of the calls that failed.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// NewClient builds a go-redis UniversalClient from a URL:
//
//	redis://[user:pass@]host:port[/db]          a single node (rediss:// for TLS)
//	redis://host:port?master_name=m&addr=h2:p   Sentinel (also redis+sentinel://)
//	redis+cluster://host:port?addr=h2:p         Cluster (also rediss+cluster://)
//
// Every go-redis URL option is accepted. A cluster URL also takes
//
//	state_reload_interval=10s   how often the slot map is refreshed in calm weather
//	                            (go-redis's ClusterStateReloadInterval; ours is 10 s)
//	reload_on_error=true        refresh it at once when a node fails to answer
//	                            (a connection refused, a timeout, CLUSTERDOWN, ...)
//
// A master that dies refuses connections rather than redirecting, so without the
// refresh on errors the client keeps sending its slots to the dead address until
// the periodic refresh: the whole window between the replica's promotion and that
// refresh would be an outage for no reason.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("store: redis URL %q has no scheme", rawURL)
	}
	base, mode, _ := strings.Cut(scheme, "+")
	if base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("store: redis URL scheme %q: want redis:// or rediss://", scheme)
	}
	u := base + "://" + rest
	if mode == "" && strings.Contains(rest, "master_name=") {
		mode = "sentinel"
	}
	switch mode {
	case "":
		o, err := redis.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		failFast(&o.DialTimeout, &o.MaxRetries, &o.DialerRetries)
		smallBuffers(&o.ReadBufferSize, &o.WriteBufferSize, &o.PipelineReadBufferSize, &o.PipelineWriteBufferSize)
		return redis.NewClient(o), nil
	case "sentinel":
		o, err := redis.ParseFailoverURL(u)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		if o.MasterName == "" {
			return nil, errors.New("store: a sentinel URL needs ?master_name=")
		}
		failFast(&o.DialTimeout, &o.MaxRetries, &o.DialerRetries)
		smallBuffers(&o.ReadBufferSize, &o.WriteBufferSize, &o.PipelineReadBufferSize, &o.PipelineWriteBufferSize)
		return redis.NewFailoverClient(o), nil
	case "cluster":
		u, interval, onError, err := clusterParams(u)
		if err != nil {
			return nil, err
		}
		o, err := redis.ParseClusterURL(u)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		if base == "rediss" && o.TLSConfig == nil {
			host, _, _ := net.SplitHostPort(o.Addrs[0])
			o.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		failFast(&o.DialTimeout, &o.MaxRetries, &o.DialerRetries)
		smallBuffers(&o.ReadBufferSize, &o.WriteBufferSize, &o.PipelineReadBufferSize, &o.PipelineWriteBufferSize)
		o.ClusterStateReloadInterval = interval
		c := redis.NewClusterClient(o)
		if onError {
			// Node clients, not the cluster client: a WATCH/MULTI transaction runs on
			// the node's client and its errors never pass the cluster's hooks.
			h := reloadHook{reload: func() { c.ReloadState(context.Background()) }}
			c.OnNewNode(func(n *redis.Client) { n.AddHook(h) })
		}
		return c, nil
	default:
		return nil, fmt.Errorf("store: redis URL scheme %q: unknown mode %q", scheme, mode)
	}
}

// clusterParams takes our own options out of a cluster URL (go-redis refuses
// options it does not know).
func clusterParams(u string) (rest string, interval time.Duration, onError bool, err error) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", 0, false, fmt.Errorf("store: %w", err)
	}
	q := pu.Query()
	interval, onError = 10*time.Second, true
	if v := q.Get("state_reload_interval"); v != "" {
		if interval, err = time.ParseDuration(v); err != nil || interval <= 0 {
			return "", 0, false, fmt.Errorf("store: redis URL: state_reload_interval=%q: want a positive duration like 10s", v)
		}
	}
	if v := q.Get("reload_on_error"); v != "" {
		if onError, err = strconv.ParseBool(v); err != nil {
			return "", 0, false, fmt.Errorf("store: redis URL: reload_on_error=%q: want true or false", v)
		}
	}
	q.Del("state_reload_interval")
	q.Del("reload_on_error")
	pu.RawQuery = q.Encode()
	return pu.String(), interval, onError, nil
}

// reloadHook asks the cluster client to refresh its slot map when a node fails
// in a way that may mean the cluster changed under it. go-redis coalesces the
// requests (one reload at a time, at most one every 200 ms).
type reloadHook struct{ reload func() }

// topologyError: a dial or network failure, a timeout, or a reply saying the node
// is not (or no longer) the master it was taken for.
func topologyError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.TxFailedErr) || errors.Is(err, context.Canceled) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"CLUSTERDOWN", "MASTERDOWN", "READONLY", "LOADING", "TRYAGAIN"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false // an ordinary reply: WRONGTYPE, NOSCRIPT, a script error, ...
	}
	return true
}

func (h reloadHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			h.reload()
		}
		return c, err
	}
}

func (h reloadHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if topologyError(err) {
			h.reload()
		}
		return err
	}
}

func (h reloadHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if topologyError(err) {
			h.reload()
			return err
		}
		for _, c := range cmds {
			if topologyError(c.Err()) {
				h.reload()
				break
			}
		}
		return err
	}
}

// failFast makes an outage show at once (the API answers 503 instead of hanging):
// a short dial timeout, one retry and two dial attempts per connection, unless the
// URL set its own.
func failFast(dial *time.Duration, retries, dialRetries *int) {
	if *dial == 0 {
		*dial = time.Second
	}
	if *retries == 0 {
		*retries = 1
	}
	if *dialRetries == 0 {
		*dialRetries = 2
	}
}

// Connection buffers: go-redis gives every connection a 32 KiB read and a 32 KiB
// write buffer, and those of its pipeline pool 128 KiB each; with the connections a
// node's call rate opens that was about 10 KiB of every call's memory at 500 calls
// (the pools grow with the load). Our commands and replies are a few KiB (a
// conversation, a transcript entry, a page of records); a longer reply is read in
// more reads, not refused. Pipeline sizes a URL sets (pipeline_read_buffer_size,
// pipeline_write_buffer_size) are kept.
const (
	connBuffer     = 4 << 10
	pipelineBuffer = 16 << 10
)

func smallBuffers(read, write, pipelineRead, pipelineWrite *int) {
	for _, p := range []struct {
		v   *int
		def int
	}{{read, connBuffer}, {write, connBuffer}, {pipelineRead, pipelineBuffer}, {pipelineWrite, pipelineBuffer}} {
		if *p.v == 0 {
			*p.v = p.def
		}
	}
}

// Embedded reports whether the store runs on the in-process server.
func (s *Store) Embedded() bool { return s.embedded != nil }

// Redis gives the underlying client (for health checks and tests).
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return wrapRedis(err)
	}
	return nil
}

// CheckWritable says whether Redis takes writes now: on a cluster, every master
// answers and says cluster_state:ok (a cluster missing a master refuses writes to
// all slots by default); otherwise a short-lived probe key can be written (a
// demoted master answers PING but refuses writes with READONLY).
func (s *Store) CheckWritable(ctx context.Context) error {
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			info, err := m.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s: cluster_state is not ok", m.Options().Addr)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil
	}
	return wrapRedis(s.rdb.Set(ctx, prefix+"probe:"+s.node, "1", 10*time.Second).Err())
}

// Close releases the client and stops the embedded server.
func (s *Store) Close() error {
	err := s.rdb.Close()
	if s.embedded != nil {
		s.embedded.Close()
	}
	return err
}

// Now is the store's clock, in UTC truncated to the second as every stored timestamp is.
func (s *Store) Now() time.Time { return s.now().UTC().Truncate(time.Second) }

// wrapRedis turns connection failures into ErrUnavailable so callers answer 503.
func wrapRedis(err error) error {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotJSON) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var netErr net.Error
	var opErr *net.OpError
	msg := err.Error()
	if errors.As(err, &netErr) || errors.As(err, &opErr) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		strings.HasPrefix(msg, "LOADING") || strings.HasPrefix(msg, "CLUSTERDOWN") || strings.HasPrefix(msg, "MASTERDOWN") ||
		strings.HasPrefix(msg, "READONLY") || strings.Contains(msg, "pool timeout") {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("store: %w", err)
}
