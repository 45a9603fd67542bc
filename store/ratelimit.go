package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// A sliding window over two fixed one-minute windows: the previous window's count
// is weighted by how much of it still overlaps the last 60 s. Rejected requests are
// not counted, so a client that backs off gets through again.
var rateScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local est = prev * tonumber(ARGV[2]) + cur
if est + 1 > tonumber(ARGV[1]) then return {0, math.floor(est), cur, prev} end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 130000)
return {1, math.floor(est + 1), cur + 1, prev}`)

// RateResult is the outcome of one request against a company's limit.
type RateResult struct {
	Allowed   bool
	Limit     int
	Remaining int
	Reset     time.Time // when the current window ends
	// RetryAfter is how long a rejected client should wait before a request fits again.
	RetryAfter time.Duration
}

// AllowRequest counts one API request of a company against limit per minute, across
// every gateway node sharing this Redis.
func (s *Store) AllowRequest(ctx context.Context, cid int64, limit int) (RateResult, error) {
	now := s.now()
	minute := now.Unix() / 60
	elapsed := float64(now.UnixMilli()%60000) / 60000
	res, err := rateScript.Run(ctx, s.rdb, []string{keyRate(cid, minute), keyRate(cid, minute-1)}, limit, 1-elapsed).Int64Slice()
	if err != nil {
		return RateResult{}, wrapRedis(err)
	}
	r := RateResult{Allowed: res[0] == 1, Limit: limit, Remaining: max(0, limit-int(res[1])), Reset: time.Unix((minute+1)*60, 0)}
	if !r.Allowed {
		r.RetryAfter = retryAfter(float64(limit), float64(res[2]), float64(res[3]), elapsed)
	}
	return r, nil
}

// retryAfter finds the first moment the weighted count leaves room for one request:
// later in this window if the previous window's weight decays enough, else in the
// next window once this one's weight has.
func retryAfter(limit, cur, prev, elapsed float64) time.Duration {
	var wait float64 // in minutes
	if cur+1 <= limit && prev > 0 {
		e := 1 - (limit-1-cur)/prev
		wait = max(0, e-elapsed)
	} else {
		f := 1.0
		if cur > 0 {
			f = max(0, 1-(limit-1)/cur)
		}
		wait = (1 - elapsed) + f
	}
	d := time.Duration(wait * float64(time.Minute))
	return max(time.Second, (d + time.Second - 1).Truncate(time.Second))
}
