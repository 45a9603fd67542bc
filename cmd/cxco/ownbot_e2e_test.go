package main

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
)

// The bot below is written as a customer writes one for Twilio Media Streams:
// from Twilio's "Media Streams - WebSocket Messages" reference and the
// gateway's README ("Your own bot"), with its own message types and its own
// µ-law encoder, sharing nothing with the gateway's code.

// twilioMessage is every message Twilio (here: the gateway) sends a stream.
type twilioMessage struct {
	Event          string `json:"event"`
	SequenceNumber string `json:"sequenceNumber"`
	StreamSid      string `json:"streamSid"`
	Start          *struct {
		StreamSid        string            `json:"streamSid"`
		CallSid          string            `json:"callSid"`
		Tracks           []string          `json:"tracks"`
		CustomParameters map[string]string `json:"customParameters"`
		MediaFormat      struct {
			Encoding   string `json:"encoding"`
			SampleRate int    `json:"sampleRate"`
			Channels   int    `json:"channels"`
		} `json:"mediaFormat"`
	} `json:"start"`
	Media *struct {
		Track   string `json:"track"`
		Payload string `json:"payload"`
	} `json:"media"`
	Mark *struct {
		Name string `json:"name"`
	} `json:"mark"`
	DTMF *struct {
		Digit string `json:"digit"`
	} `json:"dtmf"`
	ToolResult *struct {
		ID     string `json:"id"`
		Result string `json:"result"`
	} `json:"toolResult"`
}

// linearToULaw is G.711 µ-law, as any bot's audio library has it.
func linearToULaw(s int16) byte {
	const bias, clip = 0x84, 32635
	sign := byte(0)
	v := int(s)
	if v < 0 {
		v, sign = -v, 0x80
	}
	if v > clip {
		v = clip
	}
	v += bias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := byte(v>>(exp+3)) & 0x0f
	return ^(sign | byte(exp)<<4 | mant)
}

// customerBot greets the caller with a second of 600 Hz and a mark, ends the
// call with its end_call tool when the caller presses #, and remembers what it
// was told.
type customerBot struct {
	mu       sync.Mutex
	start    map[string]string // customParameters
	callSid  string
	encoding string
	marks    []string
	digits   string
	results  []string
	stopped  bool
}

func (b *customerBot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer customer-secret" {
		http.Error(w, "who are you", http.StatusUnauthorized)
		return
	}
	up := websocket.Upgrader{}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	var sid string
	send := func(v map[string]any) { _ = c.WriteJSON(v) }
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		var m twilioMessage
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		b.mu.Lock()
		switch m.Event {
		case "start":
			sid, b.start, b.callSid, b.encoding = m.Start.StreamSid, m.Start.CustomParameters, m.Start.CallSid, m.Start.MediaFormat.Encoding
			tone := make([]byte, 8000)
			for i := range tone {
				tone[i] = linearToULaw(int16(8000 * math.Sin(2*math.Pi*600*float64(i)/8000)))
			}
			send(map[string]any{"event": "media", "streamSid": sid, "media": map[string]any{"payload": base64.StdEncoding.EncodeToString(tone)}})
			send(map[string]any{"event": "mark", "streamSid": sid, "mark": map[string]any{"name": "greeting"}})
			send(map[string]any{"event": "transcript", "streamSid": sid, "transcript": map[string]any{"role": "agent", "text": "Welcome to the customer's own bot."}})
		case "media":
			// The caller's audio: a real bot feeds it to its speech recognition.
		case "mark":
			b.marks = append(b.marks, m.Mark.Name)
		case "dtmf":
			b.digits += m.DTMF.Digit
			if m.DTMF.Digit == "#" {
				send(map[string]any{"event": "transcript", "streamSid": sid, "transcript": map[string]any{"role": "user", "text": "pressed #"}})
				send(map[string]any{"event": "tool_call", "streamSid": sid, "toolCall": map[string]any{"id": "end-1", "name": "end_call", "arguments": map[string]any{"reason": "the caller pressed #"}}})
			}
		case "tool_result":
			b.results = append(b.results, m.ToolResult.ID+": "+m.ToolResult.Result)
		case "stop":
			b.stopped = true
		}
		b.mu.Unlock()
	}
}

// TestCustomerBotAnswersSIPp: a bot in the Twilio Media Streams format,
// written as a customer would (above), answers a SIPp call through the
// gateway end to end: it gets the call's start with the caller and its own
// parameters and the company's header, its greeting is played and its mark
// comes back, the caller's # reaches it, its end_call tool hangs up, and the
// conversation records its transcript with mediastream as the source.
func TestCustomerBotAnswersSIPp(t *testing.T) {
	bot := &customerBot{}
	u := serveLoopback(t, bot)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--bot-allow-insecure"}})
	tn := g.NewTenant("Bot Owner")
	g.Must(201, "POST", "/api/providers/mediastream/credentials", tn.CompanyKey, map[string]any{"company_id": tn.CompanyID,
		"credentials": map[string]any{"headers": map[string]any{"Authorization": "Bearer customer-secret"}}})
	number := publishWith(t, g, tn, "Own Bot", "+27215550950", map[string]any{"provider": "mediastream",
		"config": map[string]any{"bot": map[string]any{"url": "ws" + strings.TrimPrefix(u, "http") + "/media", "parameters": map[string]any{"tier": "gold"}}}})

	sipp(t, g, "uac_dtmf_hash.xml", number)
	c := lastConversation(t, g, tn)
	if c["status"] != "completed" || c["end_reason"] != "agent_hangup" || c["source"] != "mediastream" ||
		!hasEntry(c, "agent", "Welcome to the customer's own bot.") || !hasEntry(c, "user", "#") {
		t.Fatalf("conversation: %v", c)
	}
	cxcotest.Eventually(t, 10*time.Second, "the bot's stop", func() bool { bot.mu.Lock(); defer bot.mu.Unlock(); return bot.stopped })
	bot.mu.Lock()
	defer bot.mu.Unlock()
	if bot.start["cxco_caller"] != "+27821234567" || bot.start["cxco_called"] != number || bot.start["tier"] != "gold" ||
		bot.encoding != "audio/x-mulaw" || bot.callSid == "" || c["external_conversation_id"] == nil {
		t.Fatalf("start: %v (call %q, %s), conversation's id %v", bot.start, bot.callSid, bot.encoding, c["external_conversation_id"])
	}
	if len(bot.marks) != 1 || bot.marks[0] != "greeting" || !strings.Contains(bot.digits, "#") || len(bot.results) != 1 {
		t.Fatalf("the bot got marks %v, digits %q, tool results %v", bot.marks, bot.digits, bot.results)
	}
}
