package main

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/store/redistest"
)

// TestRedisOutage stops redis-server for 10 s during live calls: the calls keep their
// audio, the API answers 503 unavailable (at once, not after a hang), new calls get
// 503; when Redis is back every transcript entry and usage minute is there, with no
// restart of the gateway. The call that hung up during the outage is billed to its
// hang-up by its own clock, not to when Redis came back.
func TestRedisOutage(t *testing.T) {
	r := redistest.StartPersistentRedis(t)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: []string{"--webhook-allow-insecure"}})
	tn := g.NewTenant("Outage")
	hooks := cxcotest.NewHooks(t)
	g.Subscribe(tn, hooks)
	g.AddNumber("+27215550001", "ZA", false)
	agentID, number := g.PublishAgent(tn, "Steady", "ZA", nil)
	gw := fmt.Sprintf("127.0.0.1:%d", g.SIPPort)

	ends, code := cxcotest.Dial(t, gw, number, "PCMU") // hangs up during the outage
	endsAnswered := time.Now()
	survives, code2 := cxcotest.Dial(t, gw, number, "PCMA") // hangs up after Redis is back
	if code != 200 || code2 != 200 {
		t.Fatalf("calls answered %d, %d", code, code2)
	}
	for _, ph := range []*cxcotest.Phone{ends, survives} {
		if ph.Heard(0, 500*time.Millisecond, 300*time.Millisecond, 15*time.Second) == nil {
			t.Fatal("no opening line")
		}
	}
	r.Stop()
	down := time.Now()

	// The API: 503 unavailable, fast.
	start := time.Now()
	status, body := g.Do("GET", "/api/agents/", tn.UserKey, nil)
	if status != 503 || body.(map[string]any)["error_type"] != "unavailable" {
		t.Fatalf("API during the outage: %d %v", status, body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the 503 took %s", d)
	}
	// New calls: 503.
	if _, c := cxcotest.Dial(t, gw, number, "PCMU"); c != 503 {
		t.Fatalf("a new call during the outage got %d, want 503", c)
	}
	// The live calls keep their audio: each says something and hears it back.
	for _, ph := range []*cxcotest.Phone{ends, survives} {
		before := len(ph.Audio())
		ph.SendAudio(cxcotest.Tone(1000, -10, time.Second))
		echo := ph.Heard(before, 800*time.Millisecond, 300*time.Millisecond, 15*time.Second)
		if len(echo) < 4800 || math.Abs(audiotest.DominantFrequency(echo[1600:len(echo)-1600], 8000)-1000) > 5 {
			t.Fatalf("a live call lost its audio during the outage (echo of %d samples)", len(echo))
		}
	}
	ends.Hangup()
	endsHungUp := time.Now()
	if d := 10*time.Second - time.Since(down); d > 0 {
		time.Sleep(d) // the length of the outage: the scenario, not a wait for anything
	}
	r.Restart(t)
	before := len(survives.Audio())
	survives.SendAudio(cxcotest.Tone(700, -10, 800*time.Millisecond))
	if survives.Heard(before, 500*time.Millisecond, 300*time.Millisecond, 15*time.Second) == nil {
		t.Fatal("no answer after Redis came back")
	}
	survives.Hangup()

	// Everything is there, without restarting the gateway: the gateway says so with
	// its conversation.completed events.
	ended, ok := hooks.Ended(2, 60*time.Second)
	if !ok {
		t.Fatalf("conversations ended after the outage: %d of 2", len(ended))
	}
	var secs float64
	for id := range ended {
		c := g.Must(200, "GET", fmt.Sprintf("/api/conversations/%d", id), tn.UserKey, nil)
		users := 0
		for _, e := range c["transcript"].([]any) {
			if e.(map[string]any)["role"] == "user" {
				users++
			}
		}
		if c["status"] != "completed" || users < 1 || c["transcript"].([]any)[0].(map[string]any)["role"] != "agent" {
			t.Fatalf("conversation after the outage: %v", c)
		}
		secs += c["duration_seconds"].(float64)
		if c["sip_call_id"] == ends.CallID() {
			// Billed by the call's clock: the hang-up during the outage, not the
			// moment its end could be written (10 s later).
			phone := endsHungUp.Sub(endsAnswered).Seconds()
			if got := c["duration_seconds"].(float64); math.Abs(got-phone) > 1.5 {
				t.Fatalf("the call that ended during the outage is billed %.0f s; its phone talked %.1f s", got, phone)
			}
		}
	}
	u := g.Must(200, "GET", fmt.Sprintf("/api/agents/%d/usage", agentID), tn.UserKey, nil)["voice"].(map[string]any)
	if u["total_conversations"].(float64) != 2 || u["total_minutes"].(float64) != math.Round(secs/60*100)/100 {
		t.Fatalf("usage after the outage: %v (records: %.0f s)", u, secs)
	}
}
