package store

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

// Batch calling: a list of recipients an agent calls, worked by one gateway node
// at a time (a lease), each recipient moved from state to state by one atomic
// script, so no recipient is ever called twice (callpath/batch runs them).
//
// Keys, under the company's hash tag so every script is one slot:
//
//	cxco:{c1}:batches                 ZSET    batch ids (score = id)
//	cxco:{c1}:batch:<bid>             HASH    def (JSON Batch settings), status, done_at (unix ms),
//	                                          n:<recipient status> counters
//	cxco:{c1}:batch:<bid>:r           HASH    index -> JSON recipient as submitted (number, variables, zone)
//	cxco:{c1}:batch:<bid>:st          HASH    index -> "<status>:<attempts>"
//	cxco:{c1}:batch:<bid>:due         ZSET    indexes waiting for a call (pending, retry) by unix ms due
//	cxco:{c1}:batch:<bid>:calling     SET     indexes being called
//	cxco:{c1}:batch:<bid>:res         HASH    index -> JSON BatchAttempt, the last attempt's result
//	cxco:{c1}:batch:<bid>:lease       STRING  the working node's token, PX
//	cxco:batches:active               ZSET    "<cid>:<bid>" of batches to work, by creation unix ms

// BatchStatus is a batch's state.
type BatchStatus string

// Batch states.
const (
	BatchRunning   BatchStatus = "running"
	BatchCancelled BatchStatus = "cancelled"
	BatchCompleted BatchStatus = "completed"
)

// RecipientStatus is one recipient's state in a batch.
type RecipientStatus string

// Recipient states. Pending, retry and calling are on their way; the others are final.
const (
	RecipientPending     RecipientStatus = "pending"     // not called yet
	RecipientCalling     RecipientStatus = "calling"     // a call is under way
	RecipientRetry       RecipientStatus = "retry"       // busy or no answer; called again at next_attempt_at
	RecipientAnswered    RecipientStatus = "answered"    // the call was answered (by a person or a machine)
	RecipientBusy        RecipientStatus = "busy"        // busy on the last allowed attempt
	RecipientNoAnswer    RecipientStatus = "no_answer"   // no answer on the last allowed attempt
	RecipientRejected    RecipientStatus = "rejected"    // declined (603) or refused (4xx other than busy)
	RecipientFailed      RecipientStatus = "failed"      // the call could not be placed
	RecipientCancelled   RecipientStatus = "cancelled"   // the batch was cancelled before the call
	RecipientInterrupted RecipientStatus = "interrupted" // its node was lost mid-call; never called again
)

// RecipientStatuses lists every recipient state, in the order progress shows them.
var RecipientStatuses = []RecipientStatus{RecipientPending, RecipientCalling, RecipientRetry, RecipientAnswered,
	RecipientBusy, RecipientNoAnswer, RecipientRejected, RecipientFailed, RecipientCancelled, RecipientInterrupted}

// Final reports whether no more calls will be made to the recipient.
func (s RecipientStatus) Final() bool {
	return s != RecipientPending && s != RecipientCalling && s != RecipientRetry
}

// CallingHours is the time of day calls may start, in the recipient's zone.
type CallingHours struct {
	Start string   `json:"start"`          // "09:00"
	End   string   `json:"end"`            // "20:00" (exclusive; after Start)
	Days  []string `json:"days,omitempty"` // "mon".."sun"; empty: every day
}

// RetryPolicy says how busy and unanswered recipients are called again.
type RetryPolicy struct {
	MaxAttempts int      `json:"max_attempts"` // calls per recipient, the first included
	Delay       Duration `json:"delay"`        // before the first retry
	Backoff     float64  `json:"backoff"`      // each further retry waits this many times longer
}

// Duration is a time.Duration that reads and writes as seconds in JSON.
type Duration time.Duration

// MarshalJSON writes seconds, with a fraction when there is one.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(time.Duration(d).Seconds(), 'f', -1, 64)), nil
}

// UnmarshalJSON reads seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s float64
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*d = Duration(s * float64(time.Second))
	return nil
}

// Batch is a batch of calls and its progress.
type Batch struct {
	ID             int64         `json:"id"`
	CompanyID      int64         `json:"company_id"`
	AgentID        int64         `json:"agent_id"`
	Name           string        `json:"name"`
	From           string        `json:"from,omitempty"`
	CallsPerSecond float64       `json:"calls_per_second"`
	MaxConcurrent  int           `json:"max_concurrent_calls"`
	CallingHours   *CallingHours `json:"calling_hours,omitempty"`
	TimeZone       string        `json:"time_zone,omitempty"` // for numbers whose country has several zones
	Retry          RetryPolicy   `json:"retry"`
	// RingTimeout is each call's ring time in seconds (0 in batches stored
	// before it existed: 30); MachineDetection is "" (off), detect or hangup.
	RingTimeout      int       `json:"ring_timeout_seconds,omitempty"`
	MachineDetection string    `json:"machine_detection,omitempty"`
	HideCallerID     bool      `json:"hide_caller_id,omitempty"` // each call's From anonymous, Privacy: id
	CreatedAt        time.Time `json:"created_at"`

	Status     BatchStatus             `json:"status"`
	FinishedAt *time.Time              `json:"finished_at"`
	Total      int                     `json:"total"`
	Counts     map[RecipientStatus]int `json:"counts"`
}

// BatchRecipient is one recipient: as submitted, and its progress.
type BatchRecipient struct {
	Index            int            `json:"index"`
	Number           string         `json:"phone_number"`
	DynamicVariables map[string]any `json:"dynamic_variables,omitempty"`
	TimeZone         string         `json:"time_zone"` // resolved at submission

	Status        RecipientStatus `json:"status"`
	Attempts      int             `json:"attempts"`
	NextAttemptAt *time.Time      `json:"next_attempt_at"`
	Last          *BatchAttempt   `json:"last_attempt"`
}

// BatchAttempt is how one call to a recipient went.
type BatchAttempt struct {
	Attempt        int       `json:"attempt"`
	Outcome        string    `json:"outcome"` // answered, busy, no_answer, rejected, failed
	SIPStatus      int       `json:"sip_status,omitempty"`
	ConversationID int64     `json:"conversation_id,omitempty"`
	Machine        string    `json:"machine_detection,omitempty"`
	Error          string    `json:"error,omitempty"`
	StartedAt      time.Time `json:"started_at"`
	EndedAt        time.Time `json:"ended_at"`
}

// BatchRef names a batch across companies.
type BatchRef struct{ CompanyID, ID int64 }

func (r BatchRef) String() string { return fmt.Sprintf("%d:%d", r.CompanyID, r.ID) }

// Batch errors.
var (
	// ErrLeaseLost: another node holds the batch's lease.
	ErrLeaseLost = errors.New("batch lease lost")
	// ErrBatchStopped: the batch is no longer running (cancelled or completed).
	ErrBatchStopped = errors.New("batch not running")
	// ErrNotDue: the recipient is not waiting for a call (already claimed or final).
	ErrNotDue = errors.New("recipient not due")
)

func keyBatches(cid int64) string              { return prefix + "{c" + itoa(cid) + "}:batches" }
func keyBatch(r BatchRef) string               { return prefix + "{c" + itoa(r.CompanyID) + "}:batch:" + itoa(r.ID) }
func keyBatchPart(r BatchRef, p string) string { return keyBatch(r) + ":" + p }
func keyBatchesActive() string                 { return prefix + "batches:active" }

// MaxBatchRecipients is the most recipients one batch takes.
const MaxBatchRecipients = 10000

// CreateBatch stores a new batch, running, with every recipient pending and due
// now, in the list's order (the worker applies calling hours). It fills in b's id, status and counts.
func (s *Store) CreateBatch(ctx context.Context, b Batch, rs []BatchRecipient) (*Batch, error) {
	if len(rs) == 0 || len(rs) > MaxBatchRecipients {
		return nil, fmt.Errorf("store: a batch has 1 to %d recipients, not %d", MaxBatchRecipients, len(rs))
	}
	id, err := s.rdb.Incr(ctx, keySeq("batch")).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	b.ID, b.Status, b.Total, b.FinishedAt = id, BatchRunning, len(rs), nil
	if b.CreatedAt.IsZero() {
		b.CreatedAt = s.Now()
	}
	ref := BatchRef{b.CompanyID, id}
	def := b
	def.Counts = nil
	defJSON, err := json.Marshal(def)
	if err != nil {
		return nil, err
	}
	// Listed as active first: a batch whose keys are not written yet is skipped
	// by the workers and dropped from the list after a minute (ActiveBatches).
	if err := s.rdb.ZAdd(ctx, keyBatchesActive(), redis.Z{Score: float64(b.CreatedAt.UnixMilli()), Member: ref.String()}).Err(); err != nil {
		return nil, wrapRedis(err)
	}
	now := float64(b.CreatedAt.UnixMilli())
	const chunk = 1000
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < len(rs); i += chunk {
			in := make([]any, 0, 2*chunk)
			st := make([]any, 0, 2*chunk)
			due := make([]redis.Z, 0, chunk)
			for j := i; j < min(len(rs), i+chunk); j++ {
				r := rs[j]
				r.Index = j
				js, err := json.Marshal(BatchRecipient{Index: j, Number: r.Number, DynamicVariables: r.DynamicVariables, TimeZone: r.TimeZone})
				if err != nil {
					return err
				}
				in = append(in, j, js)
				st = append(st, j, string(RecipientPending)+":0")
				due = append(due, redis.Z{Score: now + float64(j), Member: j}) // in the list's order, 1 ms apart
			}
			p.HSet(ctx, keyBatchPart(ref, "r"), in...)
			p.HSet(ctx, keyBatchPart(ref, "st"), st...)
			p.ZAdd(ctx, keyBatchPart(ref, "due"), due...)
		}
		p.HSet(ctx, keyBatch(ref), "def", defJSON, "status", string(BatchRunning), "n:"+string(RecipientPending), len(rs))
		p.ZAdd(ctx, keyBatches(b.CompanyID), redis.Z{Score: float64(id), Member: id})
		return nil
	})
	if err != nil {
		return nil, wrapRedis(err)
	}
	b.Counts = map[RecipientStatus]int{RecipientPending: len(rs)}
	return &b, nil
}

// GetBatch reads a batch and its counts.
func (s *Store) GetBatch(ctx context.Context, cid, bid int64) (*Batch, error) {
	m, err := s.rdb.HGetAll(ctx, keyBatch(BatchRef{cid, bid})).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	if m["def"] == "" {
		return nil, ErrNotFound
	}
	var b Batch
	if err := json.Unmarshal([]byte(m["def"]), &b); err != nil {
		return nil, fmt.Errorf("store: batch %d: %w", bid, err)
	}
	b.Status = BatchStatus(m["status"])
	if ms, err := strconv.ParseInt(m["done_at"], 10, 64); err == nil {
		t := time.UnixMilli(ms).UTC()
		b.FinishedAt = &t
	}
	b.Counts = map[RecipientStatus]int{}
	for _, st := range RecipientStatuses {
		if n, _ := strconv.Atoi(m["n:"+string(st)]); n != 0 {
			b.Counts[st] = n
		}
	}
	return &b, nil
}

// ListBatches lists a company's batches newest first: those with an id below
// before (0: from the newest), of one agent (agentID 0: every agent) and of
// one status ("" any); at most limit, and whether more follow.
func (s *Store) ListBatches(ctx context.Context, cid, agentID int64, status BatchStatus, before int64, limit int) ([]*Batch, bool, error) {
	maxScore := "+inf"
	if before > 0 {
		maxScore = "(" + strconv.FormatInt(before, 10)
	}
	out := make([]*Batch, 0, limit)
	const chunk = 100
	for off := int64(0); ; off += chunk {
		ids, err := s.rdb.ZRevRangeByScore(ctx, keyBatches(cid), &redis.ZRangeBy{Min: "-inf", Max: maxScore, Offset: off, Count: chunk}).Result()
		if err != nil {
			return nil, false, wrapRedis(err)
		}
		for _, id := range ids {
			bid, _ := strconv.ParseInt(id, 10, 64)
			b, err := s.GetBatch(ctx, cid, bid)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, false, err
			}
			if agentID != 0 && b.AgentID != agentID || status != "" && b.Status != status {
				continue
			}
			if len(out) == limit {
				return out, true, nil
			}
			out = append(out, b)
		}
		if len(ids) < chunk {
			return out, false, nil
		}
	}
}

// BatchRecipients reads the recipients from index from on, at most limit.
func (s *Store) BatchRecipients(ctx context.Context, cid, bid int64, from, limit int) ([]BatchRecipient, error) {
	ref := BatchRef{cid, bid}
	fields := make([]string, 0, limit)
	for i := from; i < from+limit; i++ {
		fields = append(fields, strconv.Itoa(i))
	}
	if len(fields) == 0 {
		return nil, nil
	}
	p := s.rdb.Pipeline()
	in := p.HMGet(ctx, keyBatchPart(ref, "r"), fields...)
	st := p.HMGet(ctx, keyBatchPart(ref, "st"), fields...)
	res := p.HMGet(ctx, keyBatchPart(ref, "res"), fields...)
	due := make([]*redis.FloatCmd, len(fields))
	for i, f := range fields {
		due[i] = p.ZScore(ctx, keyBatchPart(ref, "due"), f)
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrapRedis(err)
	}
	var out []BatchRecipient
	for i := range fields {
		js, ok := in.Val()[i].(string)
		if !ok {
			break // past the last recipient
		}
		var r BatchRecipient
		if err := json.Unmarshal([]byte(js), &r); err != nil {
			return nil, fmt.Errorf("store: batch %d recipient %s: %w", bid, fields[i], err)
		}
		r.Status, r.Attempts = parseRecipientState(st.Val()[i])
		if js, ok := res.Val()[i].(string); ok {
			r.Last = &BatchAttempt{}
			if err := json.Unmarshal([]byte(js), r.Last); err != nil {
				return nil, fmt.Errorf("store: batch %d result %s: %w", bid, fields[i], err)
			}
		}
		if ms, err := due[i].Result(); err == nil {
			t := time.UnixMilli(int64(ms)).UTC()
			r.NextAttemptAt = &t
		}
		out = append(out, r)
	}
	return out, nil
}

func parseRecipientState(v any) (RecipientStatus, int) {
	s, _ := v.(string)
	st, a, _ := strings.Cut(s, ":")
	n, _ := strconv.Atoi(a)
	return RecipientStatus(st), n
}

// ActiveBatches lists the batches that may need working. Entries whose batch
// is over, or was never written (a create that failed half way, after a
// minute), are dropped.
func (s *Store) ActiveBatches(ctx context.Context) ([]BatchRef, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, keyBatchesActive(), 0, -1).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	var out []BatchRef
	for _, z := range zs {
		m := z.Member.(string)
		var ref BatchRef
		if _, err := fmt.Sscanf(m, "%d:%d", &ref.CompanyID, &ref.ID); err != nil {
			s.rdb.ZRem(ctx, keyBatchesActive(), m)
			continue
		}
		st, err := s.rdb.HGet(ctx, keyBatch(ref), "status").Result()
		switch {
		case errors.Is(err, redis.Nil):
			if s.now().Sub(time.UnixMilli(int64(z.Score))) > time.Minute {
				s.rdb.ZRem(ctx, keyBatchesActive(), m)
			}
			continue
		case err != nil:
			return nil, wrapRedis(err)
		case st != string(BatchRunning):
			// Over; its last calls may still be finishing on the node that holds
			// its lease, which records them without the list.
			s.rdb.ZRem(ctx, keyBatchesActive(), m)
			continue
		}
		out = append(out, ref)
	}
	return out, nil
}

// luaState parses "<status>:<attempts>"; luaDone marks a running batch
// completed when nothing is left to call.
const luaState = `
local function state(v)
  local s, a = string.match(v or '', '^([%a_]+):(%d+)$')
  return s, a
end
local function n(k, f) return tonumber(redis.call('HGET', k, f) or '0') end
local function done(k, now)
  if redis.call('HGET', k, 'status') == 'running' and n(k, 'n:pending') + n(k, 'n:retry') + n(k, 'n:calling') == 0 then
    redis.call('HSET', k, 'status', 'completed', 'done_at', now)
  end
end
local function interrupt(batch, st, calling, now)
  local c = 0
  for _, i in ipairs(redis.call('SMEMBERS', calling)) do
    local s, a = state(redis.call('HGET', st, i))
    if s == 'calling' then
      redis.call('HSET', st, i, 'interrupted:' .. a)
      redis.call('HINCRBY', batch, 'n:calling', -1)
      redis.call('HINCRBY', batch, 'n:interrupted', 1)
      c = c + 1
    end
  end
  redis.call('DEL', calling)
  done(batch, now)
  return c
end
`

// acquire: KEYS batch, st, calling, lease; ARGV token, ttl ms, now ms.
// Takes the lease if free and marks the recipients a lost holder was calling
// as interrupted: they may have been called, so they are never called again.
var batchAcquire = redis.NewScript(luaState + `
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return -2 end
if not redis.call('SET', KEYS[4], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
return interrupt(KEYS[1], KEYS[2], KEYS[3], ARGV[3])`)

// orphans: KEYS batch, st, calling, lease; ARGV token, now ms. For the lease's
// holder with no call under way: whatever is still "calling" lost its outcome.
var batchOrphans = redis.NewScript(luaState + `
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return -1 end
return interrupt(KEYS[1], KEYS[2], KEYS[3], ARGV[2])`)

// renew: KEYS lease; ARGV token, ttl ms.
var batchRenew = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`)

// release: KEYS lease; ARGV token.
var batchRelease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`)

// claim: KEYS batch, st, due, calling, lease; ARGV token, index.
var batchClaim = redis.NewScript(luaState + `
if redis.call('GET', KEYS[5]) ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return -2 end
if not redis.call('ZSCORE', KEYS[3], ARGV[2]) then return -3 end
local s, a = state(redis.call('HGET', KEYS[2], ARGV[2]))
if s ~= 'pending' and s ~= 'retry' then return -3 end
a = tonumber(a) + 1
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], 'calling:' .. a)
redis.call('HINCRBY', KEYS[1], 'n:' .. s, -1)
redis.call('HINCRBY', KEYS[1], 'n:calling', 1)
return a`)

// defer: KEYS due, lease; ARGV token, index, due ms.
var batchDefer = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[2])
return 1`)

// finish: KEYS batch, st, due, calling, res; ARGV index, attempt, new status,
// result JSON, due ms (retry), now ms, attempts to keep.
// Accepted from whichever node made the call, as long as it is the recipient's
// current attempt: a node that lost its lease mid-call still records the outcome.
var batchFinish = redis.NewScript(luaState + `
local s, a = state(redis.call('HGET', KEYS[2], ARGV[1]))
if (s ~= 'calling' and s ~= 'interrupted') or a ~= ARGV[2] then return 0 end
local ns = ARGV[3]
if (ns == 'retry' or ns == 'pending') and redis.call('HGET', KEYS[1], 'status') ~= 'running' then ns = 'cancelled' end
if ns == 'retry' or ns == 'pending' then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1]) end
redis.call('HSET', KEYS[2], ARGV[1], ns .. ':' .. ARGV[7])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'n:' .. s, -1)
redis.call('HINCRBY', KEYS[1], 'n:' .. ns, 1)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[5], ARGV[1], ARGV[4]) end
done(KEYS[1], ARGV[6])
return 1`)

// cancel: KEYS batch, st, due; ARGV now ms.
var batchCancel = redis.NewScript(luaState + `
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'running' then return st or '' end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'done_at', ARGV[1])
for _, i in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local s, a = state(redis.call('HGET', KEYS[2], i))
  redis.call('HSET', KEYS[2], i, 'cancelled:' .. a)
  redis.call('HINCRBY', KEYS[1], 'n:' .. s, -1)
  redis.call('HINCRBY', KEYS[1], 'n:cancelled', 1)
end
redis.call('DEL', KEYS[3])
return 'cancelled'`)

func runInt(ctx context.Context, s *Store, sc *redis.Script, keys []string, args ...any) (int64, error) {
	n, err := sc.Run(ctx, s.rdb, keys, args...).Int64()
	return n, wrapRedis(err)
}

// AcquireBatchLease takes a batch's lease for ttl if no node holds it. It
// returns false when another node does, ErrBatchStopped when the batch is over,
// and how many recipients a lost holder left mid-call (now interrupted).
func (s *Store) AcquireBatchLease(ctx context.Context, ref BatchRef, token string, ttl time.Duration) (bool, int, error) {
	n, err := runInt(ctx, s, batchAcquire, []string{keyBatch(ref), keyBatchPart(ref, "st"), keyBatchPart(ref, "calling"), keyBatchPart(ref, "lease")},
		token, ttl.Milliseconds(), s.now().UnixMilli())
	switch {
	case err != nil:
		return false, 0, err
	case n == -2:
		return false, 0, ErrBatchStopped
	case n == -1:
		return false, 0, nil
	}
	return true, int(n), nil
}

// InterruptOrphans marks interrupted the recipients still calling in a batch
// whose lease holder (token) has no call under way: their outcomes were never
// recorded (the store was unreachable at the end of the call). It returns how
// many, or ErrLeaseLost.
func (s *Store) InterruptOrphans(ctx context.Context, ref BatchRef, token string) (int, error) {
	n, err := runInt(ctx, s, batchOrphans, []string{keyBatch(ref), keyBatchPart(ref, "st"), keyBatchPart(ref, "calling"), keyBatchPart(ref, "lease")},
		token, s.now().UnixMilli())
	if err == nil && n == -1 {
		err = ErrLeaseLost
	}
	return int(n), err
}

// RenewBatchLease extends a lease this token holds; ErrLeaseLost if it does not.
func (s *Store) RenewBatchLease(ctx context.Context, ref BatchRef, token string, ttl time.Duration) error {
	n, err := runInt(ctx, s, batchRenew, []string{keyBatchPart(ref, "lease")}, token, ttl.Milliseconds())
	if err == nil && n == 0 {
		err = ErrLeaseLost
	}
	return err
}

// ReleaseBatchLease gives up a lease this token holds.
func (s *Store) ReleaseBatchLease(ctx context.Context, ref BatchRef, token string) error {
	_, err := runInt(ctx, s, batchRelease, []string{keyBatchPart(ref, "lease")}, token)
	return err
}

// DueRecipients returns up to n indexes due by now, earliest first, and when
// the next one is due (zero when none waits).
func (s *Store) DueRecipients(ctx context.Context, ref BatchRef, now time.Time, n int) ([]int, time.Time, error) {
	zs, err := s.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: keyBatchPart(ref, "due"), Start: 0, Stop: n - 1}).Result()
	if err != nil {
		return nil, time.Time{}, wrapRedis(err)
	}
	var due []int
	var next time.Time
	for _, z := range zs {
		at := time.UnixMilli(int64(z.Score))
		if at.After(now) {
			next = at
			break
		}
		i, _ := strconv.Atoi(z.Member.(string))
		due = append(due, i)
	}
	return due, next, nil
}

// BatchRecipient reads one recipient as submitted.
func (s *Store) BatchRecipient(ctx context.Context, ref BatchRef, index int) (BatchRecipient, error) {
	js, err := s.rdb.HGet(ctx, keyBatchPart(ref, "r"), strconv.Itoa(index)).Result()
	if errors.Is(err, redis.Nil) {
		return BatchRecipient{}, ErrNotFound
	}
	if err != nil {
		return BatchRecipient{}, wrapRedis(err)
	}
	var r BatchRecipient
	return r, json.Unmarshal([]byte(js), &r)
}

// ClaimRecipient moves a due recipient to calling, counting the attempt, for the
// lease's holder. It returns the attempt's number, or ErrLeaseLost,
// ErrBatchStopped or ErrNotDue. Whoever claims an attempt is the only one who
// calls it: the claim is one atomic step.
func (s *Store) ClaimRecipient(ctx context.Context, ref BatchRef, token string, index int) (int, error) {
	n, err := runInt(ctx, s, batchClaim, []string{keyBatch(ref), keyBatchPart(ref, "st"), keyBatchPart(ref, "due"),
		keyBatchPart(ref, "calling"), keyBatchPart(ref, "lease")}, token, index)
	switch {
	case err != nil:
		return 0, err
	case n == -1:
		return 0, ErrLeaseLost
	case n == -2:
		return 0, ErrBatchStopped
	case n == -3:
		return 0, ErrNotDue
	}
	return int(n), nil
}

// DeferRecipient moves a due recipient's next call to at (outside calling hours).
func (s *Store) DeferRecipient(ctx context.Context, ref BatchRef, token string, index int, at time.Time) error {
	n, err := runInt(ctx, s, batchDefer, []string{keyBatchPart(ref, "due"), keyBatchPart(ref, "lease")}, token, index, at.UnixMilli())
	if err == nil && n == -1 {
		err = ErrLeaseLost
	}
	return err
}

// FinishRecipient records the end of a recipient's attempt: a final status, or
// RecipientRetry (called again at retryAt) or RecipientPending (the attempt
// did not count: keep is the attempts to keep). It reports false when the
// attempt is not the recipient's current one (recorded already).
func (s *Store) FinishRecipient(ctx context.Context, ref BatchRef, index, attempt int, st RecipientStatus, keep int, res *BatchAttempt, retryAt time.Time) (bool, error) {
	var js []byte
	if res != nil {
		var err error
		if js, err = json.Marshal(res); err != nil {
			return false, err
		}
	}
	n, err := runInt(ctx, s, batchFinish, []string{keyBatch(ref), keyBatchPart(ref, "st"), keyBatchPart(ref, "due"),
		keyBatchPart(ref, "calling"), keyBatchPart(ref, "res")},
		index, attempt, string(st), string(js), retryAt.UnixMilli(), s.now().UnixMilli(), keep)
	return n == 1, err
}

// CancelBatch stops a running batch: recipients not yet called are cancelled;
// calls under way finish. Cancelling a batch that is over is a conflict.
func (s *Store) CancelBatch(ctx context.Context, cid, bid int64) (*Batch, error) {
	ref := BatchRef{cid, bid}
	st, err := batchCancel.Run(ctx, s.rdb, []string{keyBatch(ref), keyBatchPart(ref, "st"), keyBatchPart(ref, "due")}, s.now().UnixMilli()).Text()
	if err != nil {
		return nil, wrapRedis(err)
	}
	switch st {
	case "":
		return nil, ErrNotFound
	case string(BatchCompleted):
		return nil, conflict("the batch is completed")
	}
	return s.GetBatch(ctx, cid, bid)
}
