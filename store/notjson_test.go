package store

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/store/redistest"
)

// TestNaNFigureDoesNotCostTheCall: a call's end whose media figures hold a NaN
// and an infinity (metadata_.rtp.mos, jitter_depth_avg_ms, the audio quality — as
// an overloaded node once produced, which panicked the process in store.mustJSON
// with 500 calls up) goes through the spool as the gateway sends it. The call
// ends all the same: status, end reason, duration, usage, its
// conversation.completed event and every other figure are stored; only the
// values JSON cannot hold are left out, logged and counted. A transcript entry
// with a NaN time keeps its words. A store call from the API with such a value
// writes nothing and returns ErrNotJSON (the API answers 500 with
// {detail, error_type}). A live-calls refresh leaves out only the bad call. The
// spool file written at a shutdown during a Redis outage keeps the end, without
// the bad values.
func TestNaNFigureDoesNotCostTheCall(t *testing.T) {
	r := redistest.StartPersistentRedis(t)
	ctx := context.Background()
	sealer, _ := NewSealer(GenerateSecretKey())
	s, err := Open(ctx, Options{URL: r.URL, Sealer: sealer, NodeID: "gw-nan"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var mu sync.Mutex
	counted := map[string]int{}
	s.OnNotJSON(func(what string) { mu.Lock(); counted[what]++; mu.Unlock() })

	co, _, err := s.CreateCompany(ctx, "NaN Co", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 12, 14, 0, 0, 0, time.UTC)
	answered := start.Add(2 * time.Second)
	newCall := func() *Conversation {
		c, err := s.CreateConversation(ctx, Conversation{CompanyID: co.ID, AgentID: 7, Channel: "voice", Direction: "inbound", StartedAt: start})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpdateConversation(ctx, co.ID, c.ID, func(c *Conversation) error { c.AnsweredAt = &answered; return nil }); err != nil {
			t.Fatal(err)
		}
		return c
	}
	badEnd := func() *Final {
		return &Final{Status: ConvCompleted, EndedAt: answered.Add(42 * time.Second), EndReason: "caller_hangup",
			Metadata: map[string]any{"rtp": map[string]any{"codec": "PCMU", "packets_received": 2100.0, "mos": math.NaN(),
				"jitter_depth_avg_ms": math.Inf(-1), "r_factor": math.NaN()}},
			AudioQuality: &AudioQuality{MOS: math.NaN(), RFactor: math.NaN(), Rating: "poor", Poor: true}}
	}

	conv := newCall()
	sp := NewSpool(s, SpoolOptions{})
	sp.Do(Write{Op: WriteAppend, CompanyID: co.ID, Conversation: conv.ID, Index: 0, Entry: &TranscriptEntry{Role: "user", Message: "Hello?", Timestamp: math.NaN()}})
	sp.Do(Write{Op: WriteFinish, CompanyID: co.ID, Conversation: conv.ID, Final: badEnd()})
	if err := sp.Flush(Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	sp.Close(time.Second)
	d, err := s.GetConversationDetail(ctx, co.ID, conv.ID)
	if err != nil {
		t.Fatal(err)
	}
	rtp, _ := d.Metadata["rtp"].(map[string]any)
	if d.Status != ConvCompleted || d.EndReason == nil || *d.EndReason != "caller_hangup" || d.DurationSeconds == nil || *d.DurationSeconds != 42 {
		t.Fatalf("the call's end was not stored: %+v", d.Conversation)
	}
	if rtp["codec"] != "PCMU" || rtp["packets_received"] != 2100.0 || len(rtp) != 2 || d.AudioQuality != nil {
		t.Fatalf("metadata_.rtp %v, audio_quality %+v: want the finite figures only", rtp, d.AudioQuality)
	}
	if len(d.Transcript) != 1 || d.Transcript[0].Message != "Hello?" || d.Transcript[0].Timestamp != 0 {
		t.Fatalf("transcript %+v", d.Transcript)
	}
	if u, err := s.UsageRange(ctx, co.ID, start, start, 0); err != nil || u.Total.VoiceConversations != 1 || u.Total.VoiceSeconds != 42 {
		t.Fatalf("usage %+v, %v", u.Total, err)
	}
	evs, err := s.rdb.XRange(ctx, keyOutbox(co.ID), "-", "+").Result()
	if err != nil || len(evs) != 1 || evs[0].Values["type"] != EventConversationCompleted {
		t.Fatalf("outbox %v, %v: want one conversation.completed", evs, err)
	}
	mu.Lock()
	if counted[WriteFinish] != 1 || counted[WriteAppend] != 1 {
		t.Fatalf("counted %v", counted)
	}
	mu.Unlock()

	// The API's way: the store call fails, nothing is written.
	_, err = s.UpdateConversation(ctx, co.ID, conv.ID, func(c *Conversation) error {
		c.mergeMetadata(map[string]any{"note": "kept?", "score": math.Inf(1)})
		return nil
	})
	if !errors.Is(err, ErrNotJSON) {
		t.Fatalf("update with an infinite value: %v, want ErrNotJSON", err)
	}
	if c, _ := s.GetConversation(ctx, co.ID, conv.ID); c.Metadata["note"] != nil {
		t.Fatalf("a failed update wrote part of itself: %v", c.Metadata)
	}

	// Live calls: the bad one is left out, the good one written.
	nan := math.NaN()
	good := LiveCall{ConversationID: 1001, CompanyID: co.ID, StartedAt: start, UpdatedAt: time.Now(), Quality: &LiveQuality{JitterMS: 3}}
	bad := LiveCall{ConversationID: 1002, CompanyID: co.ID, StartedAt: start, UpdatedAt: time.Now(), Quality: &LiveQuality{MOS: &nan}}
	if err := s.PutLiveCalls(ctx, []LiveCall{bad, good}); !errors.Is(err, ErrNotJSON) {
		t.Fatalf("live calls with a NaN: %v, want ErrNotJSON", err)
	}
	live, err := s.LiveCalls(ctx, co.ID)
	if err != nil || len(live) != 1 || live[0].ConversationID != 1001 {
		t.Fatalf("live calls %+v, %v: want the good one", live, err)
	}
	if err := s.EndLiveCalls(ctx, []LiveCall{bad, good}); err != nil {
		t.Fatalf("ending live calls: %v", err)
	}

	// A shutdown during a Redis outage: the end goes to the spool file without the bad values.
	conv2 := newCall()
	dir := t.TempDir()
	r.Stop()
	sp = NewSpool(s, SpoolOptions{Dir: dir, Node: "gw-nan"})
	sp.Do(Write{Op: WriteFinish, CompanyID: co.ID, Conversation: conv2.ID, Final: badEnd()})
	sp.Close(100 * time.Millisecond)
	files, _ := filepath.Glob(filepath.Join(dir, "spool-*.log"))
	if len(files) != 1 {
		t.Fatalf("spool files: %v", files)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ws, badLines, err := readSpool(f)
	if err != nil || badLines != 0 || len(ws) != 1 || ws[0].Final == nil || ws[0].Final.Status != ConvCompleted {
		t.Fatalf("spool file: %+v, %d bad lines, %v", ws, badLines, err)
	}
	if m, _ := ws[0].Final.Metadata["rtp"].(map[string]any); m["packets_received"] != 2100.0 || len(m) != 2 {
		t.Fatalf("spooled metadata %v", ws[0].Final.Metadata)
	}
}
