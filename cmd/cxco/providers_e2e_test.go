package main

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/bridge/elevenlabs/elevenlabssim"
	"github.com/cxco/gateway/bridge/mediastream/mediastreamsim"
	"github.com/cxco/gateway/bridge/openai/openaisim"
	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/media/audiotest"
)

// serveLoopback serves h on 127.0.0.1 until the test ends and returns its URL.
func serveLoopback(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// simulated is one provider's simulator as the suite drives it.
type simulated struct {
	slug   string
	refuse func(bool)
	drop   func() int
	conns  func() int     // conversations the simulator has had
	config map[string]any // what the agent's config needs for this provider
}

// TestProviderCallSuite: the same SIPp and test-phone calls against each
// provider's simulator — ElevenLabs, OpenAI Realtime, your own bot in the
// Media Streams format — through one gateway: answer, the opening line heard,
// an utterance answered, barge-in heard as audio, DTMF, a transfer by the
// agent's tool (REFER), the end by the agent's tool, the caller's hang-up, a
// dropped websocket (the call goes on), the provider down (503); then an agent
// whose provider is down is served by its fallback provider.
func TestProviderCallSuite(t *testing.T) {
	el := elevenlabssim.New(elevenlabssim.Options{Hooks: []string{elevenlabssim.HookHashEndsCall, elevenlabssim.HookZeroCallsTool}})
	t.Cleanup(func() { _ = el.Close() })
	oa := openaisim.New(openaisim.Options{Hooks: []string{openaisim.HookHashEndsCall, openaisim.HookZeroCallsTransfer}})
	t.Cleanup(func() { _ = oa.Close() })
	bot := mediastreamsim.New(mediastreamsim.Options{Hooks: []string{mediastreamsim.HookHashEndsCall, mediastreamsim.HookZeroCallsTransfer}})
	t.Cleanup(func() { _ = bot.Close() })
	elURL, oaURL, botURL := serveLoopback(t, el), serveLoopback(t, oa), serveLoopback(t, bot)
	botWS := "ws" + botURL[len("http"):] + "/bot"

	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{ProviderURL: elURL,
		Args: []string{"--openai-url", oaURL, "--bot-allow-insecure"},
		Env:  []string{"CXCO_OPENAI_API_KEY=sk-suite", "CXCO_PROVIDER_API_KEY=test-platform-key"}})
	sims := []simulated{
		{slug: "elevenlabs", refuse: el.SetRefuse, drop: el.DropConversations, conns: func() int { return len(el.Conversations()) }},
		{slug: "openai", refuse: oa.SetRefuse, drop: oa.DropSessions, conns: func() int { return len(oa.Sessions()) }},
		{slug: "mediastream", refuse: bot.SetRefuse, drop: bot.DropStreams, conns: func() int { return len(bot.Streams()) },
			config: map[string]any{"bot": map[string]any{"url": botWS}}},
	}
	t.Run("suite", func(t *testing.T) {
		for i, s := range sims {
			t.Run(s.slug, func(t *testing.T) {
				t.Parallel()
				providerSuite(t, g, s, i)
			})
		}
	})

	t.Run("failover to the fallback provider", func(t *testing.T) {
		tn := g.NewTenant("Failover")
		number := publishWith(t, g, tn, "Failover", "+27215550900", map[string]any{"provider": "openai", "fallback_provider": "mediastream",
			"config": map[string]any{"bot": map[string]any{"url": botWS}}})
		oa.SetRefuse(true)
		defer oa.SetRefuse(false)
		sipp(t, g, "uac_agent.xml", number)
		c := lastConversation(t, g, tn)
		fo, _ := c["metadata_"].(map[string]any)["provider_failover"].(map[string]any)
		if c["status"] != "completed" || c["source"] != "mediastream" || fo["from"] != "openai" || fo["to"] != "mediastream" {
			t.Fatalf("conversation: source %v, failover %v: %v", c["source"], fo, c)
		}
		if !hasEntry(c, "agent", "Hello, this is Failover") {
			t.Fatalf("the fallback's opening line is not in %v", c["transcript"])
		}
	})
}

// publishWith creates and publishes an agent with the given fields after
// putting number in the pool, and returns the number it got (parallel tests
// publish at the same time: any number of the pool may be the one).
func publishWith(t *testing.T, g *cxcotest.Gateway, tn cxcotest.Tenant, name, number string, fields map[string]any) string {
	t.Helper()
	g.AddNumber(number, "ZA", false)
	body := map[string]any{"name": name, "personality": "You are " + name + ", a helpful test agent.",
		"opening_line": "Hello, this is " + name + ". How can I help?", "voice_id": 1}
	for k, v := range fields {
		body[k] = v
	}
	a := g.Must(201, "POST", "/api/agents/", tn.UserKey, body)
	id := int64(a["id"].(float64))
	p := g.Must(200, "POST", fmt.Sprintf("/api/agents/%d/publish", id), tn.UserKey, map[string]any{"country_code": "ZA"})
	return p["phone_number"].(map[string]any)["number"].(string)
}

func providerSuite(t *testing.T, g *cxcotest.Gateway, s simulated, i int) {
	tn := g.NewTenant("Suite " + s.slug)
	config := map[string]any{"keypad": map[string]any{"inter_digit_timeout_ms": 500},
		"transfer": map[string]any{"mode": "refer", "destinations": []any{
			map[string]any{"number": humanNumber, "condition": "the caller asks for a human", "label": "Sales team"}}}}
	for k, v := range s.config {
		config[k] = v
	}
	name := "Suite " + s.slug
	number := publishWith(t, g, tn, name, fmt.Sprintf("+2721555%04d", 100*(i+1)), map[string]any{"provider": s.slug, "config": config})
	opening := "Hello, this is " + name

	// Each step is a call of its own, one after the other (the tenant's newest
	// conversation is the step's).
	t.Run("answer, opening line, an utterance answered, caller hangs up", func(t *testing.T) {
		sipp(t, g, "uac_agent.xml", number)
		c := lastConversation(t, g, tn)
		if c["status"] != "completed" || c["end_reason"] != "caller_hangup" || c["source"] != s.slug || c["external_conversation_id"] == nil {
			t.Fatalf("conversation: %v", c)
		}
		// The opening line first, then the caller. (The answer's audio is
		// checked on the phone below: SIPp hangs up while it plays, and OpenAI
		// sends a reply's transcript only once its audio is done.)
		tr := c["transcript"].([]any)
		if len(tr) < 2 || tr[0].(map[string]any)["role"] != "agent" || !hasEntry(c, "agent", opening) || !hasEntry(c, "user", "") {
			t.Fatalf("transcript: %v", tr)
		}
	})

	t.Run("barge-in heard as audio", func(t *testing.T) {
		ph, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), number, "PCMU")
		if code != 200 {
			t.Fatalf("answered %d", code)
		}
		defer ph.Close()
		heardOpening(t, ph)
		// Talk over the opening line: it stops, and the answer (the simulators
		// echo the utterance) is heard.
		before := len(ph.Audio())
		ph.SendAudio(cxcotest.Tone(1000, -10, time.Second))
		echo := ph.Heard(before, time.Second, 300*time.Millisecond, 15*time.Second)
		if echo == nil {
			t.Fatal("the utterance was not answered")
		}
		if f := audiotest.DominantFrequency(echo[len(echo)/2:], 8000); math.Abs(f-1000) > 5 {
			t.Fatalf("the answer is at %.1f Hz", f)
		}
		ph.Hangup()
		c := lastConversation(t, g, tn)
		if c["status"] != "completed" || c["source"] != s.slug {
			t.Fatalf("conversation: %v", c)
		}
	})

	t.Run("DTMF, and the agent ends the call by its tool", func(t *testing.T) {
		sipp(t, g, "uac_dtmf_hash.xml", number)
		c := lastConversation(t, g, tn)
		if c["status"] != "completed" || c["end_reason"] != "agent_hangup" || !hasEntry(c, "user", "#") {
			t.Fatalf("conversation: %v", c)
		}
	})

	t.Run("transfer by the agent's tool (REFER)", func(t *testing.T) {
		sipp(t, g, "uac_refer_accept.xml", number)
		c := lastConversation(t, g, tn)
		if c["status"] != "transferred" || c["sip_refer_destination"] != humanNumber || !hasEntry(c, "system", "transferred to "+humanNumber) {
			t.Fatalf("conversation: %v", c)
		}
	})

	t.Run("websocket drop: the call goes on", func(t *testing.T) {
		ph, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), number, "PCMU")
		if code != 200 {
			t.Fatalf("answered %d", code)
		}
		defer ph.Close()
		heardOpening(t, ph)
		had := s.conns()
		// This call's line (the three providers' suites run at once on g).
		reconnected := func(log string) bool {
			for _, l := range strings.Split(log, "\n") {
				if strings.Contains(l, `"msg":"provider reconnected"`) && strings.Contains(l, `"sip_call_id":"`+ph.CallID()+`"`) {
					return true
				}
			}
			return false
		}
		if n := s.drop(); n != 1 {
			t.Fatalf("dropped %d provider sockets", n)
		}
		// The session dials again; what the caller says once it has (its log
		// line, not the simulator's count of sockets, which grows before the
		// session's handshake is done: the start of the utterance went nowhere
		// and the echo was short) is answered.
		if !g.Proc.WaitLog(10*time.Second, reconnected) {
			t.Fatal("no reconnect in the gateway's log")
		}
		if s.conns() <= had {
			t.Fatalf("reconnected, but the simulator has %d sockets, as before the drop", s.conns())
		}
		heardBefore := len(ph.Audio())
		ph.SendAudio(cxcotest.Tone(1000, -10, time.Second))
		if echo := ph.Heard(heardBefore, time.Second, 300*time.Millisecond, 15*time.Second); echo == nil {
			t.Fatal("nothing answered after the reconnect")
		}
		ph.Hangup()
		c := lastConversation(t, g, tn)
		if c["status"] != "completed" || c["end_reason"] != "caller_hangup" {
			t.Fatalf("conversation: %v", c)
		}
	})

	t.Run("provider down: 503", func(t *testing.T) {
		s.refuse(true)
		defer s.refuse(false)
		sipp(t, g, "uac_503.xml", number)
		c := lastConversation(t, g, tn)
		if c["status"] != "failed" || c["end_reason"] != "provider_unavailable" {
			t.Fatalf("conversation: %v", c)
		}
	})
}

// heardOpening waits until the phone has heard half a second of the opening
// line (the simulators' 440 Hz).
func heardOpening(t *testing.T, ph *cxcotest.Phone) {
	t.Helper()
	stop := ph.KeepSilent()
	defer stop()
	var opening []int16
	ph.WaitAudio(15*time.Second, func(pcm []int16) bool {
		if first, last := audiotest.LoudSpan(pcm, 160, -30); first >= 0 && last-first >= 4000 {
			opening = pcm[first:last]
		}
		return opening != nil
	})
	if opening == nil {
		t.Fatal("no opening line heard")
	}
	if f := audiotest.DominantFrequency(opening, 8000); math.Abs(f-440) > 5 {
		t.Fatalf("opening line at %.1f Hz", f)
	}
}
