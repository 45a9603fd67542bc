package store

import (
	"context"
	"encoding/json"
	"math"
	"sort"
)

// Values JSON cannot hold. A record or an event is stored as JSON, and JSON has no
// NaN or infinity: a NaN figure (a call's quality rating that was not a number)
// once panicked the whole process in the middle of 500 calls. A store method now
// returns ErrNotJSON and writes nothing of that record; the API answers 500. The
// background writes (Apply: a call's end, its transcript, its metadata) are
// written without the values that cannot be stored, which are logged by name and
// counted (OnNotJSON), so a bad figure never costs the rest of a call's record.

// OnNotJSON tells f of every write that held values JSON cannot hold (what: the
// kind of write; the values were left out and logged): metrics. Set it before
// the store is used.
func (s *Store) OnNotJSON(f func(what string)) { s.onNotJSON.Store(&f) }

func (s *Store) notJSON(what string) {
	if f := s.onNotJSON.Load(); f != nil {
		(*f)(what)
	}
}

// applyFinite is Apply's fallback for a write that cannot be stored as it is: it
// writes it without the values JSON cannot hold, and says which it left out.
func (s *Store) applyFinite(ctx context.Context, w Write, err error) error {
	fw, dropped := w.finite()
	if len(dropped) == 0 {
		return err // nothing we know how to leave out
	}
	s.notJSON(w.Op)
	s.log.Error("a write held values that cannot be stored (not a number, infinite): written without them",
		"write", w.Op, "conversation_id", w.Conversation, "left_out", dropped, "err", err)
	return s.apply(ctx, fw)
}

// finite is w without the values JSON cannot hold, and their paths.
func (w Write) finite() (Write, []string) {
	var dropped []string
	if w.Final != nil {
		f := *w.Final
		f.Metadata = finiteMap(f.Metadata, "final.metadata", &dropped)
		if q := f.AudioQuality; q != nil && (!isFinite(q.MOS) || !isFinite(q.RFactor)) {
			f.AudioQuality = nil
			dropped = append(dropped, "final.audio_quality")
		}
		w.Final = &f
	}
	if w.Entry != nil && !isFinite(w.Entry.Timestamp) {
		e := *w.Entry
		e.Timestamp = 0
		w.Entry = &e
		dropped = append(dropped, "entry.timestamp")
	}
	w.Metadata = finiteMap(w.Metadata, "metadata", &dropped)
	return w, dropped
}

func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// finiteMap is m (a copy, when anything is left out) without the values JSON
// cannot hold, nested maps and lists included.
func finiteMap(m map[string]any, path string, dropped *[]string) map[string]any {
	if m == nil {
		return nil
	}
	n := len(*dropped)
	out := make(map[string]any, len(m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the log names them in a stable order
	for _, k := range keys {
		if v, ok := finiteValue(m[k], path+"."+k, dropped); ok {
			out[k] = v
		}
	}
	if len(*dropped) == n {
		return m
	}
	return out
}

func finiteValue(v any, path string, dropped *[]string) (any, bool) {
	switch x := v.(type) {
	case nil, string, bool, int, int64, uint64, int32, uint32:
		return v, true
	case float64:
		if !isFinite(x) {
			*dropped = append(*dropped, path)
			return nil, false
		}
		return v, true
	case float32:
		if !isFinite(float64(x)) {
			*dropped = append(*dropped, path)
			return nil, false
		}
		return v, true
	case map[string]any:
		return finiteMap(x, path, dropped), true
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i], _ = finiteValue(e, path+"[]", dropped) // a list keeps its length: null in its place
		}
		return out, true
	}
	if _, err := json.Marshal(v); err != nil {
		*dropped = append(*dropped, path)
		return nil, false
	}
	return v, true
}
