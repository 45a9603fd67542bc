package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/store/redistest"
)

func sampleWrites() []Write {
	yes := true
	sum := "Caller asked about opening hours."
	end := time.Date(2026, 3, 12, 14, 30, 7, 0, time.UTC)
	return []Write{
		{Op: WriteExternalID, CompanyID: 3, Conversation: 9, ExternalID: "conv_abc"},
		{Op: WriteAppend, CompanyID: 3, Conversation: 9, Index: 0, Entry: &TranscriptEntry{Role: "agent", Message: "Hello — how can I help?", Timestamp: 0.4}},
		{Op: WriteAppend, CompanyID: 3, Conversation: 9, Index: 1, Entry: &TranscriptEntry{Role: "user", Message: "When do you open?\nTomorrow?", Timestamp: 3.2}},
		{Op: WriteSetEntry, CompanyID: 3, Conversation: 9, Index: 0, Entry: &TranscriptEntry{Role: "agent", Message: "Hello", Timestamp: 0.4}},
		{Op: WriteFinish, CompanyID: 3, Conversation: 9, Final: &Final{Status: ConvCompleted, EndedAt: end, EndReason: "caller_hangup",
			Metadata: map[string]any{"rtp": map[string]any{"lost": 2.0}}}},
		{Op: WriteAnalysis, CompanyID: 3, Conversation: 9, Summary: &sum, Successful: &yes, Metadata: map[string]any{"llm_tokens": 120.0}},
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSpoolFileFormat: writes survive the file as they were; a damaged line or a
// last line cut short is skipped and counted while the rest is read; the file is
// bounded; a file that is not a spool file is refused, not half-read.
func TestSpoolFileFormat(t *testing.T) {
	ws := sampleWrites()
	dir := t.TempDir()
	path, n, err := writeSpoolFile(dir, "gw/1", ws, 1<<20)
	if err != nil || n != len(ws) {
		t.Fatalf("write: %d of %d, %v", n, len(ws), err)
	}
	if !strings.HasPrefix(filepath.Base(path), "spool-gw_1-") {
		t.Fatalf("file name %s: the node id is not made safe", path)
	}
	raw, _ := os.ReadFile(path)

	read := func(b []byte) ([]Write, int, error) { return readSpool(bytes.NewReader(b)) }
	got, bad, err := read(raw)
	if err != nil || bad != 0 || len(got) != len(ws) {
		t.Fatalf("read back %d writes, %d bad, %v", len(got), bad, err)
	}
	if a, b := jsonOf(t, got), jsonOf(t, ws); a != b {
		t.Fatalf("round trip changed the writes:\n%s\n%s", a, b)
	}

	lines := bytes.SplitAfter(raw, []byte("\n"))
	noWrite, err := encodeSpoolLine(Write{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		data      []byte
		good, bad int
		err       bool
	}{
		{name: "a flipped byte in line 3", data: func() []byte {
			b := bytes.Clone(raw)
			i := len(lines[0]) + len(lines[1]) + len(lines[2]) + 20
			b[i] ^= 0x20
			return b
		}(), good: len(ws) - 1, bad: 1},
		{name: "last line cut short", data: raw[:len(raw)-7], good: len(ws) - 1, bad: 1},
		{name: "cut inside the checksum", data: append(bytes.Clone(raw), []byte("1a2b")...), good: len(ws), bad: 1},
		{name: "garbage line in the middle", data: bytes.Join([][]byte{lines[0], lines[1], []byte("not a record\n"), bytes.Join(lines[2:], nil)}, nil), good: len(ws), bad: 1},
		{name: "a record that is valid JSON but no write", data: append(bytes.Clone(raw), noWrite...), good: len(ws), bad: 1},
		{name: "header only", data: []byte(spoolHeader + "\n"), good: 0},
		{name: "empty file", data: nil, err: true},
		{name: "another format", data: []byte("{\"op\":\"finish\"}\n"), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, bad, err := read(tc.data)
			if tc.err {
				if err == nil {
					t.Fatalf("read %d writes from a file that is not a spool file", len(got))
				}
				return
			}
			if err != nil || len(got) != tc.good || bad != tc.bad {
				t.Fatalf("got %d good, %d bad, %v; want %d good, %d bad", len(got), bad, err, tc.good, tc.bad)
			}
		})
	}

	t.Run("bounded", func(t *testing.T) {
		l0, _ := encodeSpoolLine(ws[0])
		l1, _ := encodeSpoolLine(ws[1])
		limit := int64(len(spoolHeader)+1) + int64(len(l0)+len(l1))
		path, n, err := writeSpoolFile(t.TempDir(), "gw1", ws, limit)
		if err != nil || n != 2 {
			t.Fatalf("wrote %d, %v; want the 2 that fit", n, err)
		}
		if fi, _ := os.Stat(path); fi.Size() > limit {
			t.Fatalf("file is %d bytes, bound %d", fi.Size(), limit)
		}
	})
}

// TestSpoolSurvivesRestart: with Redis away at shutdown, the spool's pending
// writes — transcript entries and the call's end with its usage — go to the spool
// file; the next start replays them once Redis is back, removes the file, and a
// second replay of the same writes (a crash mid-replay) changes nothing. A file
// another process is replaying is left to it; a file that is not a spool file is
// set aside without stopping the replay of the others.
func TestSpoolSurvivesRestart(t *testing.T) {
	r := redistest.StartPersistentRedis(t)
	ctx := context.Background()
	sealer, _ := NewSealer(GenerateSecretKey())
	open := func() *Store {
		s, err := Open(ctx, Options{URL: r.URL, Sealer: sealer, NodeID: "gw-spool"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s := open()
	co, _, err := s.CreateCompany(ctx, "Spool Co", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 12, 14, 0, 0, 0, time.UTC)
	answered := start.Add(2 * time.Second)
	conv, err := s.CreateConversation(ctx, Conversation{CompanyID: co.ID, AgentID: 7, Channel: "voice", Direction: "inbound", StartedAt: start})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateConversation(ctx, co.ID, conv.ID, func(c *Conversation) error { c.AnsweredAt = &answered; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendTranscriptAt(ctx, co.ID, conv.ID, 0, TranscriptEntry{Role: "agent", Message: "Hello", Timestamp: 0.5}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	r.Stop()
	sp := NewSpool(s, SpoolOptions{Dir: dir, Node: "gw-spool"})
	// The entry already written is sent again (its reply was lost): it must not double.
	sp.Do(Write{Op: WriteAppend, CompanyID: co.ID, Conversation: conv.ID, Index: 0, Entry: &TranscriptEntry{Role: "agent", Message: "Hello", Timestamp: 0.5}})
	sp.Do(Write{Op: WriteAppend, CompanyID: co.ID, Conversation: conv.ID, Index: 1, Entry: &TranscriptEntry{Role: "user", Message: "Bye", Timestamp: 4}})
	sp.Do(Write{Op: WriteFinish, CompanyID: co.ID, Conversation: conv.ID, Final: &Final{Status: ConvCompleted, EndedAt: answered.Add(65 * time.Second), EndReason: "caller_hangup"}})
	sp.Close(100 * time.Millisecond)
	files, _ := filepath.Glob(filepath.Join(dir, "spool-*.log"))
	if len(files) != 1 {
		t.Fatalf("spool files after a shutdown with Redis away: %v", files)
	}
	saved, _ := os.ReadFile(files[0])
	if err := os.WriteFile(filepath.Join(dir, "spool-junk-1.log"), []byte("PNG\x00\x01"), 0o600); err != nil {
		t.Fatal(err)
	}

	r.Restart(t)
	s2 := open()
	check := func(when string) {
		t.Helper()
		d, err := s2.GetConversationDetail(ctx, co.ID, conv.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != ConvCompleted || d.DurationSeconds == nil || *d.DurationSeconds != 65 || len(d.Transcript) != 2 ||
			d.Transcript[1].Message != "Bye" || d.MessageCount == nil || *d.MessageCount != 2 {
			t.Fatalf("%s: conversation %+v, transcript %+v", when, d.Conversation, d.Transcript)
		}
		u, err := s2.UsageRange(ctx, co.ID, start, start, 0)
		if err != nil || u.Total.VoiceConversations != 1 || u.Total.VoiceSeconds != 65 {
			t.Fatalf("%s: usage %+v, %v", when, u.Total, err)
		}
		if live, _ := s2.rdb.ZCard(ctx, keyNodeLive("gw-spool")).Result(); live != 0 {
			t.Fatalf("%s: %d conversations still listed as live", when, live)
		}
	}
	sp2 := NewSpool(s2, SpoolOptions{Dir: dir, Node: "gw-spool"})
	st, err := sp2.Replay()
	if err != nil || st.Files != 1 || st.Writes != 3 {
		t.Fatalf("replay: %+v, %v", st, err)
	}
	if err := sp2.Flush(Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	sp2.Close(time.Second)
	check("after the replay")
	if _, err := os.Stat(files[0]); !os.IsNotExist(err) {
		t.Fatalf("the replayed file is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "spool-junk-1.log.bad")); err != nil {
		t.Fatalf("the file that is not a spool file was not set aside: %v", err)
	}

	// The same file again, as if the process had died before removing it.
	if err := os.WriteFile(files[0], saved, 0o600); err != nil {
		t.Fatal(err)
	}
	// ... while another process holds one more: that one is left to it.
	busy := filepath.Join(dir, "spool-other-1.log")
	if err := os.WriteFile(busy, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	bf, _ := os.OpenFile(busy, os.O_RDWR, 0)
	if !lockFile(bf) {
		t.Fatal("could not lock")
	}
	sp3 := NewSpool(s2, SpoolOptions{Dir: dir, Node: "gw-spool"})
	st, err = sp3.Replay()
	if err != nil || st.Files != 1 || st.Busy != 1 {
		t.Fatalf("second replay: %+v, %v", st, err)
	}
	if err := sp3.Flush(Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	sp3.Close(time.Second)
	check("after replaying the same writes again")
	unlockFile(bf)
	bf.Close()
}

// Context is a context that ends with the test or after d.
func Context(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// FuzzReadSpool: whatever a spool file holds, reading it never panics, and every
// write it returns is one whose line checked out.
func FuzzReadSpool(f *testing.F) {
	var b bytes.Buffer
	b.WriteString(spoolHeader + "\n")
	for _, w := range sampleWrites() {
		line, err := encodeSpoolLine(w)
		if err != nil {
			f.Fatal(err)
		}
		b.Write(line)
	}
	f.Add(b.Bytes())
	f.Add([]byte(spoolHeader + "\n00000000 {}\n"))
	f.Add([]byte(spoolHeader + "\nzzzzzzzz \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ws, _, err := readSpool(bytes.NewReader(data))
		if err != nil && len(ws) > 0 {
			t.Fatal("writes returned with an error")
		}
		for _, w := range ws {
			if w.Op == "" {
				t.Fatal("a write without an op")
			}
		}
	})
}
