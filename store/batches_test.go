package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxco/gateway/store/redistest"
)

// TestBatchStateMachine: the batch scripts on redis-server and on the embedded
// server. Twenty goroutines claiming the same recipient: exactly one gets it.
// Only the lease's holder claims; a second node cannot take a held lease; a
// stale attempt's finish is refused; a lease taken over marks the lost
// holder's calls interrupted; the batch completes when nothing is left.
func TestBatchStateMachine(t *testing.T) {
	for _, tc := range []struct{ name, url string }{
		{"redis-server", redistest.StartRedis(t).URL},
		{"embedded", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealer, _ := NewSealer(GenerateSecretKey())
			ctx := context.Background()
			s, err := Open(ctx, Options{URL: tc.url, Sealer: sealer})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			rs := make([]BatchRecipient, 3)
			for i := range rs {
				rs[i] = BatchRecipient{Number: fmt.Sprintf("+4420712345%02d", i), TimeZone: "Europe/London"}
			}
			b, err := s.CreateBatch(ctx, Batch{CompanyID: 9, AgentID: 1, CallsPerSecond: 1, MaxConcurrent: 1,
				Retry: RetryPolicy{MaxAttempts: 2, Delay: Duration(time.Minute), Backoff: 2}}, rs)
			if err != nil {
				t.Fatal(err)
			}
			ref := BatchRef{9, b.ID}
			if ok, _, err := s.AcquireBatchLease(ctx, ref, "A", time.Minute); !ok || err != nil {
				t.Fatalf("acquire: %v %v", ok, err)
			}
			if ok, _, _ := s.AcquireBatchLease(ctx, ref, "B", time.Minute); ok {
				t.Fatal("B took a held lease")
			}
			if _, err := s.ClaimRecipient(ctx, ref, "B", 0); !errors.Is(err, ErrLeaseLost) {
				t.Fatalf("claim without the lease: %v", err)
			}
			var won atomic.Int32
			var wg sync.WaitGroup
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if a, err := s.ClaimRecipient(ctx, ref, "A", 0); err == nil && a == 1 {
						won.Add(1)
					} else if !errors.Is(err, ErrNotDue) {
						t.Errorf("claim: %v", err)
					}
				}()
			}
			wg.Wait()
			if won.Load() != 1 {
				t.Fatalf("%d claims of one recipient succeeded", won.Load())
			}
			// Busy: retry in a minute; the stale attempt number is refused.
			if ok, _ := s.FinishRecipient(ctx, ref, 0, 2, RecipientAnswered, 2, nil, time.Time{}); ok {
				t.Fatal("finish of an attempt that was never made")
			}
			retryAt := s.now().Add(time.Minute)
			if ok, err := s.FinishRecipient(ctx, ref, 0, 1, RecipientRetry, 1, &BatchAttempt{Attempt: 1, Outcome: "busy", SIPStatus: 486}, retryAt); !ok || err != nil {
				t.Fatalf("finish: %v %v", ok, err)
			}
			if ok, _ := s.FinishRecipient(ctx, ref, 0, 1, RecipientAnswered, 1, nil, time.Time{}); ok {
				t.Fatal("a second finish of the same attempt")
			}
			due, next, _ := s.DueRecipients(ctx, ref, s.now(), 10)
			if fmt.Sprint(due) != "[1 2]" || next.UnixMilli() != retryAt.UnixMilli() {
				t.Fatalf("due %v next %v, want [1 2] then %v", due, next, retryAt)
			}
			// A claims 1 and "dies"; B takes over after the lease lapses.
			if _, err := s.ClaimRecipient(ctx, ref, "A", 1); err != nil {
				t.Fatal(err)
			}
			s.rdb.Del(ctx, keyBatchPart(ref, "lease")) // the lease lapsing
			ok, interrupted, err := s.AcquireBatchLease(ctx, ref, "B", time.Minute)
			if !ok || interrupted != 1 || err != nil {
				t.Fatalf("takeover: %v %d %v", ok, interrupted, err)
			}
			if err := s.RenewBatchLease(ctx, ref, "A", time.Minute); !errors.Is(err, ErrLeaseLost) {
				t.Fatalf("A renewing a lost lease: %v", err)
			}
			// A's call ends after all: its outcome is still recorded.
			if ok, _ := s.FinishRecipient(ctx, ref, 1, 1, RecipientAnswered, 1, &BatchAttempt{Attempt: 1, Outcome: "answered"}, time.Time{}); !ok {
				t.Fatal("the late outcome of an interrupted call was refused")
			}
			for _, i := range []int{0, 2} {
				if _, err := s.ClaimRecipient(ctx, ref, "B", i); err != nil {
					t.Fatalf("claim %d: %v", i, err)
				}
			}
			s.FinishRecipient(ctx, ref, 0, 2, RecipientBusy, 2, nil, time.Time{})
			s.FinishRecipient(ctx, ref, 2, 1, RecipientRejected, 1, nil, time.Time{})
			got, err := s.GetBatch(ctx, 9, b.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != BatchCompleted || got.FinishedAt == nil || fmt.Sprint(got.Counts) != "map[answered:1 busy:1 rejected:1]" {
				t.Fatalf("batch %+v", got)
			}
			prog, _ := s.BatchRecipients(ctx, 9, b.ID, 0, 10)
			if len(prog) != 3 || prog[0].Attempts != 2 || prog[0].Status != RecipientBusy || prog[1].Last.Outcome != "answered" {
				t.Fatalf("progress %+v", prog)
			}
			if _, err := s.CancelBatch(ctx, 9, b.ID); !errors.Is(err, ErrConflict) {
				t.Fatalf("cancel a completed batch: %v", err)
			}
			if _, err := s.GetBatch(ctx, 9, b.ID+100); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing batch: %v", err)
			}
		})
	}
}

// TestBatchTenThousand: the largest batch is written in one transaction and
// read back page by page.
func TestBatchTenThousand(t *testing.T) {
	sealer, _ := NewSealer(GenerateSecretKey())
	ctx := context.Background()
	s, err := Open(ctx, Options{URL: redistest.StartRedis(t).URL, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rs := make([]BatchRecipient, MaxBatchRecipients)
	for i := range rs {
		rs[i] = BatchRecipient{Number: fmt.Sprintf("+44207%07d", i), DynamicVariables: map[string]any{"name": fmt.Sprint("n", i)}}
	}
	start := time.Now()
	b, err := s.CreateBatch(ctx, Batch{CompanyID: 1, AgentID: 1}, rs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("10,000 recipients written in %v", time.Since(start).Round(time.Millisecond))
	if _, err := s.CreateBatch(ctx, Batch{CompanyID: 1}, append(rs, rs[0])); err == nil {
		t.Error("10,001 recipients accepted")
	}
	got, _ := s.GetBatch(ctx, 1, b.ID)
	if got.Total != MaxBatchRecipients || got.Counts[RecipientPending] != MaxBatchRecipients {
		t.Fatalf("%+v", got)
	}
	page, err := s.BatchRecipients(ctx, 1, b.ID, 9990, 100)
	if err != nil || len(page) != 10 || page[9].Number != "+442070009999" || page[9].DynamicVariables["name"] != "n9999" || page[9].Status != RecipientPending {
		t.Fatalf("last page: %d %v %+v", len(page), err, page)
	}
}

// TestListBatches: newest first, paged by id, filtered by agent and status,
// on the embedded server (the same commands as redis-server's), over more
// batches than one scan chunk.
func TestListBatches(t *testing.T) {
	sealer, _ := NewSealer(GenerateSecretKey())
	ctx := context.Background()
	s, err := Open(ctx, Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rs := []BatchRecipient{{Number: "+442071234500"}}
	var ids []int64 // agent 1's, oldest first
	for i := range 150 {
		b, err := s.CreateBatch(ctx, Batch{CompanyID: 4, AgentID: int64(1 + i%2), RingTimeout: 20, MachineDetection: "detect"}, rs)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			ids = append(ids, b.ID)
		}
	}
	if _, err := s.CancelBatch(ctx, 4, ids[10]); err != nil {
		t.Fatal(err)
	}
	var got []int64
	for before, pages := int64(0), 0; ; pages++ {
		bs, more, err := s.ListBatches(ctx, 4, 1, "", before, 30)
		if err != nil || pages > 5 {
			t.Fatal(err, pages)
		}
		for _, b := range bs {
			got = append(got, b.ID)
			if b.AgentID != 1 || b.RingTimeout != 20 || b.MachineDetection != "detect" {
				t.Fatalf("batch %+v", b)
			}
		}
		if !more {
			break
		}
		before = bs[len(bs)-1].ID
	}
	if len(got) != 75 || got[0] != ids[74] || got[74] != ids[0] {
		t.Fatalf("agent 1's batches: %d, first %d last %d; want 75, %d, %d", len(got), got[0], got[len(got)-1], ids[74], ids[0])
	}
	for i := 1; i < len(got); i++ {
		if got[i] >= got[i-1] {
			t.Fatalf("not newest first: %v", got)
		}
	}
	if bs, more, _ := s.ListBatches(ctx, 4, 0, BatchCancelled, 0, 30); len(bs) != 1 || more || bs[0].ID != ids[10] {
		t.Fatalf("cancelled: %v %v", bs, more)
	}
	if bs, _, _ := s.ListBatches(ctx, 5, 0, "", 0, 30); len(bs) != 0 {
		t.Fatalf("another company's: %v", bs)
	}
}
