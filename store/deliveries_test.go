package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cxco/gateway/store/redistest"
)

func newDeliveryStore(t testing.TB) *Store {
	t.Helper()
	r := redistest.StartRedis(t)
	sealer, err := NewSealer(GenerateSecretKey())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Options{URL: r.URL, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dlvCompany(t testing.TB, s *Store) int64 {
	t.Helper()
	c, _, err := s.CreateCompany(context.Background(), "Acme", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// recordEvent appends an event exactly as the store's changes do (queueEvent in a MULTI).
func recordEvent(t testing.TB, s *Store, cid int64, typ string, data any) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		s.queueEvent(ctx, p, cid, typ, data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// outboxTypes lists the types of the events in a company's outbox, oldest first.
func outboxTypes(t testing.TB, s *Store, cid int64) []string {
	t.Helper()
	msgs, err := s.rdb.XRange(context.Background(), keyOutbox(cid), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.Values["type"].(string))
	}
	return out
}

func webhookDeliveries(t testing.TB, s *Store, cid, wid int64) []*Delivery {
	t.Helper()
	p, err := s.ListDeliveries(context.Background(), cid, wid, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	return p.Items
}

func TestFanOutSubscriptions(t *testing.T) {
	s := newDeliveryStore(t)
	ctx := context.Background()
	cid := dlvCompany(t, s)
	agentHook, _ := s.CreateWebhook(ctx, cid, "https://a.example/h", []string{EventAgentStatusChanged}, "")
	convHook, _ := s.CreateWebhook(ctx, cid, "https://b.example/h", []string{EventConversationCompleted, EventAgentStatusChanged}, "")
	off, _ := s.CreateWebhook(ctx, cid, "https://c.example/h", []string{EventAgentStatusChanged}, "")
	if _, err := s.UpdateWebhook(ctx, cid, off.ID, func(w *Webhook) error { w.Status = WebhookDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	recordEvent(t, s, cid, EventAgentStatusChanged, map[string]any{"id": 1})
	recordEvent(t, s, cid, EventConversationCompleted, map[string]any{"id": 2})
	recordEvent(t, s, cid, EventWhatsAppVerified, map[string]any{"id": 3})

	entries, err := s.ReadOutbox(ctx, "n1", []int64{cid}, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries[cid]) != 0 {
		t.Fatalf("the first read creates the group and returns nothing: %v", entries)
	}
	entries, err = s.ReadOutbox(ctx, "n1", []int64{cid}, 10, nil)
	if err != nil || len(entries[cid]) != 3 {
		t.Fatalf("read %d entries, err %v; want 3 (the group starts at the outbox's start)", len(entries[cid]), err)
	}
	// A webhook registered after the events does not get them.
	late := &Webhook{ID: 999, CompanyID: cid, Status: WebhookActive, Events: EventTypes, CreatedAt: entries[cid][0].CreatedAt.Add(time.Second)}
	hooks, _ := s.ListWebhooks(ctx, cid)
	n, err := s.FanOut(ctx, cid, entries[cid], append(hooks, late))
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("created %d deliveries, want 3 (2 agent, 1 conversation)", n)
	}
	for _, tc := range []struct {
		name  string
		wid   int64
		types []string
	}{
		{"agent only", agentHook.ID, []string{EventAgentStatusChanged}},
		{"two events", convHook.ID, []string{EventConversationCompleted, EventAgentStatusChanged}},
		{"disabled", off.ID, nil},
		{"registered later", 999, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := webhookDeliveries(t, s, cid, tc.wid)
			if len(ds) != len(tc.types) {
				t.Fatalf("%d deliveries, want %d", len(ds), len(tc.types))
			}
			for i, d := range ds { // newest first
				if d.EventType != tc.types[i] || d.Status != DeliveryPending || d.Attempts != 0 || d.NextAttemptAt == nil {
					t.Errorf("delivery %d: %+v", i, d)
				}
			}
		})
	}
	// Everything read was acknowledged: nothing pending in the group.
	if p, _ := s.rdb.XPending(ctx, keyOutbox(cid), OutboxGroup).Result(); p.Count != 0 {
		t.Fatalf("%d entries still pending after fan-out", p.Count)
	}
}

// Two nodes holding the same entry (one took it over with XAUTOCLAIM while the other
// stalled) fan it out once, in either order.
func TestFanOutOnceWhenTakenOver(t *testing.T) {
	for _, order := range []string{"taker first", "stalled first"} {
		t.Run(order, func(t *testing.T) {
			s := newDeliveryStore(t)
			ctx := context.Background()
			cid := dlvCompany(t, s)
			w, _ := s.CreateWebhook(ctx, cid, "https://a.example/h", EventTypes, "")
			s.ReadOutbox(ctx, "stalled", []int64{cid}, 10, nil) // creates the group
			recordEvent(t, s, cid, EventAgentStatusChanged, map[string]any{"id": 1})
			first, err := s.ReadOutbox(ctx, "stalled", []int64{cid}, 10, nil)
			if err != nil || len(first[cid]) != 1 {
				t.Fatalf("stalled read: %v %v", first, err)
			}
			taken, err := s.ClaimStaleOutbox(ctx, cid, "taker", 0, 10)
			if err != nil || len(taken) != 1 {
				t.Fatalf("takeover: %v %v", taken, err)
			}
			hooks := []*Webhook{w}
			a, b := taken, first[cid]
			if order == "stalled first" {
				a, b = b, a
			}
			n1, err1 := s.FanOut(ctx, cid, a, hooks)
			n2, err2 := s.FanOut(ctx, cid, b, hooks)
			if err1 != nil || err2 != nil || n1 != 1 || n2 != 0 {
				t.Fatalf("fan-outs created %d and %d (errors %v, %v); want 1 and 0", n1, n2, err1, err2)
			}
			if ds := webhookDeliveries(t, s, cid, w.ID); len(ds) != 1 {
				t.Fatalf("%d deliveries, want 1", len(ds))
			}
		})
	}
}

// queueOne makes one pending delivery through the outbox, as the worker would.
func queueOne(t testing.TB, s *Store, cid int64, w *Webhook) *Delivery {
	t.Helper()
	d, err := s.QueueDirect(context.Background(), w, EventWebhookTest, map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func claimAll(t testing.TB, s *Store, cid int64, lease time.Duration, token string) []*Delivery {
	t.Helper()
	ds, _, _, err := s.ClaimDeliveries(context.Background(), cid, 1000, lease, token)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestClaimsAreExclusive(t *testing.T) {
	s := newDeliveryStore(t)
	ctx := context.Background()
	cid := dlvCompany(t, s)
	w, _ := s.CreateWebhook(ctx, cid, "https://a.example/h", EventTypes, "")
	const n = 200
	for range n {
		queueOne(t, s, cid, w)
	}
	var mu sync.Mutex
	seen := map[int64]string{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ds, _, _, err := s.ClaimDeliveries(ctx, cid, 7, time.Minute, fmt.Sprintf("node%d", g))
				if err != nil {
					t.Error(err)
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					if prev, dup := seen[d.ID]; dup {
						t.Errorf("delivery %d claimed by node%d and %s", d.ID, g, prev)
					}
					seen[d.ID] = fmt.Sprintf("node%d", g)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("claimed %d deliveries, want %d", len(seen), n)
	}
}

func TestLeaseExpiryAndFencing(t *testing.T) {
	s := newDeliveryStore(t)
	ctx := context.Background()
	cid := dlvCompany(t, s)
	w, _ := s.CreateWebhook(ctx, cid, "https://a.example/h", EventTypes, "")
	queueOne(t, s, cid, w)
	first := claimAll(t, s, cid, 30*time.Millisecond, "dead")
	if len(first) != 1 || string(first[0].Payload) == "" {
		t.Fatalf("claim: %+v", first)
	}
	if again := claimAll(t, s, cid, time.Minute, "other"); len(again) != 0 {
		t.Fatal("a leased delivery was claimed again before its lease ended")
	}
	// The first holder "dies"; once its lease has ended another node takes over.
	var second []*Delivery
	deadline := time.Now().Add(5 * time.Second)
	for len(second) == 0 && time.Now().Before(deadline) {
		second = claimAll(t, s, cid, time.Minute, "other")
	}
	if len(second) != 1 || second[0].ID != first[0].ID {
		t.Fatalf("takeover after the lease: %+v", second)
	}
	// The late first holder cannot record its outcome any more.
	applied, _, err := s.FinishDelivery(ctx, first[0], Attempt{Outcome: OutcomeSucceeded, StatusCode: 200}, nil, time.Hour)
	if err != nil || applied {
		t.Fatalf("stale finish applied=%v err=%v; want refused", applied, err)
	}
	applied, _, err = s.FinishDelivery(ctx, second[0], Attempt{Outcome: OutcomeSucceeded, StatusCode: 204}, nil, time.Hour)
	if err != nil || !applied {
		t.Fatalf("finish applied=%v err=%v", applied, err)
	}
	d, _ := s.GetDelivery(ctx, cid, w.ID, first[0].ID)
	if d.Status != DeliverySucceeded || d.Attempts != 1 || *d.LastStatusCode != 204 || d.NextAttemptAt != nil {
		t.Fatalf("after success: %+v", d)
	}
}

func TestRetrySchedule(t *testing.T) {
	retries := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}
	fail := Attempt{Outcome: OutcomeFailed, StatusCode: 500, Error: "HTTP 500: boom"}
	ok := Attempt{Outcome: OutcomeSucceeded, StatusCode: 200}
	for _, tc := range []struct {
		name     string
		attempts []Attempt
		status   string
		gaps     []time.Duration // scheduled gap after each attempt (0 = none)
	}{
		{"first attempt succeeds", []Attempt{ok}, DeliverySucceeded, []time.Duration{0}},
		{"fails twice then succeeds", []Attempt{fail, fail, ok}, DeliverySucceeded, []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 0}},
		{"schedule used up", []Attempt{fail, fail, fail}, DeliveryFailed, []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newDeliveryStore(t)
			ctx := context.Background()
			cid := dlvCompany(t, s)
			w, _ := s.CreateWebhook(ctx, cid, "https://a.example/h", EventTypes, "")
			d := queueOne(t, s, cid, w)
			for i, a := range tc.attempts {
				var got []*Delivery
				deadline := time.Now().Add(5 * time.Second)
				for len(got) == 0 && time.Now().Before(deadline) {
					got = claimAll(t, s, cid, time.Minute, "n")
				}
				if len(got) != 1 {
					t.Fatalf("attempt %d: nothing to claim", i+1)
				}
				_, next, err := s.FinishDelivery(ctx, got[0], a, retries, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				rec, _ := s.GetDelivery(ctx, cid, w.ID, d.ID)
				if rec.Attempts != i+1 {
					t.Fatalf("attempts %d after attempt %d", rec.Attempts, i+1)
				}
				if tc.gaps[i] == 0 {
					if next != -1 || rec.NextAttemptAt != nil {
						t.Fatalf("attempt %d: next %d, want none", i+1, next)
					}
					continue
				}
				gap := time.Duration(next-rec.LastAttemptAt.UnixMilli()) * time.Millisecond
				if gap != tc.gaps[i] {
					t.Fatalf("attempt %d: next attempt %s after it, want %s", i+1, gap, tc.gaps[i])
				}
			}
			rec, _ := s.GetDelivery(ctx, cid, w.ID, d.ID)
			if rec.Status != tc.status {
				t.Fatalf("status %s, want %s", rec.Status, tc.status)
			}
			if ttl := s.rdb.TTL(ctx, keyDelivery(cid, d.ID)).Val(); ttl <= 0 || ttl > time.Hour {
				t.Fatalf("a finished delivery expires after the retention; TTL %s", ttl)
			}
		})
	}
}

func TestRedeliver(t *testing.T) {
	s := newDeliveryStore(t)
	ctx := context.Background()
	cid := dlvCompany(t, s)
	w, _ := s.CreateWebhook(ctx, cid, "https://a.example/h", EventTypes, "")
	other, _ := s.CreateWebhook(ctx, cid, "https://b.example/h", EventTypes, "")
	d := queueOne(t, s, cid, w)
	got := claimAll(t, s, cid, time.Minute, "n")
	if _, err := s.Redeliver(ctx, cid, w.ID, d.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("redeliver during an attempt: %v, want a conflict", err)
	}
	s.FinishDelivery(ctx, got[0], Attempt{Outcome: OutcomeFailed, Error: "x"}, nil, time.Hour)
	if rec, _ := s.GetDelivery(ctx, cid, w.ID, d.ID); rec.Status != DeliveryFailed {
		t.Fatalf("status %s, want failed (no retries)", rec.Status)
	}
	if _, err := s.Redeliver(ctx, cid, other.ID, d.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("redeliver through another webhook: %v", err)
	}
	rec, err := s.Redeliver(ctx, cid, w.ID, d.ID)
	if err != nil || rec.Status != DeliveryPending || rec.NextAttemptAt == nil {
		t.Fatalf("redeliver: %+v %v", rec, err)
	}
	if ttl := s.rdb.TTL(ctx, keyDelivery(cid, d.ID)).Val(); ttl != -1 {
		t.Fatalf("a pending delivery does not expire; TTL %s", ttl)
	}
	got = claimAll(t, s, cid, time.Minute, "n")
	if len(got) != 1 {
		t.Fatal("the redelivered delivery is not due")
	}
	s.FinishDelivery(ctx, got[0], Attempt{Outcome: OutcomeFailed, Error: "y"}, nil, time.Hour)
	if rec, _ := s.GetDelivery(ctx, cid, w.ID, d.ID); rec.Status != DeliveryFailed || rec.Attempts != 2 || *rec.LastError != "y" {
		t.Fatalf("after the extra attempt: %+v", rec)
	}
}

func TestParkResumeAndDrop(t *testing.T) {
	s := newDeliveryStore(t)
	ctx := context.Background()
	cid := dlvCompany(t, s)
	w, _ := s.CreateWebhook(ctx, cid, "https://a.example/h", EventTypes, "")
	d := queueOne(t, s, cid, w)
	got := claimAll(t, s, cid, time.Minute, "n")
	if applied, _, err := s.FinishDelivery(ctx, got[0], Attempt{Outcome: OutcomePark}, nil, time.Hour); !applied || err != nil {
		t.Fatal(applied, err)
	}
	rec, _ := s.GetDelivery(ctx, cid, w.ID, d.ID)
	if !rec.Parked || rec.Status != DeliveryPending || rec.NextAttemptAt != nil || rec.Attempts != 0 {
		t.Fatalf("parked: %+v", rec)
	}
	if len(claimAll(t, s, cid, time.Minute, "n")) != 0 {
		t.Fatal("a parked delivery was claimed")
	}
	parked, _ := s.ParkedWebhooks(ctx, []int64{cid})
	if len(parked[cid]) != 1 || parked[cid][0] != w.ID {
		t.Fatalf("parked webhooks: %v", parked)
	}
	if n, err := s.ResumeParked(ctx, cid, w.ID, 10); n != 1 || err != nil {
		t.Fatalf("resume: %d %v", n, err)
	}
	if parked, _ := s.ParkedWebhooks(ctx, []int64{cid}); len(parked) != 0 {
		t.Fatalf("still listed as parked: %v", parked)
	}
	got = claimAll(t, s, cid, time.Minute, "n")
	if len(got) != 1 || got[0].Parked {
		t.Fatalf("after resume: %+v", got)
	}
	// The webhook is deleted: the delivery goes.
	if err := s.DeleteWebhook(ctx, cid, w.ID); err != nil {
		t.Fatal(err)
	}
	if applied, _, err := s.FinishDelivery(ctx, got[0], Attempt{Outcome: OutcomeDrop}, nil, time.Hour); !applied || err != nil {
		t.Fatal(applied, err)
	}
	if _, err := s.GetDelivery(ctx, cid, w.ID, d.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("dropped delivery: %v", err)
	}
	if n := s.rdb.ZCard(ctx, keyDeliveriesDue(cid)).Val(); n != 0 {
		t.Fatalf("%d deliveries still due", n)
	}
}

func TestListDeliveriesPages(t *testing.T) {
	s := newDeliveryStore(t)
	ctx := context.Background()
	cid := dlvCompany(t, s)
	w, _ := s.CreateWebhook(ctx, cid, "https://a.example/h", EventTypes, "")
	var ids []int64
	for range 7 {
		ids = append(ids, queueOne(t, s, cid, w).ID)
	}
	s.rdb.Del(ctx, keyDelivery(cid, ids[3])) // expired
	var got []int64
	cursor := int64(0)
	for {
		p, err := s.ListDeliveries(ctx, cid, w.ID, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Items {
			got = append(got, d.ID)
		}
		if !p.HasMore {
			break
		}
		cursor = p.NextCursor
	}
	want := []int64{ids[6], ids[5], ids[4], ids[2], ids[1], ids[0]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages gave %v, want %v", got, want)
	}
}

func TestNoteWebhookHealth(t *testing.T) {
	s := newDeliveryStore(t)
	ctx := context.Background()
	cid := dlvCompany(t, s)
	w, _ := s.CreateWebhook(ctx, cid, "https://a.example/h", EventTypes, "")
	if ch, _ := s.NoteWebhookHealth(ctx, cid, w.ID, w.URL, true, "", time.Hour); ch != nil {
		t.Fatal("a success of a healthy webhook changed it")
	}
	ch, err := s.NoteWebhookHealth(ctx, cid, w.ID, w.URL, false, "HTTP 500", time.Hour)
	if err != nil || ch == nil || ch.FailingSince == nil || ch.Status != WebhookActive {
		t.Fatalf("first failure: %+v %v", ch, err)
	}
	if ch, _ := s.NoteWebhookHealth(ctx, cid, w.ID, "https://old.example/h", false, "x", 0); ch != nil {
		t.Fatal("an attempt to a URL the webhook no longer has counted")
	}
	ch, _ = s.NoteWebhookHealth(ctx, cid, w.ID, w.URL, false, "HTTP 503: down", 0)
	if ch == nil || ch.Status != WebhookDisabled || ch.DisabledAt == nil || ch.DisableReason == nil {
		t.Fatalf("disable: %+v", ch)
	}
	t.Log(*ch.DisableReason)
}

func TestTrimOutboxKeepsUnfinished(t *testing.T) {
	s := newDeliveryStore(t)
	ctx := context.Background()
	cid := dlvCompany(t, s)
	s.ReadOutbox(ctx, "n", []int64{cid}, 10, nil)
	for i := range 300 {
		recordEvent(t, s, cid, EventAgentStatusChanged, map[string]any{"i": i})
	}
	es, _ := s.ReadOutbox(ctx, "n", []int64{cid}, 250, nil)
	if _, err := s.FanOut(ctx, cid, es[cid][:200], nil); err != nil {
		t.Fatal(err)
	}
	// 200 acknowledged, 50 read but pending, 50 not read yet.
	if err := s.TrimOutbox(ctx, cid); err != nil {
		t.Fatal(err)
	}
	msgs, _ := s.rdb.XRange(ctx, keyOutbox(cid), "-", "+").Result()
	if len(msgs) < 100 || len(msgs) == 300 {
		t.Fatalf("%d entries left; want the 100 unfinished ones kept and (most of) the rest trimmed", len(msgs))
	}
	if msgs[len(msgs)-100].ID != es[cid][200].StreamID {
		t.Fatalf("the oldest pending entry was trimmed")
	}
}
