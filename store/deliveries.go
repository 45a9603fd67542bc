package store

// Webhook deliveries: the fan-out of a company's outbox to its subscribed webhooks,
// one delivery record per (event, webhook), the due queue with its leases, and what
// the API shows of them. The worker in control/webhooks drives these functions; it
// owns the HTTP side and the schedule, the store owns every Redis step.
//
// All of it lives under the company's hash tag {c<cid>} (see keys.go), so each step
// below is one Lua script on one hash slot:
//
//   - fan-out: for a batch of outbox entries, create the delivery records and XACK the
//     entries in one script, and only for entries still pending in the consumer group:
//     the group's pending list is the idempotency token, so an entry claimed by two
//     nodes (XAUTOCLAIM after a stall) still yields one record per webhook.
//   - claim: due deliveries get a lease (lease_until, lease_token on the record, and
//     their due score moved to the lease end) in one script, so two nodes never
//     attempt the same delivery at once, and a node that dies mid-attempt leaves a
//     delivery that is claimable again when the lease runs out.
//   - finish: the outcome of an attempt is recorded only while the caller still holds
//     the lease (its token), together with the next due time or the final status.
//
// Times inside the scripts come from the Redis server's clock (TIME), so leases and
// due times mean the same on every node whatever their clocks say.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed"
)

// OutboxGroup is the consumer group of the webhook worker on every company outbox.
const OutboxGroup = "webhooks"

func keyDeliverySeq() string                    { return keySeq("delivery") }
func keyDeliveryPrefix(cid int64) string        { return company(cid) + "dlv:" }
func keyDelivery(cid, did int64) string         { return keyDeliveryPrefix(cid) + itoa(did) }
func keyDeliveriesDue(cid int64) string         { return company(cid) + "dlv:due" }
func keyDeliveriesParked(cid, wid int64) string { return company(cid) + "dlv:parked:" + itoa(wid) }
func keyParkedHooks(cid int64) string           { return company(cid) + "dlv:parkedhooks" }
func keyWebhookDeliveries(cid, wid int64) string {
	return company(cid) + "webhook:" + itoa(wid) + ":dlvs"
}

// Delivery is one event on its way to one webhook.
type Delivery struct {
	ID             int64
	CompanyID      int64
	WebhookID      int64
	EventID        string
	EventType      string
	Status         string
	Attempts       int
	LastStatusCode *int
	LastError      *string
	// NextAttemptAt is when the next attempt is due; nil once finished, and while the
	// delivery is parked because its webhook is disabled.
	NextAttemptAt *time.Time
	LastAttemptAt *time.Time
	Parked        bool
	CreatedAt     time.Time
	UpdatedAt     time.Time
	// Payload is the request body, the event exactly as recorded (set by claims and
	// by GetDelivery, not by lists).
	Payload []byte

	leaseToken string
}

// OutboxEntry is one event read from a company's outbox.
type OutboxEntry struct {
	StreamID  string
	CompanyID int64
	EventID   string
	Type      string
	CreatedAt time.Time
	Payload   []byte // the event JSON, as delivered; nil when the entry was trimmed away
}

func msTime(v string) *time.Time {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || v == "" {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

// parseDelivery reads a record from HGETALL/HMGET field values.
func parseDelivery(cid int64, f map[string]string) *Delivery {
	d := &Delivery{ID: parseID(f["id"]), CompanyID: cid, WebhookID: parseID(f["webhook_id"]), EventID: f["event_id"],
		EventType: f["event_type"], Status: f["status"], NextAttemptAt: msTime(f["next_attempt_at"]),
		LastAttemptAt: msTime(f["last_attempt_at"]), Parked: f["parked"] == "1", leaseToken: f["lease_token"]}
	d.Attempts, _ = strconv.Atoi(f["attempts"])
	if c, err := strconv.Atoi(f["last_status_code"]); err == nil && c > 0 {
		d.LastStatusCode = &c
	}
	if e := f["last_error"]; e != "" {
		d.LastError = &e
	}
	if t := msTime(f["created_at"]); t != nil {
		d.CreatedAt = *t
	}
	if t := msTime(f["updated_at"]); t != nil {
		d.UpdatedAt = *t
	}
	if p, ok := f["payload"]; ok {
		d.Payload = []byte(p)
	}
	return d
}

// flatToMap turns a Lua HGETALL reply into a map.
func flatToMap(v any) map[string]string {
	arr, _ := v.([]any)
	m := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		k, _ := arr[i].(string)
		val, _ := arr[i+1].(string)
		m[k] = val
	}
	return m
}

// luaNow is the Redis server's clock in unix milliseconds.
const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// fanOutScript: KEYS[1] outbox, KEYS[2] due set. ARGV: company key prefix, group,
// number of entries, then per entry: stream id, event id, type, payload, number of
// webhooks, and that many (webhook id, delivery id) pairs. An entry that is no longer
// pending in the group (another node fanned it out) is skipped whole.
var fanOutScript = redis.NewScript(luaNow + `
local p, group, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local i, created = 4, 0
for e = 1, n do
  local sid, evt, typ, payload, m = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], tonumber(ARGV[i+4])
  i = i + 5
  local pending = #redis.call('XPENDING', KEYS[1], group, sid, sid, 1) == 1
  for j = 1, m do
    local wid, did = ARGV[i], ARGV[i+1]
    i = i + 2
    if pending then
      redis.call('HSET', p .. 'dlv:' .. did, 'id', did, 'webhook_id', wid, 'event_id', evt, 'event_type', typ,
        'status', 'pending', 'attempts', 0, 'next_attempt_at', now, 'created_at', now, 'updated_at', now, 'payload', payload)
      redis.call('ZADD', KEYS[2], now, did)
      local idx = p .. 'webhook:' .. wid .. ':dlvs'
      redis.call('ZADD', idx, did, did)
      for _, old in ipairs(redis.call('ZRANGE', idx, 0, 2)) do
        if redis.call('EXISTS', p .. 'dlv:' .. old) == 0 then redis.call('ZREM', idx, old) end
      end
      created = created + 1
    end
  end
  if pending then redis.call('XACK', KEYS[1], group, sid) end
end
return created`)

// claimScript: KEYS[1] due set. ARGV: record key prefix, limit, lease ms, token prefix.
// Returns {now, next due score or -1, record...} where each record is HGETALL.
var claimScript = redis.NewScript(luaNow + `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {now, -1}
for _, id in ipairs(ids) do
  local k = ARGV[1] .. id
  local f = redis.call('HMGET', k, 'status', 'lease_until', 'parked')
  if f[1] ~= 'pending' or f[3] == '1' then
    redis.call('ZREM', KEYS[1], id)
  elseif f[2] and tonumber(f[2]) > now then
    redis.call('ZADD', KEYS[1], f[2], id)
  else
    local lease = now + tonumber(ARGV[3])
    redis.call('HSET', k, 'lease_until', lease, 'lease_token', ARGV[4] .. id)
    redis.call('ZADD', KEYS[1], lease, id)
    out[#out + 1] = redis.call('HGETALL', k)
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 2 then out[2] = tonumber(first[2]) end
return out`)

// finishScript: KEYS[1] record, KEYS[2] due set, KEYS[3] the webhook's parked set,
// KEYS[4] parked webhooks, KEYS[5] the webhook's delivery index. ARGV: lease token,
// outcome, status code, error, retention seconds, delivery id, webhook id, then the
// retry gaps in ms. Returns {applied (0/1), next due ms or -1}.
var finishScript = redis.NewScript(luaNow + `
if redis.call('HGET', KEYS[1], 'lease_token') ~= ARGV[1] then return {0, -1} end
local outcome, id = ARGV[2], ARGV[6]
if outcome == 'drop' then
  redis.call('DEL', KEYS[1], KEYS[5])
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  return {1, -1}
end
redis.call('HDEL', KEYS[1], 'lease_until', 'lease_token')
if outcome == 'release' then
  redis.call('ZADD', KEYS[2], now, id)
  return {1, now}
end
if outcome == 'park' then
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[1], 'next_attempt_at')
  redis.call('HSET', KEYS[1], 'parked', '1', 'updated_at', now)
  redis.call('ZADD', KEYS[3], id, id)
  redis.call('SADD', KEYS[4], ARGV[7])
  return {1, -1}
end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_status_code', ARGV[3], 'last_error', ARGV[4], 'updated_at', now, 'last_attempt_at', now)
if outcome == 'ok' then
  redis.call('HSET', KEYS[1], 'status', 'succeeded')
  redis.call('HDEL', KEYS[1], 'next_attempt_at')
  redis.call('ZREM', KEYS[2], id)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return {1, -1}
end
if n <= #ARGV - 7 then
  local nxt = now + tonumber(ARGV[7 + n])
  redis.call('HSET', KEYS[1], 'next_attempt_at', nxt)
  redis.call('ZADD', KEYS[2], nxt, id)
  return {1, nxt}
end
redis.call('HSET', KEYS[1], 'status', 'failed')
redis.call('HDEL', KEYS[1], 'next_attempt_at')
redis.call('ZREM', KEYS[2], id)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {1, -1}`)

// redeliverScript: KEYS[1] record, KEYS[2] due set, KEYS[3] the webhook's parked set.
// ARGV: webhook id, delivery id. Returns 1, or 0 (not this webhook's), -1 (an attempt
// is under way).
var redeliverScript = redis.NewScript(luaNow + `
local f = redis.call('HMGET', KEYS[1], 'webhook_id', 'lease_until')
if f[1] ~= ARGV[1] then return 0 end
if f[2] and tonumber(f[2]) > now then return -1 end
redis.call('HDEL', KEYS[1], 'parked', 'lease_until', 'lease_token')
redis.call('HSET', KEYS[1], 'status', 'pending', 'next_attempt_at', now, 'updated_at', now)
redis.call('PERSIST', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[2])
return 1`)

// resumeScript: KEYS[1] the webhook's parked set, KEYS[2] due set, KEYS[3] parked
// webhooks. ARGV: record key prefix, webhook id, batch size. Returns how many resumed.
var resumeScript = redis.NewScript(luaNow + `
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local k = ARGV[1] .. id
  if redis.call('HGET', k, 'parked') == '1' then
    redis.call('HDEL', k, 'parked')
    redis.call('HSET', k, 'next_attempt_at', now, 'updated_at', now)
    redis.call('ZADD', KEYS[2], now, id)
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return #ids`)

// OutboxCompanies lists the companies whose outbox the worker reads.
func (s *Store) OutboxCompanies(ctx context.Context) ([]int64, error) {
	res, err := s.rdb.SMembers(ctx, keyOutboxCompanies()).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	return idsOf(res), nil
}

func parseEntry(cid int64, m redis.XMessage) OutboxEntry {
	e := OutboxEntry{StreamID: m.ID, CompanyID: cid}
	e.EventID, _ = m.Values["id"].(string)
	e.Type, _ = m.Values["type"].(string)
	if p, ok := m.Values["event"].(string); ok {
		e.Payload = []byte(p)
		var head struct {
			CreatedAt time.Time `json:"created_at"`
		}
		if json.Unmarshal(e.Payload, &head) == nil {
			e.CreatedAt = head.CreatedAt
		}
	}
	return e
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }

// ReadOutbox reads up to count new events of each company for consumer, with one
// pipelined XREADGROUP per company. fromStart lists the companies whose reading starts
// at the consumer's own pending entries (after a restart or a failed fan-out) instead
// of new ones. A company without the group yet gets it, from the start of its outbox.
func (s *Store) ReadOutbox(ctx context.Context, consumer string, cids []int64, count int, fromStart map[int64]bool) (map[int64][]OutboxEntry, error) {
	cmds := make([]*redis.XStreamSliceCmd, len(cids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, cid := range cids {
			id := ">"
			if fromStart[cid] {
				id = "0"
			}
			cmds[i] = p.XReadGroup(ctx, &redis.XReadGroupArgs{Group: OutboxGroup, Consumer: consumer,
				Streams: []string{keyOutbox(cid), id}, Count: int64(count), Block: -1})
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && !isNoGroup(err) {
		return nil, wrapRedis(err)
	}
	out := map[int64][]OutboxEntry{}
	for i, cid := range cids {
		res, err := cmds[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case isNoGroup(err):
			if err := s.rdb.XGroupCreateMkStream(ctx, keyOutbox(cid), OutboxGroup, "0").Err(); err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
				return nil, wrapRedis(err)
			}
			continue
		case err != nil:
			return nil, wrapRedis(err)
		}
		for _, st := range res {
			for _, m := range st.Messages {
				out[cid] = append(out[cid], parseEntry(cid, m))
			}
		}
	}
	return out, nil
}

// ClaimStaleOutbox takes over outbox entries another consumer read but has not fanned
// out for minIdle (a node that died between reading and fanning out).
func (s *Store) ClaimStaleOutbox(ctx context.Context, cid int64, consumer string, minIdle time.Duration, count int) ([]OutboxEntry, error) {
	msgs, _, err := s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: keyOutbox(cid), Group: OutboxGroup,
		MinIdle: minIdle, Start: "0-0", Count: int64(count), Consumer: consumer}).Result()
	if errors.Is(err, redis.Nil) || isNoGroup(err) {
		return nil, nil
	}
	if err != nil {
		return nil, wrapRedis(err)
	}
	out := make([]OutboxEntry, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, parseEntry(cid, m))
	}
	return out, nil
}

// subscribed says whether the webhook gets an event: active, subscribed to its type,
// and registered no later than the event (to the second: timestamps are stored so).
func subscribed(w *Webhook, e OutboxEntry) bool {
	if w.Status != WebhookActive || (!e.CreatedAt.IsZero() && w.CreatedAt.After(e.CreatedAt)) {
		return false
	}
	for _, t := range w.Events {
		if t == e.Type {
			return true
		}
	}
	return false
}

// FanOut creates one pending delivery per entry and subscribed webhook and acknowledges
// the entries, atomically and at most once per entry (see fanOutScript). hooks are the
// company's webhooks, read just before. It returns how many deliveries it created.
func (s *Store) FanOut(ctx context.Context, cid int64, entries []OutboxEntry, hooks []*Webhook) (int, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	matches := make([][]*Webhook, len(entries))
	need := 0
	for i, e := range entries {
		if e.Payload == nil {
			continue
		}
		for _, w := range hooks {
			if subscribed(w, e) {
				matches[i] = append(matches[i], w)
			}
		}
		need += len(matches[i])
	}
	var next int64
	if need > 0 {
		last, err := s.rdb.IncrBy(ctx, keyDeliverySeq(), int64(need)).Result()
		if err != nil {
			return 0, wrapRedis(err)
		}
		next = last - int64(need) + 1
	}
	args := make([]any, 0, 3+len(entries)*5+need*2)
	args = append(args, company(cid), OutboxGroup, len(entries))
	for i, e := range entries {
		args = append(args, e.StreamID, e.EventID, e.Type, string(e.Payload), len(matches[i]))
		for _, w := range matches[i] {
			args = append(args, w.ID, next)
			next++
		}
	}
	n, err := fanOutScript.Run(ctx, s.rdb, []string{keyOutbox(cid), keyDeliveriesDue(cid)}, args...).Int()
	if err != nil {
		return 0, wrapRedis(err)
	}
	return n, nil
}

// EarliestDue returns, for each company with pending deliveries, the unix ms at which
// the first one is due (or its lease ends), and the Redis server's clock.
func (s *Store) EarliestDue(ctx context.Context, cids []int64) (map[int64]int64, int64, error) {
	cmds := make([]*redis.ZSliceCmd, len(cids))
	var tc *redis.TimeCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		tc = p.Time(ctx)
		for i, cid := range cids {
			cmds[i] = p.ZRangeWithScores(ctx, keyDeliveriesDue(cid), 0, 0)
		}
		return nil
	})
	if err != nil {
		return nil, 0, wrapRedis(err)
	}
	out := map[int64]int64{}
	for i, cid := range cids {
		if z := cmds[i].Val(); len(z) == 1 {
			out[cid] = int64(z[0].Score)
		}
	}
	return out, tc.Val().UnixMilli(), nil
}

// ClaimDeliveries leases up to limit due deliveries of a company for lease. token
// must be unique to this claim (the records carry it plus their id). It returns the
// leased deliveries, the unix ms at which the company's next delivery is due (-1:
// none) and the Redis server's clock.
func (s *Store) ClaimDeliveries(ctx context.Context, cid int64, limit int, lease time.Duration, token string) ([]*Delivery, int64, int64, error) {
	res, err := claimScript.Run(ctx, s.rdb, []string{keyDeliveriesDue(cid)}, keyDeliveryPrefix(cid), limit,
		lease.Milliseconds(), token+":").Slice()
	if err != nil {
		return nil, 0, 0, wrapRedis(err)
	}
	if len(res) < 2 {
		return nil, 0, 0, fmt.Errorf("store: claim returned %d values", len(res))
	}
	now, _ := res[0].(int64)
	next, _ := res[1].(int64)
	out := make([]*Delivery, 0, len(res)-2)
	for _, r := range res[2:] {
		out = append(out, parseDelivery(cid, flatToMap(r)))
	}
	return out, next, now, nil
}

// Outcome is what became of a claimed delivery.
type Outcome string

// Outcomes of FinishDelivery.
const (
	// OutcomeSucceeded: the endpoint answered 2xx.
	OutcomeSucceeded Outcome = "ok"
	// OutcomeFailed: the attempt failed; the next one follows the schedule, or the
	// delivery fails when the schedule is used up.
	OutcomeFailed Outcome = "fail"
	// OutcomePark: the webhook is disabled; the delivery waits, unattempted, until
	// it is active again.
	OutcomePark Outcome = "park"
	// OutcomeDrop: the webhook is gone; the delivery is deleted.
	OutcomeDrop Outcome = "drop"
	// OutcomeRelease: not attempted (shutting down); due again now, attempt not counted.
	OutcomeRelease Outcome = "release"
)

// Attempt is the result of one attempt, for FinishDelivery.
type Attempt struct {
	Outcome    Outcome
	StatusCode int    // 0: no HTTP response
	Error      string // "" on success
}

// FinishDelivery records what became of a delivery claimed with ClaimDeliveries.
// retries are the gaps after the 1st, 2nd, ... failed attempt; retention is how long a
// finished delivery stays readable. It reports whether the caller still held the
// lease (if not, nothing was written: another node has the delivery now) and the unix
// ms of the next attempt (-1: none).
func (s *Store) FinishDelivery(ctx context.Context, d *Delivery, a Attempt, retries []time.Duration, retention time.Duration) (bool, int64, error) {
	code := ""
	if a.StatusCode > 0 {
		code = strconv.Itoa(a.StatusCode)
	}
	args := make([]any, 0, 7+len(retries))
	args = append(args, d.leaseToken, string(a.Outcome), code, a.Error, max(1, int64(retention/time.Second)), d.ID, d.WebhookID)
	for _, r := range retries {
		args = append(args, r.Milliseconds())
	}
	cid := d.CompanyID
	res, err := finishScript.Run(ctx, s.rdb, []string{keyDelivery(cid, d.ID), keyDeliveriesDue(cid),
		keyDeliveriesParked(cid, d.WebhookID), keyParkedHooks(cid), keyWebhookDeliveries(cid, d.WebhookID)}, args...).Int64Slice()
	if err != nil {
		return false, 0, wrapRedis(err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("store: finish returned %d values", len(res))
	}
	return res[0] == 1, res[1], nil
}

// ParkedWebhooks lists, per company, the webhooks that have parked deliveries.
func (s *Store) ParkedWebhooks(ctx context.Context, cids []int64) (map[int64][]int64, error) {
	cmds := make([]*redis.StringSliceCmd, len(cids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, cid := range cids {
			cmds[i] = p.SMembers(ctx, keyParkedHooks(cid))
		}
		return nil
	})
	if err != nil {
		return nil, wrapRedis(err)
	}
	out := map[int64][]int64{}
	for i, cid := range cids {
		if ids := idsOf(cmds[i].Val()); len(ids) > 0 {
			out[cid] = ids
		}
	}
	return out, nil
}

// ResumeParked makes up to batch parked deliveries of a webhook due now (it is
// active again, or gone: then the worker drops them). It returns how many it moved.
func (s *Store) ResumeParked(ctx context.Context, cid, wid int64, batch int) (int, error) {
	n, err := resumeScript.Run(ctx, s.rdb, []string{keyDeliveriesParked(cid, wid), keyDeliveriesDue(cid), keyParkedHooks(cid)},
		keyDeliveryPrefix(cid), wid, batch).Int()
	return n, wrapRedis(err)
}

// GetDelivery reads a delivery of the company's webhook; another webhook's (or
// company's) is ErrNotFound.
func (s *Store) GetDelivery(ctx context.Context, cid, wid, did int64) (*Delivery, error) {
	f, err := s.rdb.HGetAll(ctx, keyDelivery(cid, did)).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	if len(f) == 0 || parseID(f["webhook_id"]) != wid {
		return nil, ErrNotFound
	}
	return parseDelivery(cid, f), nil
}

var deliveryListFields = []string{"id", "webhook_id", "event_id", "event_type", "status", "attempts", "last_status_code",
	"last_error", "next_attempt_at", "last_attempt_at", "parked", "created_at", "updated_at"}

// ListDeliveries pages through a webhook's deliveries, newest first. Deliveries that
// finished longer ago than the worker's retention are gone.
func (s *Store) ListDeliveries(ctx context.Context, cid, wid, cursor int64, limit int) (Page[Delivery], error) {
	idx := keyWebhookDeliveries(cid, wid)
	load := func(ids []int64) ([]*Delivery, error) {
		cmds, err := pipelined(ctx, s, len(ids), func(p redis.Pipeliner, i int) *redis.SliceCmd {
			return p.HMGet(ctx, keyDelivery(cid, ids[i]), deliveryListFields...)
		})
		if err != nil {
			return nil, err
		}
		var out []*Delivery
		var gone []any
		for i, c := range cmds {
			vals := c.Val()
			f := make(map[string]string, len(vals))
			for j, v := range vals {
				if str, ok := v.(string); ok {
					f[deliveryListFields[j]] = str
				}
			}
			if f["id"] == "" {
				gone = append(gone, ids[i])
				continue
			}
			out = append(out, parseDelivery(cid, f))
		}
		if len(gone) > 0 {
			_ = s.rdb.ZRem(ctx, idx, gone...).Err() // expired: forget them
		}
		return out, nil
	}
	return pageLoaded(ctx, s, idx, cursor, limit, 0, load, nil, func(d *Delivery) int64 { return d.ID })
}

// Redeliver makes a delivery due now, whatever its status: a pending one is attempted
// at once, a finished one gets one more attempt (retries then follow the schedule
// from its attempt count, so a failed delivery that fails again is failed again).
// It is ErrNotFound for another webhook's delivery, and a conflict while an attempt
// is under way.
func (s *Store) Redeliver(ctx context.Context, cid, wid, did int64) (*Delivery, error) {
	n, err := redeliverScript.Run(ctx, s.rdb, []string{keyDelivery(cid, did), keyDeliveriesDue(cid), keyDeliveriesParked(cid, wid)},
		wid, did).Int()
	if err != nil {
		return nil, wrapRedis(err)
	}
	switch n {
	case 0:
		return nil, ErrNotFound
	case -1:
		return nil, conflict(fmt.Sprintf("delivery %d is being attempted right now; try again in a moment", did))
	}
	return s.GetDelivery(ctx, cid, wid, did)
}

// QueueDirect creates an event that is not recorded in the outbox and one pending
// delivery of it to one webhook (the webhook.test event).
func (s *Store) QueueDirect(ctx context.Context, w *Webhook, typ string, data any) (*Delivery, error) {
	did, err := s.nextID(ctx, "delivery")
	if err != nil {
		return nil, err
	}
	ev := Event{ID: NewEventID(), Type: typ, CreatedAt: s.Now(), CompanyID: w.CompanyID, Data: data}
	now := s.now().UnixMilli()
	cid := w.CompanyID
	payload, err := marshal(ev)
	if err != nil {
		return nil, err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, keyDelivery(cid, did), "id", did, "webhook_id", w.ID, "event_id", ev.ID, "event_type", typ,
			"status", DeliveryPending, "attempts", 0, "next_attempt_at", now, "created_at", now, "updated_at", now,
			"payload", payload)
		p.ZAdd(ctx, keyDeliveriesDue(cid), redis.Z{Score: 0, Member: did}) // due at once, whatever the clocks
		p.ZAdd(ctx, keyWebhookDeliveries(cid, w.ID), redis.Z{Score: float64(did), Member: did})
		return nil
	})
	if err != nil {
		return nil, wrapRedis(err)
	}
	return s.GetDelivery(ctx, cid, w.ID, did)
}

// errUnchanged tells mutate's caller that nothing needed writing.
var errUnchanged = errors.New("unchanged")

// NoteWebhookHealth keeps a webhook's failing_since in step with its attempts to url:
// a success clears it, a failure sets it; a webhook failing since disableAfter ago or
// longer is disabled with a reason. Attempts against a URL the webhook no longer has
// are ignored. It returns the webhook when it changed.
func (s *Store) NoteWebhookHealth(ctx context.Context, cid, wid int64, url string, success bool, lastErr string, disableAfter time.Duration) (*Webhook, error) {
	w, err := mutate(ctx, s, keyWebhook(cid, wid), nil, func(w *Webhook, _ redis.Pipeliner) error {
		if w.URL != url || w.Status != WebhookActive {
			return errUnchanged
		}
		now := s.Now()
		switch {
		case success && w.FailingSince == nil:
			return errUnchanged
		case success:
			w.FailingSince = nil
		case w.FailingSince == nil:
			w.FailingSince = &now
		case now.Sub(*w.FailingSince) >= disableAfter:
			reason := fmt.Sprintf("every delivery has failed since %s (for more than %s); last error: %s",
				w.FailingSince.Format(time.RFC3339), disableAfter, lastErr)
			w.Status, w.DisabledAt, w.DisableReason, w.UpdatedAt = WebhookDisabled, &now, &reason, now
		default:
			return errUnchanged
		}
		return nil
	})
	if errors.Is(err, errUnchanged) || errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return w, err
}

// TrimOutbox drops outbox entries that every consumer group of the stream has
// acknowledged (the oldest pending entry and everything after the group's position
// stay), so the outbox does not grow without end.
func (s *Store) TrimOutbox(ctx context.Context, cid int64) error {
	key := keyOutbox(cid)
	groups, err := s.rdb.XInfoGroups(ctx, key).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return nil
		}
		return wrapRedis(err)
	}
	if len(groups) == 0 {
		return nil
	}
	floor := ""
	for _, g := range groups {
		keep := g.LastDeliveredID
		if g.Pending > 0 {
			p, err := s.rdb.XPending(ctx, key, g.Name).Result()
			if err != nil {
				return wrapRedis(err)
			}
			if p.Count > 0 && streamIDLess(p.Lower, keep) {
				keep = p.Lower
			}
		}
		if floor == "" || streamIDLess(keep, floor) {
			floor = keep
		}
	}
	if floor == "" || floor == "0-0" {
		return nil
	}
	return wrapRedis(s.rdb.XTrimMinIDApprox(ctx, key, floor, 0).Err())
}

// PruneConsumers forgets consumers of the company's outbox group (gateway nodes that
// are gone) that hold nothing and have been idle for idle.
func (s *Store) PruneConsumers(ctx context.Context, cid int64, me string, idle time.Duration) error {
	cs, err := s.rdb.XInfoConsumers(ctx, keyOutbox(cid), OutboxGroup).Result()
	if err != nil {
		if isNoGroup(err) || strings.Contains(err.Error(), "no such key") {
			return nil
		}
		return wrapRedis(err)
	}
	for _, c := range cs {
		if c.Name != me && c.Pending == 0 && c.Idle >= idle {
			if err := s.rdb.XGroupDelConsumer(ctx, keyOutbox(cid), OutboxGroup, c.Name).Err(); err != nil {
				return wrapRedis(err)
			}
		}
	}
	return nil
}

func streamIDLess(a, b string) bool {
	pa, pb := splitStreamID(a), splitStreamID(b)
	if pa[0] != pb[0] {
		return pa[0] < pb[0]
	}
	return pa[1] < pb[1]
}

func splitStreamID(id string) [2]uint64 {
	ms, seq, _ := strings.Cut(id, "-")
	a, _ := strconv.ParseUint(ms, 10, 64)
	b, _ := strconv.ParseUint(seq, 10, 64)
	return [2]uint64{a, b}
}
