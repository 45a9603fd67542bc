package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// getJSON reads one JSON record; a missing key is ErrNotFound.
func (s *Store) getJSON(ctx context.Context, key string, v any) error {
	b, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	if err != nil {
		return wrapRedis(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("store: record %s is corrupt: %w", key, err)
	}
	return nil
}

// pipelined sends n commands, cmd(p, i) for each i, in one pipeline and returns them in
// order. A missing key (redis.Nil) is not an error here: each command keeps its own.
func pipelined[C redis.Cmder](ctx context.Context, s *Store, n int, cmd func(p redis.Pipeliner, i int) C) ([]C, error) {
	cmds := make([]C, n)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			cmds[i] = cmd(p, i)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, wrapRedis(err)
	}
	return cmds, nil
}

// getJSONs reads many JSON records with one pipeline (keys may be in different slots).
// Missing records are skipped; the result keeps the order of keys.
func getJSONs[T any](ctx context.Context, s *Store, keys []string) ([]*T, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cmds, err := pipelined(ctx, s, len(keys), func(p redis.Pipeliner, i int) *redis.StringCmd {
		return p.Get(ctx, keys[i])
	})
	if err != nil {
		return nil, err
	}
	out := make([]*T, 0, len(keys))
	for i, c := range cmds {
		b, err := c.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, wrapRedis(err)
		}
		v := new(T)
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("store: record %s is corrupt: %w", keys[i], err)
		}
		out = append(out, v)
	}
	return out, nil
}

// marshal is a record's or an event's JSON. It fails (ErrNotJSON) on what JSON
// cannot hold — a NaN or infinite number, a channel or a function in a map: the
// caller writes nothing and says so.
func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %T: %v", ErrNotJSON, v, err)
	}
	return b, nil
}

// nextID hands out the next id of an entity.
func (s *Store) nextID(ctx context.Context, entity string) (int64, error) {
	id, err := s.rdb.Incr(ctx, keySeq(entity)).Result()
	return id, wrapRedis(err)
}

// errRetry asks mutate to run its function again (the record changed under it).
var errRetry = errors.New("retry")

// mutate reads the JSON record at key, lets fn change it and queue further writes of
// the same hash slot on pipe, and commits everything in one WATCH/MULTI/EXEC. It
// retries when another writer changed a watched key in between. fn must not have
// side effects outside pipe: it may run more than once.
func mutate[T any](ctx context.Context, s *Store, key string, watch []string, fn func(v *T, pipe redis.Pipeliner) error) (*T, error) {
	var out *T
	keys := append([]string{key}, watch...)
	for attempt := 0; attempt < 100; attempt++ {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			b, err := tx.Get(ctx, key).Bytes()
			if errors.Is(err, redis.Nil) {
				return ErrNotFound
			}
			if err != nil {
				return err
			}
			v := new(T)
			if err := json.Unmarshal(b, v); err != nil {
				return fmt.Errorf("store: record %s is corrupt: %w", key, err)
			}
			_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				if err := fn(v, pipe); err != nil {
					return err
				}
				b, err := marshal(v)
				if err != nil {
					return err
				}
				pipe.Set(ctx, key, b, 0)
				return nil
			})
			if err == nil {
				out = v
			}
			return err
		}, keys...)
		if errors.Is(err, redis.TxFailedErr) || errors.Is(err, errRetry) {
			backoff(ctx, attempt)
			continue
		}
		if err != nil {
			return nil, wrapRedis(err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("store: %s changed too often to update", key)
}

// backoff waits a little, growing with attempt and jittered, so racing writers spread out.
func backoff(ctx context.Context, attempt int) {
	d := time.Duration(rand.IntN(1+min(attempt, 10)*2)) * time.Millisecond
	if d == 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Page is one page of a list; NextCursor is empty on the last page.
type Page[T any] struct {
	Items      []*T
	HasMore    bool
	NextCursor int64 // id to continue below; 0 = none
}

// pageIDs returns up to limit ids of the sorted set below cursor (exclusive; 0 = from
// the top), newest (highest id) first, and whether more follow. Ids only grow, so a
// page never skips or repeats an item, also while items are being added.
func (s *Store) pageIDs(ctx context.Context, key string, cursor int64, limit int) ([]int64, bool, error) {
	maxScore := "+inf"
	if cursor > 0 {
		maxScore = "(" + itoa(cursor)
	}
	res, err := s.rdb.ZRevRangeByScore(ctx, key, &redis.ZRangeBy{Max: maxScore, Min: "-inf", Count: int64(limit + 1)}).Result()
	if err != nil {
		return nil, false, wrapRedis(err)
	}
	ids := make([]int64, 0, len(res))
	for _, m := range res {
		var id int64
		if _, err := fmt.Sscan(m, &id); err == nil {
			ids = append(ids, id)
		}
	}
	more := len(ids) > limit
	if more {
		ids = ids[:limit]
	}
	return ids, more, nil
}

// pageRecords pages through the id set at idx and loads each record with keyOf,
// keeping those keep accepts (nil keeps all); see pageLoaded.
func pageRecords[T any](ctx context.Context, s *Store, idx string, cursor int64, limit int, keyOf func(int64) string, keep func(*T) bool, idOf func(*T) int64) (Page[T], error) {
	minBatch := 0
	if keep != nil {
		minBatch = 50
	}
	load := func(ids []int64) ([]*T, error) {
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = keyOf(id)
		}
		return getJSONs[T](ctx, s, keys)
	}
	return pageLoaded(ctx, s, idx, cursor, limit, minBatch, load, keep, idOf)
}

// pageLoaded pages through the id set at idx, reading at least minBatch ids at a
// time, loads their records with load (which leaves out missing ones) and keeps those
// keep accepts (nil keeps all). It reads on until the page is full or the index ends,
// so a filter never returns a short page while more items exist.
func pageLoaded[T any](ctx context.Context, s *Store, idx string, cursor int64, limit, minBatch int, load func(ids []int64) ([]*T, error), keep func(*T) bool, idOf func(*T) int64) (Page[T], error) {
	var kept []*T
	for len(kept) <= limit {
		ids, more, err := s.pageIDs(ctx, idx, cursor, max(limit+1-len(kept), minBatch))
		if err != nil {
			return Page[T]{}, err
		}
		recs, err := load(ids)
		if err != nil {
			return Page[T]{}, err
		}
		for _, r := range recs {
			if keep == nil || keep(r) {
				kept = append(kept, r)
			}
		}
		if !more || len(ids) == 0 {
			break
		}
		cursor = ids[len(ids)-1]
	}
	page := Page[T]{Items: kept}
	if len(kept) > limit {
		page.Items = kept[:limit]
		page.HasMore = true
		page.NextCursor = idOf(kept[limit-1])
	}
	return page, nil
}
