package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/bridge/elevenlabs/elevenlabssim"
	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/control/webhooks"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/store/redistest"
)

const humanNumber = "+27219990000"

func transferAgent(g *cxcotest.Gateway, tn cxcotest.Tenant, number string) int64 {
	g.AddNumber(number, "ZA", false)
	id, _ := g.PublishAgent(tn, "Front Desk "+number[len(number)-3:], "ZA", map[string]any{
		"keypad": map[string]any{"inter_digit_timeout_ms": 500},
		"transfer": map[string]any{"mode": "refer", "fallback_to_bridge": true, "destinations": []any{
			map[string]any{"number": humanNumber, "condition": "the caller asks for a human", "label": "Sales team"},
		}},
	})
	return id
}

// transferSim is a provider whose agent, standing in for the LLM, calls its
// client transfer tool when the caller presses 0.
func transferSim(t *testing.T) string {
	return cxcotest.StartSim(t, "--hooks", elevenlabssim.HookZeroCallsTool)
}

// newest returns the tenant's newest conversation once it is final.
func newest(t *testing.T, g *cxcotest.Gateway, tn cxcotest.Tenant) map[string]any {
	t.Helper()
	return lastConversation(t, g, tn)
}

func hasEntry(c map[string]any, role, contains string) bool {
	for _, e := range c["transcript"].([]any) {
		m := e.(map[string]any)
		if m["role"] == role && strings.Contains(m["message"].(string), contains) {
			return true
		}
	}
	return false
}

// TestTransfers: the agent hands the caller to a human with SIP REFER (accepted,
// rejected, never finishing) and with a bridged call when the trunk does not do
// REFER; transfer minutes show in usage apart from AI minutes.
func TestTransfers(t *testing.T) {
	r := redistest.StartRedis(t)
	humanPort, humanDone := cxcotest.ServeSIPp(t, "uas_human.xml")
	sim := transferSim(t)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, ProviderURL: sim, Args: []string{
		"--transfer-timeout", "3s", "--trunk-uri", fmt.Sprintf("sip:127.0.0.1:%d", humanPort),
		"--webhook-allow-insecure", "--webhook-retry", "200ms,400ms"}})
	tn := g.NewTenant("Transfers")
	// A receiver for conversation.transferred, checking every signature.
	events := make(chan map[string]any, 16)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := webhooks.VerifySignature("whsec_transfers", req.Header.Get("X-CXCO-Signature"), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(400)
			return
		}
		var ev map[string]any
		_ = json.Unmarshal(body, &ev)
		events <- ev
	}))
	defer recv.Close()
	g.Must(201, "POST", "/api/webhooks/", tn.CompanyKey, map[string]any{"url": recv.URL, "events": []string{"conversation.transferred"}, "secret": "whsec_transfers"})

	t.Run("REFER accepted: NOTIFY 100 then 200, our BYE follows", func(t *testing.T) {
		transferAgent(g, tn, "+27214440001")
		sipp(t, g, "uac_refer_accept.xml", "+27214440001")
		c := newest(t, g, tn)
		if c["status"] != "transferred" || c["sip_refer_destination"] != humanNumber || c["end_reason"] != "transferred" {
			t.Fatalf("conversation: %v", c)
		}
		if !hasEntry(c, "system", "transferred to "+humanNumber) {
			t.Fatalf("no transfer entry in %v", c["transcript"])
		}
		select {
		case ev := <-events:
			data := ev["data"].(map[string]any)
			if ev["type"] != "conversation.transferred" || data["sip_refer_destination"] != humanNumber || data["id"] != c["id"] {
				t.Fatalf("webhook event: %v", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no conversation.transferred webhook")
		}
	})
	t.Run("REFER rejected with 403: the call goes on and the AI is told", func(t *testing.T) {
		transferAgent(g, tn, "+27214440002")
		sipp(t, g, "uac_refer_reject.xml", "+27214440002")
		c := newest(t, g, tn)
		if c["status"] != "completed" || c["sip_refer_destination"] != nil || !hasEntry(c, "system", "failed") ||
			!hasEntry(c, "agent", "did not work") {
			t.Fatalf("conversation: %v", c)
		}
	})
	t.Run("the final NOTIFY never comes: timeout", func(t *testing.T) {
		transferAgent(g, tn, "+27214440003")
		sipp(t, g, "uac_refer_timeout.xml", "+27214440003")
		c := newest(t, g, tn)
		if c["status"] != "completed" || !hasEntry(c, "system", "did not complete in time") {
			t.Fatalf("conversation: %v", c)
		}
	})
	t.Run("REFER answered 501: bridged to the destination, the caller hangs up", func(t *testing.T) {
		transferAgent(g, tn, "+27214440004")
		sipp(t, g, "uac_refer_501.xml", "+27214440004")
		if code, out := humanDone(); code != 0 {
			t.Fatalf("the destination's SIPp: %d\n%s", code, out)
		}
		c := newest(t, g, tn)
		if c["status"] != "transferred" || c["sip_refer_destination"] != humanNumber || c["sip_refer_seconds"].(float64) < 4 {
			t.Fatalf("conversation: %v", c)
		}
	})
	t.Run("bridged, the destination hangs up first", func(t *testing.T) {
		port, done := cxcotest.ServeSIPp(t, "uas_human_hangup.xml")
		g2 := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, ProviderURL: sim, Args: []string{"--agency-key", g.AgencyKey,
			"--transfer-timeout", "3s", "--trunk-uri", fmt.Sprintf("sip:127.0.0.1:%d", port)}})
		transferAgent(g2, tn, "+27214440005")
		sipp(t, g2, "uac_refer_501_wait.xml", "+27214440005")
		if code, out := done(); code != 0 {
			t.Fatalf("the destination's SIPp: %d\n%s", code, out)
		}
		c := newest(t, g, tn)
		if c["status"] != "transferred" || c["end_reason"] != "transfer_ended" {
			t.Fatalf("conversation: %v", c)
		}
	})
	// Usage: transfer minutes apart from AI minutes, and both agree with the records.
	var voice, refer float64
	_, v := g.Do("GET", "/api/conversations/?limit=100", tn.UserKey, nil)
	for _, it := range v.(map[string]any)["items"].([]any) {
		c := it.(map[string]any)
		d, _ := c["duration_seconds"].(float64)
		rs, _ := c["sip_refer_seconds"].(float64)
		voice += d - rs
		refer += rs
	}
	u := g.Must(200, "GET", "/api/usage/summary", tn.UserKey, nil)["voice"].(map[string]any)
	if u["total_sip_refer_minutes"].(float64) != math.Round(refer/60*100)/100 || u["total_minutes"].(float64) != math.Round(voice/60*100)/100 || refer < 4 {
		t.Fatalf("usage %v; records: %.0f s with the AI, %.0f s transferred", u, voice, refer)
	}
	today := time.Now().UTC().Format("2006-01-02")
	daily := g.Must(200, "GET", "/api/usage/daily?start_date="+today+"&end_date="+today, tn.UserKey, nil)
	_ = daily
}

// TestBridgedTransferAudio: with a bridged transfer the gateway relays audio both
// ways between the caller and the human, and either hanging up ends both legs.
func TestBridgedTransferAudio(t *testing.T) {
	human, addr, answered := cxcotest.Answer(t, "PCMU")
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{ProviderURL: transferSim(t), Args: []string{"--trunk-uri", "sip:" + addr}})
	tn := g.NewTenant("Bridge")
	g.AddNumber("+27214440010", "ZA", false)
	g.PublishAgent(tn, "Bridger", "ZA", map[string]any{"keypad": map[string]any{"inter_digit_timeout_ms": 300}, "transfer": map[string]any{"mode": "bridge", "destinations": []any{
		map[string]any{"number": humanNumber, "condition": "the caller asks for a human"}}}})
	caller, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), "+27214440010", "PCMA")
	if code != 200 {
		t.Fatalf("answered %d", code)
	}
	caller.OnRequest(func(req *gsip.Request) *gsip.Response {
		if req.Method == gsip.REFER {
			t.Error("bridge mode must not send REFER")
		}
		return nil
	})
	if caller.Heard(0, 500*time.Millisecond, 300*time.Millisecond, 15*time.Second) == nil {
		t.Fatal("no opening line")
	}
	caller.SendDigit('0')
	answered()
	// The bridge is up once the human hears the gateway: its leg's pacer starts
	// just before the caller is switched over to it.
	if !human.WaitAudio(10*time.Second, func(pcm []int16) bool { return len(pcm) > 0 }) {
		t.Fatal("the human's leg carries no audio")
	}
	// Both sides talk at once, each at its own frequency; then each listens until
	// the other's tone has ended.
	mark := len(caller.Audio())
	humanMark := len(human.Audio())
	done := make(chan []int16)
	go func() {
		human.SendAudio(cxcotest.Tone(1200, -10, 2*time.Second))
		done <- human.Heard(humanMark, 1500*time.Millisecond, 300*time.Millisecond, 10*time.Second)
	}()
	caller.SendAudio(cxcotest.Tone(600, -10, 2*time.Second))
	heard := caller.Heard(mark, 1500*time.Millisecond, 300*time.Millisecond, 10*time.Second)
	humanHeard := <-done
	if heard == nil || humanHeard == nil {
		caller.Hangup()
		g.Proc.WaitStderr(t, "call ended", 5*time.Second)
		for _, l := range strings.Split(g.Proc.Stderr(), "\n") {
			if strings.Contains(l, "call ended") || strings.Contains(l, "media closed") || strings.Contains(l, "keypad") || strings.Contains(l, "transfer") {
				t.Log(l[strings.Index(l, "msg"):])
			}
		}
		t.Fatalf("no relayed audio: caller heard %d samples, human heard %d", len(heard), len(humanHeard))
	}
	// The middle of each: the edges may hold the tail of the ringback.
	heard, humanHeard = heard[len(heard)/4:len(heard)*3/4], humanHeard[len(humanHeard)/4:len(humanHeard)*3/4]
	if f := audiotest.DominantFrequency(heard, 8000); math.Abs(f-1200) > 5 {
		t.Fatalf("the caller heard %.0f Hz, want the human's 1200", f)
	}
	if f := audiotest.DominantFrequency(humanHeard, 8000); math.Abs(f-600) > 5 {
		t.Fatalf("the human heard %.0f Hz, want the caller's 600", f)
	}
	human.Hangup()
	if !caller.WaitBye(5 * time.Second) {
		t.Fatal("the human hung up but the caller's leg was not ended")
	}
	c := lastConversation(t, g, tn)
	if c["status"] != "transferred" || c["sip_refer_destination"] != humanNumber {
		t.Fatalf("conversation: %v", c)
	}
}
