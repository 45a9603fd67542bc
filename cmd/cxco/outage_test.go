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
// restart of the gateway.
func TestRedisOutage(t *testing.T) {
	r := redistest.StartPersistentRedis(t)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL})
	tn := g.NewTenant("Outage")
	g.AddNumber("+27215550001", "ZA", false)
	agentID, number := g.PublishAgent(tn, "Steady", "ZA", nil)
	gw := fmt.Sprintf("127.0.0.1:%d", g.SIPPort)

	ends, code := cxcotest.Dial(t, gw, number, "PCMU")      // hangs up during the outage
	survives, code2 := cxcotest.Dial(t, gw, number, "PCMA") // hangs up after Redis is back
	if code != 200 || code2 != 200 {
		t.Fatalf("calls answered %d, %d", code, code2)
	}
	ends.SendAudio(make([]int16, 8000*3/2)) // both hear the opening line
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
		ph.SendAudio(make([]int16, 8000*15/10))
		echo := toneRegion(ph.Audio()[before:])
		if echo == nil || math.Abs(audiotest.DominantFrequency(echo, 8000)-1000) > 5 {
			t.Fatal("a live call lost its audio during the outage")
		}
	}
	ends.Hangup()
	if d := 10*time.Second - time.Since(down); d > 0 {
		time.Sleep(d) // the outage lasts 10 s
	}
	r.Restart(t)
	survives.SendAudio(cxcotest.Tone(700, -10, 800*time.Millisecond))
	survives.SendAudio(make([]int16, 8000*15/10))
	survives.Hangup()

	// Everything is there, without restarting the gateway.
	var convs []map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		convs = nil
		if status, v := g.Do("GET", "/api/conversations/?limit=10", tn.UserKey, nil); status == 200 {
			for _, it := range v.(map[string]any)["items"].([]any) {
				id := int64(it.(map[string]any)["id"].(float64))
				convs = append(convs, g.Must(200, "GET", fmt.Sprintf("/api/conversations/%d", id), tn.UserKey, nil))
			}
		}
		done := len(convs) == 2
		for _, c := range convs {
			done = done && c["status"] == "completed"
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(convs) != 2 {
		t.Fatalf("conversations after the outage: %v", convs)
	}
	var secs float64
	for _, c := range convs {
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
	}
	u := g.Must(200, "GET", fmt.Sprintf("/api/agents/%d/usage", agentID), tn.UserKey, nil)["voice"].(map[string]any)
	if u["total_conversations"].(float64) != 2 || u["total_minutes"].(float64) != math.Round(secs/60*100)/100 {
		t.Fatalf("usage after the outage: %v (records: %.0f s)", u, secs)
	}
}
