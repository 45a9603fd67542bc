package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// A company's outbound limits, shared by every gateway node: how many outbound
// calls it may have at once and how many it may start a second. Each call holds
// a slot (a member of the company's slot set, scored by when it lapses) that its
// node renews while the call lasts and releases at its end; a lost node's slots
// lapse after their TTL. Calls per second are a strict spacing (GCRA with no
// burst): a call may start when the previous one started at least 1/cps
// earlier, so no second ever holds more than cps starts.
//
//	cxco:{c1}:out:calls               ZSET    "<node>:<call id>" -> unix ms its slot lapses
//	cxco:{c1}:out:tat                 STRING  unix ms from which the next call may start (PX)

// ErrOutboundLimit: the company is at one of its outbound limits now.
var ErrOutboundLimit = errors.New("outbound limit reached")

// OutboundLimitError says which limit and when a call may fit.
type OutboundLimitError struct {
	Limit      string        // "concurrent_calls" or "calls_per_second"
	RetryAfter time.Duration // for calls per second; 0 for concurrency (a call must end first)
}

func (e *OutboundLimitError) Error() string {
	return fmt.Sprintf("outbound limit reached: %s (retry after %v)", e.Limit, e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrOutboundLimit) true.
func (e *OutboundLimitError) Unwrap() error { return ErrOutboundLimit }

// OutboundLimits are a company's outbound limits; zero means no limit.
type OutboundLimits struct {
	MaxConcurrent  int     `json:"max_concurrent_calls"`
	CallsPerSecond float64 `json:"calls_per_second"`
}

func keyOutCalls(cid int64) string { return prefix + "{c" + itoa(cid) + "}:out:calls" }
func keyOutTAT(cid int64) string   { return prefix + "{c" + itoa(cid) + "}:out:tat" }

// KEYS calls, tat; ARGV now ms, member, ttl ms, max concurrent, interval ms (float).
var outboundAcquire = redis.NewScript(`
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local max = tonumber(ARGV[4])
if max > 0 and redis.call('ZSCORE', KEYS[1], ARGV[2]) == false and redis.call('ZCARD', KEYS[1]) >= max then return {0, 0} end
local interval = tonumber(ARGV[5])
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tat > now then return {0, math.ceil(tat - now)} end
  redis.call('SET', KEYS[2], tostring(now + interval), 'PX', math.ceil(interval) + 1000)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
return {1, 0}`)

// KEYS calls; ARGV now ms, member, ttl ms.
var outboundRenew = redis.NewScript(`
if redis.call('ZSCORE', KEYS[1], ARGV[2]) == false then return 0 end
redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[1]) + tonumber(ARGV[3]), ARGV[2])
return 1`)

// OutboundSlot is one call's hold on its company's outbound limits.
type OutboundSlot struct {
	s      *Store
	cid    int64
	member string
	ttl    time.Duration
}

// AcquireOutbound takes a slot for a new outbound call of a company within
// its limits, or returns an *OutboundLimitError. The slot lapses after ttl
// unless renewed (Renew every third of it while the call lasts).
func (s *Store) AcquireOutbound(ctx context.Context, cid int64, callID string, lim OutboundLimits, ttl time.Duration) (*OutboundSlot, error) {
	member := s.node + ":" + callID
	interval := 0.0
	if lim.CallsPerSecond > 0 {
		interval = 1000 / lim.CallsPerSecond
	}
	res, err := outboundAcquire.Run(ctx, s.rdb, []string{keyOutCalls(cid), keyOutTAT(cid)},
		s.now().UnixMilli(), member, ttl.Milliseconds(), lim.MaxConcurrent, interval).Int64Slice()
	if err != nil {
		return nil, wrapRedis(err)
	}
	switch {
	case res[0] == 1:
		return &OutboundSlot{s: s, cid: cid, member: member, ttl: ttl}, nil
	case res[1] > 0:
		return nil, &OutboundLimitError{Limit: "calls_per_second", RetryAfter: time.Duration(res[1]) * time.Millisecond}
	}
	return nil, &OutboundLimitError{Limit: "concurrent_calls"}
}

// OutboundCalls is how many outbound calls of a company hold a slot now.
func (s *Store) OutboundCalls(ctx context.Context, cid int64) (int, error) {
	n, err := s.rdb.ZCount(ctx, keyOutCalls(cid), fmt.Sprint("(", s.now().UnixMilli()), "+inf").Result()
	return int(n), wrapRedis(err)
}

// Renew keeps the slot for another TTL. It fails with ErrNotFound when the
// slot lapsed (the node could not renew in time); the call may go on, but it
// no longer counts against the limit.
func (o *OutboundSlot) Renew(ctx context.Context) error {
	n, err := outboundRenew.Run(ctx, o.s.rdb, []string{keyOutCalls(o.cid)}, o.s.now().UnixMilli(), o.member, o.ttl.Milliseconds()).Int64()
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	return wrapRedis(err)
}

// Release gives the slot back at the call's end.
func (o *OutboundSlot) Release(ctx context.Context) error {
	return wrapRedis(o.s.rdb.ZRem(ctx, keyOutCalls(o.cid), o.member).Err())
}
