package store

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cxco/gateway/store/redistest"
)

// TestErrorHookCountsFailuresOnly: a healthy store reports no errors through a
// run of ordinary writes, though go-redis meets NOSCRIPT the first time each Lua
// script runs (and loads it) and the server may refuse its optional handshakes;
// a command that does fail is reported. cxco_redis_errors_total counts these.
func TestErrorHookCountsFailuresOnly(t *testing.T) {
	for _, tc := range []struct{ name, url string }{
		{"redis-server", redistest.StartRedis(t).URL},
		{"embedded", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealer, err := NewSealer(GenerateSecretKey())
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			s, err := Open(ctx, Options{URL: tc.url, Sealer: sealer})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var mu sync.Mutex
			var errs []string
			s.OnError(func(err error) { mu.Lock(); errs = append(errs, err.Error()); mu.Unlock() })
			reported := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), errs...) }

			co, _, err := s.CreateCompany(ctx, "Hook Co", "", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.AddNumber(ctx, "+15550100", "US", "", false); err != nil {
				t.Fatal(err)
			}
			caller := "+15551234"
			for range 2 {
				c, err := s.CreateConversation(ctx, Conversation{CompanyID: co.ID, AgentID: 1, Channel: "voice", Direction: "inbound",
					CallerNumber: &caller, StartedAt: s.Now(), Status: ConvInProgress})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.AppendTranscript(ctx, co.ID, c.ID, TranscriptEntry{Role: "user", Message: "hi"}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.FinishConversation(ctx, co.ID, c.ID, Final{Status: ConvCompleted, EndedAt: s.Now().Add(time.Second)}); err != nil {
					t.Fatal(err)
				}
			}
			if got := reported(); len(got) != 0 {
				t.Fatalf("a healthy store reported %d errors: %q", len(got), got)
			}
			if err := s.rdb.Do(ctx, "NO.SUCH.COMMAND").Err(); err == nil {
				t.Fatal("an unknown command succeeded")
			}
			if got := reported(); len(got) != 1 {
				t.Fatalf("a failed command: %d errors reported, want 1: %q", len(got), got)
			}
			// A pipeline: a missing key (normal), then a failure: one error.
			pipe := s.rdb.Pipeline()
			pipe.Get(ctx, "no-such-key")
			pipe.Do(ctx, "NO.SUCH.COMMAND")
			if _, err := pipe.Exec(ctx); err == nil {
				t.Fatal("the pipeline succeeded")
			}
			if got := reported(); len(got) != 2 || !strings.Contains(got[1], "NO.SUCH.COMMAND") && !strings.Contains(strings.ToLower(got[1]), "unknown command") {
				t.Fatalf("a failed pipeline: reported %q, want one more error, the unknown command's", got)
			}
		})
	}
}

// TestEmbeddedNeedsPassword: the embedded server listens on 127.0.0.1 (go-redis
// talks to it over TCP); it asks for a password only this process knows, so another
// local user cannot read the store.
func TestEmbeddedNeedsPassword(t *testing.T) {
	sealer, err := NewSealer(GenerateSecretKey())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := redis.NewClient(&redis.Options{Addr: s.embedded.Addr()})
	defer c.Close()
	err = c.Get(context.Background(), "anything").Err()
	if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("a client without the password: %v, want NOAUTH", err)
	}
}
