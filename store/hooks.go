package store

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// OnError calls f for every Redis command or dial that fails (for metrics). Replies
// that are part of normal work are not failures: a missing key, a lost optimistic
// transaction, a cancelled context, NOSCRIPT (go-redis runs a Lua script by its
// hash first and sends it whole on that reply), and a server refusing the client's
// optional CLIENT handshakes (SETINFO, MAINT_NOTIFICATIONS), which go-redis
// tolerates.
func (s *Store) OnError(f func(error)) { s.rdb.AddHook(errorHook{f}) }

type errorHook struct{ f func(error) }

func (h errorHook) report(cmd redis.Cmder, err error) {
	if failed(cmd, err) {
		h.f(err)
	}
}

// failed says whether err, from cmd (nil for a dial or a round trip), is a failure.
func failed(cmd redis.Cmder, err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.TxFailedErr) || errors.Is(err, context.Canceled) ||
		redis.HasErrorPrefix(err, "NOSCRIPT") {
		return false
	}
	if cmd != nil && cmd.Name() == "client" {
		if args := cmd.Args(); len(args) > 1 {
			if sub, _ := args[1].(string); strings.EqualFold(sub, "setinfo") || strings.EqualFold(sub, "maint_notifications") {
				return false
			}
		}
	}
	return true
}

func (h errorHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		h.report(nil, err)
		return c, err
	}
}

func (h errorHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.report(cmd, err)
		return err
	}
}

// ProcessPipelineHook reports the first command of a pipeline or transaction that
// failed (once: one round trip, one error), else the round trip's own failure.
func (h errorHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err == nil {
			return nil
		}
		carried := false // go-redis also sets a failed round trip's error on its commands
		for _, c := range cmds {
			if e := c.Err(); e != nil {
				carried = true
				if failed(c, e) {
					h.f(e)
					return err
				}
			}
		}
		if !carried {
			h.report(nil, err)
		}
		return err
	}
}
