package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/store/redistest"
)

// TestLiveCallsAcrossNodes: two nodes share Redis; a SIPp call to node A shows
// in node B's live calls (node A's name, the codec, a quality figure) and in
// B's event stream, and a DELETE on node B hangs it up: A sends the BYE (SIPp
// answers it and passes), the conversation ends as api_hangup, and B's stream
// says the call ended.
func TestLiveCallsAcrossNodes(t *testing.T) {
	r := redistest.StartRedis(t)
	a := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: []string{"--node-id", "node-a"}})
	b := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: []string{"--node-id", "node-b", "--agency-key", a.AgencyKey}})
	tn := a.NewTenant("Live Co")
	other := a.NewTenant("Other Co")
	a.AddNumber("+27211239001", "ZA", false)
	_, number := a.PublishAgent(tn, "Live Agent", "ZA", nil)

	events := sseStream(t, b.HTTP+"/api/calls/live/events", tn.CompanyKey)
	if ev := <-events; ev.name != "snapshot" || len(ev.items()) != 0 {
		t.Fatalf("first event %+v", ev)
	}
	wait := cxcotest.StartSIPp(t, fmt.Sprintf("127.0.0.1:%d", a.SIPPort), "uac_wait_bye.xml", number)

	// The call, from node B, with a quality figure once a refresh has measured one.
	var call map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		items := b.Must(200, "GET", "/api/calls/live", tn.CompanyKey, nil)["items"].([]any)
		if len(items) == 1 {
			call = items[0].(map[string]any)
			// The caller's RTP can be measured before its ACK is read: until then
			// the call shows ringing (answered_at null), a refresh later talking.
			if call["quality"] != nil && call["state"] != "ringing" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the call never showed with a quality figure on node B: %v", items)
		}
		time.Sleep(200 * time.Millisecond) // polling the API while the call runs
	}
	if call["node"] != "node-a" || call["codec"] != "PCMA" || call["state"] != "talking" || call["agent_name"] != "Live Agent" ||
		call["caller"] != "+27821234567" || call["called"] != number || call["provider"] != "elevenlabs" {
		t.Fatalf("live call: %v", call)
	}
	q := call["quality"].(map[string]any)
	if q["rating"] == nil || q["loss_percent"] == nil || q["jitter_ms"] == nil {
		t.Fatalf("quality: %v", q)
	}
	if items := b.Must(200, "GET", "/api/calls/live", other.CompanyKey, nil)["items"].([]any); len(items) != 0 {
		t.Fatalf("another company sees %v", items)
	}
	id := int64(call["conversation_id"].(float64))
	for ev := range events { // the call is in B's stream too
		if ev.name == "upsert" && len(ev.items()) == 1 && int64(ev.items()[0]["conversation_id"].(float64)) == id {
			break
		}
	}

	// Hang up from node B.
	b.Must(404, "DELETE", fmt.Sprintf("/api/calls/live/%d", id), other.CompanyKey, nil)
	if code, v := b.Do("DELETE", fmt.Sprintf("/api/calls/live/%d", id), tn.UserKey, nil); code != 204 {
		t.Fatalf("DELETE on node B: %d %v", code, v)
	}
	if code, out := wait(); code != 0 {
		t.Fatalf("SIPp did not get the BYE: exit %d\n%s", code, out)
	}
	for ev := range events {
		if ev.name == "end" {
			if ids := ev.data["conversation_ids"].([]any); len(ids) != 1 || int64(ids[0].(float64)) != id {
				t.Fatalf("end %+v", ev)
			}
			break
		}
	}
	c := waitConversation(t, a, tn.UserKey, id, func(c map[string]any) bool { return c["status"] != "in_progress" })
	if c["status"] != "completed" || c["end_reason"] != "api_hangup" {
		t.Fatalf("conversation: %v", c)
	}
	a.Proc.WaitStderr(t, `"msg":"call hung up on request from the API"`, 5*time.Second)
}

type sse struct {
	name string
	data map[string]any
}

func (e sse) items() []map[string]any { return asList(e.data["items"]) }

// sseStream reads server-sent events until the test ends; the channel closes
// with the stream. Each event is waited for at most 20 s.
func sseStream(t *testing.T, url, key string) <-chan sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("X-API-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("%s: %v %v", url, err, res)
	}
	out := make(chan sse)
	go func() {
		defer res.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sse
		for sc.Scan() {
			switch line := sc.Text(); {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data)
			case line == "" && ev.name != "":
				select {
				case out <- ev:
				case <-time.After(20 * time.Second):
					return
				case <-ctx.Done():
					return
				}
				ev = sse{}
			}
		}
	}()
	timed := make(chan sse)
	go func() {
		defer close(timed)
		for {
			select {
			case ev, ok := <-out:
				if !ok {
					return
				}
				select {
				case timed <- ev:
				case <-ctx.Done():
					return
				}
			case <-time.After(20 * time.Second):
				t.Errorf("%s: no event for 20 s", url)
				cancel()
				return
			}
		}
	}()
	return timed
}
