package store

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
)

// OnError calls f for every Redis command or dial that fails for a reason other
// than a missing key or a lost optimistic transaction (for metrics).
func (s *Store) OnError(f func(error)) { s.rdb.AddHook(errorHook{f}) }

type errorHook struct{ f func(error) }

func (h errorHook) report(err error) {
	if err != nil && !errors.Is(err, redis.Nil) && !errors.Is(err, redis.TxFailedErr) && !errors.Is(err, context.Canceled) {
		h.f(err)
	}
}

func (h errorHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		h.report(err)
		return c, err
	}
}

func (h errorHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.report(err)
		return err
	}
}

func (h errorHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.report(err)
		return err
	}
}
