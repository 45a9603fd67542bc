package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// The outbox gets exactly one event per committed change and none for a change that
// failed: each case runs a change and compares the outbox before and after.

func liveAgent(t testing.TB, s *Store, cid int64, number string) *Agent {
	t.Helper()
	ctx := context.Background()
	if _, err := s.AddNumber(ctx, number, "ZA", "sip_trunk", false); err != nil {
		t.Fatal(err)
	}
	a, err := s.CreateAgent(ctx, Agent{CompanyID: cid, Name: "Ava", Personality: "p", OpeningLine: "hi", VoiceID: 1, Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	a, err = s.PublishAgent(ctx, cid, a.ID, "ZA",
		func(context.Context, *Agent) (ProviderAgent, error) { return ProviderAgent{ID: "ext_" + number}, nil }, func(context.Context, ProviderAgent) {})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestEventsOnePerCommittedChange(t *testing.T) {
	s := newDeliveryStore(t)
	ctx := context.Background()
	cid := dlvCompany(t, s)
	a := liveAgent(t, s, cid, "+27210000001")
	if got := outboxTypes(t, s, cid); !slices.Equal(got, []string{EventAgentStatusChanged}) {
		t.Fatalf("publish recorded %v", got)
	}
	conv := func() *Conversation {
		c, err := s.CreateConversation(ctx, Conversation{AgentID: a.ID, CompanyID: cid, Channel: "voice", Direction: "inbound"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1, c2 := conv(), conv()
	draft, _ := s.CreateAgent(ctx, Agent{CompanyID: cid, Name: "Draft", VoiceID: 1, Language: "en"})

	for _, tc := range []struct {
		name   string
		change func() error
		want   []string // events it records
		fails  bool
	}{
		{"pause", func() error { _, err := s.PauseAgent(ctx, cid, a.ID); return err }, []string{EventAgentStatusChanged}, false},
		{"pause again (conflict)", func() error { _, err := s.PauseAgent(ctx, cid, a.ID); return err }, nil, true},
		{"resume", func() error { _, err := s.ResumeAgent(ctx, cid, a.ID); return err }, []string{EventAgentStatusChanged}, false},
		{"resume a draft (conflict)", func() error { _, err := s.ResumeAgent(ctx, cid, draft.ID); return err }, nil, true},
		{"publish without a number (conflict)", func() error {
			_, err := s.PublishAgent(ctx, cid, draft.ID, "GB", func(context.Context, *Agent) (ProviderAgent, error) { return ProviderAgent{ID: "x"}, nil }, func(context.Context, ProviderAgent) {})
			return err
		}, nil, true},
		{"publish failing at the provider", func() error {
			s.AddNumber(ctx, "+27210000002", "ZA", "sip_trunk", false)
			_, err := s.PublishAgent(ctx, cid, draft.ID, "ZA", func(context.Context, *Agent) (ProviderAgent, error) {
				return ProviderAgent{}, errors.New("provider down")
			}, func(context.Context, ProviderAgent) {})
			return err
		}, nil, true},
		{"finish a conversation", func() error {
			_, err := s.FinishConversation(ctx, cid, c1.ID, Final{Status: ConvCompleted, EndReason: "caller hung up"})
			return err
		}, []string{EventConversationCompleted}, false},
		{"finish it again (no-op)", func() error {
			_, err := s.FinishConversation(ctx, cid, c1.ID, Final{Status: ConvCompleted})
			return err
		}, nil, false},
		{"transfer a conversation", func() error {
			_, err := s.FinishConversation(ctx, cid, c2.ID, Final{Status: ConvTransferred, ReferTo: "+27110000000"})
			return err
		}, []string{EventConversationTransferred}, false},
		{"finish a missing conversation", func() error {
			_, err := s.FinishConversation(ctx, cid, 99999, Final{Status: ConvCompleted})
			return err
		}, nil, true},
		{"archive", func() error { _, _, err := s.ArchiveAgent(ctx, cid, draft.ID); return err }, []string{EventAgentStatusChanged}, false},
		{"archive again (conflict)", func() error { _, _, err := s.ArchiveAgent(ctx, cid, draft.ID); return err }, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(outboxTypes(t, s, cid))
			err := tc.change()
			if (err != nil) != tc.fails {
				t.Fatalf("err = %v, want failure %v", err, tc.fails)
			}
			got := outboxTypes(t, s, cid)[before:]
			if !slices.Equal(got, tc.want) {
				t.Fatalf("recorded %v, want %v", got, tc.want)
			}
		})
	}
}

// Verifiers racing on one verification (a job whose lease ran out while the first
// was slow) record one answer and one event.
func TestWhatsAppVerifiedOnceUnderRace(t *testing.T) {
	s := newDeliveryStore(t)
	ctx := context.Background()
	cid := dlvCompany(t, s)
	a := liveAgent(t, s, cid, "+27210000003")
	pnid := *a.PhoneNumberID
	for round := range 5 {
		// Each round refuses the number, so the next round can enable it again.
		if _, err := s.EnableWhatsApp(ctx, cid, pnid, time.Now()); err != nil {
			t.Fatal(err)
		}
		before := len(outboxTypes(t, s, cid))
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.CompleteWhatsApp(ctx, cid, pnid, false, fmt.Sprint("wa", g))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case !errors.Is(err, ErrConflict):
					t.Errorf("verifier %d: %v", g, err)
				}
			}()
		}
		wg.Wait()
		got := outboxTypes(t, s, cid)[before:]
		if wins != 1 || !slices.Equal(got, []string{EventWhatsAppVerified}) {
			t.Fatalf("round %d: %d verifiers won, events %v; want 1 and one %s", round, wins, got, EventWhatsAppVerified)
		}
	}
}
