package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/store/redistest"
)

// The secrets of deploy/sipp/uac_trace.xml: the SDES key its offer carries, and
// the trunk password its digest response comes from.
const (
	traceSDESKey   = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
	traceTrunkPass = "s3cret-trace-pass"
)

// TestSIPTrace: a SIPp call that authenticates with digest, offers an SDES key,
// talks, holds for 2 s and hangs up, against the binary with --sip-trace. The
// log holds every SIP message of the call whole — the INVITEs, 401, 200s, ACKs
// and the BYE — each with the call's ids; the conversation's SIP ladder from
// the API holds the same in order, with times; and neither the log nor anything
// in Redis holds the digest response or the SDES key. The call's media figures
// count the hold as hold time, not as concealed audio.
func TestSIPTrace(t *testing.T) {
	r := redistest.StartRedis(t)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: []string{"--sip-trace",
		"--trunk-user", "trunk", "--trunk-password", traceTrunkPass}})
	tn := g.NewTenant("Trace Co")
	g.AddNumber("+27211230001", "ZA", false)
	_, number := g.PublishAgent(tn, "Tracer", "ZA", nil)
	sipp(t, g, "uac_trace.xml", number, "-au", "trunk", "-ap", traceTrunkPass, "-auth_uri", authURIFor(g, number))

	c := lastConversation(t, g, tn)
	id := int64(c["id"].(float64))
	sipCallID, _ := c["sip_call_id"].(string)
	if c["status"] != "completed" || sipCallID == "" {
		t.Fatalf("conversation: %v", c)
	}

	// The ladder, once its last message (the 200 to the BYE) is written: within
	// a second or two of the call's end.
	want := []string{"in INVITE 1", "out 100 1", "out 401 1", "in ACK 1", "in INVITE 2", "out 100 2", "out 180 2", "out 200 2", "in ACK 2",
		"in INVITE 3", "out 200 3", "in ACK 3", "in INVITE 4", "out 200 4", "in ACK 4", "in BYE 5", "out 200 5"}
	var items []map[string]any
	var got []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		tr := g.Must(200, "GET", fmt.Sprintf("/api/conversations/%d/sip-trace", id), tn.UserKey, nil)
		items = asList(tr["items"])
		got = ladder(items)
		if len(got) > 0 && got[len(got)-1] == "out 200 5" {
			if tr["sip_call_id"] != sipCallID || tr["kept_until"] == nil {
				t.Fatalf("trace: %v", tr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ladder never got to the 200 to the BYE:\n%s", strings.Join(got, "\n"))
		}
		time.Sleep(200 * time.Millisecond) // the ladder is written once a second
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("ladder\n%s\nwant\n%s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
	var last time.Time
	for _, m := range items {
		at, err := time.Parse(time.RFC3339Nano, m["at"].(string))
		if err != nil || at.Before(last) || m["sip_call_id"] != sipCallID || m["transport"] != "UDP" {
			t.Fatalf("ladder entry out of order or incomplete: %v", m)
		}
		last = at
	}
	invite := items[4]["message"].(string)
	if !strings.Contains(invite, `Authorization: Digest username="trunk", realm="cxco", [redacted]`) ||
		!strings.Contains(invite, "inline:[redacted]") || !strings.Contains(invite, "a=rtpmap:8 PCMA/8000") {
		t.Fatalf("the authenticated INVITE as the ladder keeps it:\n%s", invite)
	}

	// The log: every message of the call, with its ids.
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(g.Proc.Stderr()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) != nil || !strings.HasPrefix(fmt.Sprint(l["msg"]), "SIP ") || l["sip_call_id"] != sipCallID {
			continue
		}
		if l["call_id"] == nil || l["call_id"] == "" || l["sip"] == nil {
			t.Fatalf("a SIP log line without the call's ids or the message: %s", sc.Text())
		}
		seen[ladder([]map[string]any{{"direction": l["direction"], "first_line": firstLine(fmt.Sprint(l["sip"])), "cseq": l["cseq"]}})[0]] = true
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("no log line for %s", w)
		}
	}

	// No secret anywhere: not in the log, not in Redis.
	secrets := []string{traceSDESKey, traceTrunkPass, `response="`}
	for _, s := range secrets {
		if strings.Contains(g.Proc.Stderr(), s) {
			t.Errorf("the log holds %q", s)
		}
	}
	for key, v := range redisDump(t, r.URL) {
		for _, s := range secrets {
			if strings.Contains(v, s) {
				t.Errorf("Redis key %s holds %q", key, s)
			}
		}
	}

	// The media figures: the 2 s hold is hold time; concealment counts only what
	// was lost or late (at most two 20 ms frames per 30 ms packet), not the hold.
	rtp := c["metadata_"].(map[string]any)["rtp"].(map[string]any)
	hold, concealed := rtp["hold_seconds"].(float64), rtp["concealed_frames"].(float64)
	if hold < 1.5 || hold > 4 {
		t.Errorf("hold_seconds %v, want about 2", hold)
	}
	if bad := 2 * (rtp["lost"].(float64) + rtp["late"].(float64)); concealed > bad {
		t.Errorf("concealed_frames %v for %v lost and %v late packets: %v", concealed, rtp["lost"], rtp["late"], rtp)
	}
	t.Logf("ladder of %d messages; media: %v", len(items), rtp)
}

// ladder names each message "in INVITE 1" or "out 200 5": direction, method or
// status, CSeq number.
func ladder(items []map[string]any) []string {
	var out []string
	for _, m := range items {
		f := strings.Fields(fmt.Sprint(m["first_line"]))
		what := ""
		if len(f) > 1 && strings.HasPrefix(f[0], "SIP/") {
			what = f[1]
		} else if len(f) > 0 {
			what = f[0]
		}
		seq, _, _ := strings.Cut(fmt.Sprint(m["cseq"]), " ")
		out = append(out, fmt.Sprintf("%v %s %s", m["direction"], what, seq))
	}
	return out
}

// redisDump reads every value in Redis as text, by key.
func redisDump(t *testing.T, url string) map[string]string {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := map[string]string{}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		var v any
		switch rdb.Type(ctx, k).Val() {
		case "string":
			v = rdb.Get(ctx, k).Val()
		case "list":
			v = rdb.LRange(ctx, k, 0, -1).Val()
		case "hash":
			v = rdb.HGetAll(ctx, k).Val()
		case "set":
			v = rdb.SMembers(ctx, k).Val()
		case "zset":
			v = rdb.ZRange(ctx, k, 0, -1).Val()
		case "stream":
			v = rdb.XRange(ctx, k, "-", "+").Val()
		}
		out[k] = fmt.Sprint(v)
	}
	if len(out) < 10 {
		t.Fatalf("only %d keys in Redis", len(out))
	}
	return out
}
