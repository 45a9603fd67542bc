package elevenlabssim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestHooks(t *testing.T) {
	t.Run("DropConversations closes sockets without a close frame", func(t *testing.T) {
		e := newEnv(t, Options{})
		id := e.createAgent(agentBody("", "ulaw_8000"))
		c1, c2 := e.dial(id, nil), e.dial(id, nil)
		m1 := c1.expect("conversation_initiation_metadata")
		c2.expect("conversation_initiation_metadata")
		if n := e.sim.DropConversations(); n != 2 {
			t.Errorf("dropped %d, want 2", n)
		}
		for _, c := range []*client{c1, c2} {
			if code := closeCode(c.closed()); code != 1006 {
				t.Errorf("close code %d, want 1006 (abnormal: no close frame)", code)
			}
		}
		conv := e.waitEnded(m1.Meta.ConversationID)
		if conv.TerminationReason != "Connection dropped by the simulator." || conv.Status != "processing" {
			t.Errorf("dropped conversation %+v", conv)
		}
		// New conversations still work.
		e.dial(id, nil).expect("conversation_initiation_metadata")
	})
	t.Run("SetRefuse answers 503", func(t *testing.T) {
		e := newEnv(t, Options{})
		id := e.createAgent(agentBody("", "ulaw_8000"))
		e.sim.SetRefuse(true)
		_, res, err := e.tryDialURL(e.wsURL(id), nil)
		if err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("refused dial: %v %v", err, res)
		}
		e.sim.SetRefuse(false)
		e.dial(id, nil).expect("conversation_initiation_metadata")
	})
	t.Run("SetConnectDelay delays the metadata", func(t *testing.T) {
		e := newEnv(t, Options{})
		id := e.createAgent(agentBody("", "ulaw_8000"))
		e.sim.SetConnectDelay(400 * time.Millisecond)
		start := time.Now()
		c := e.dial(id, initiation(nil))
		c.expect("conversation_initiation_metadata")
		if d := time.Since(start); d < 400*time.Millisecond {
			t.Errorf("metadata after %v, want at least 400ms", d)
		}
		// A client that gives up first leaves a failed conversation.
		c = e.dial(id, initiation(nil))
		c.ws.Close()
		convs := e.sim.Conversations() // the newest is last; it may have ended already
		if conv := e.waitEnded(convs[len(convs)-1].ID); conv.Status != "failed" {
			t.Errorf("gave-up conversation %+v", conv)
		}
	})
	t.Run("without initiation data the metadata still comes", func(t *testing.T) {
		e := newEnv(t, Options{})
		id := e.createAgent(agentBody("Hi.", "ulaw_8000"))
		c := e.dial(id, nil)
		c.expect("conversation_initiation_metadata")
		c.readResponse(800 * time.Millisecond)
		if convs := e.sim.Conversations(); len(convs) != 1 || convs[0].Initiation != nil || convs[0].Status != "in-progress" {
			t.Errorf("conversations %+v", convs)
		}
	})
	t.Run("over HTTP", func(t *testing.T) {
		e := newEnv(t, Options{})
		id := e.createAgent(agentBody("", "ulaw_8000"))
		post := func(path string, want int) []byte {
			t.Helper()
			code, b := e.do(http.MethodPost, path, nil)
			if code != want {
				t.Fatalf("POST %s: %d %s, want %d", path, code, b, want)
			}
			return b
		}
		post("/sim/refuse?on=1", 200)
		if _, res, _ := e.tryDialURL(e.wsURL(id), nil); res == nil || res.StatusCode != 503 {
			t.Errorf("refused over HTTP: %v", res)
		}
		post("/sim/refuse?on=0", 200)
		post("/sim/refuse?on=maybe", 422)
		post("/sim/delay?ms=300", 200)
		post("/sim/delay?ms=-1", 422)
		start := time.Now()
		c := e.dial(id, nil)
		c.expect("conversation_initiation_metadata")
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("metadata after %v, want at least 300ms", d)
		}
		post("/sim/delay?ms=0", 200)
		if b := post("/sim/drop", 200); string(b) != "{\"dropped\":1}\n" {
			t.Errorf("drop: %s", b)
		}
		if code := closeCode(c.closed()); code != 1006 {
			t.Errorf("close code %d, want 1006", code)
		}
		code, b := e.do(http.MethodGet, "/sim/conversations", nil)
		var convs []Conversation
		if code != 200 || json.Unmarshal(b, &convs) != nil || len(convs) != 1 || convs[0].AgentID != id {
			t.Errorf("GET /sim/conversations: %d %s", code, b)
		}
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/sim/drop", nil)
		if res, err := e.srv.Client().Do(req); err != nil || res.StatusCode != 401 {
			t.Errorf("hook without a key: %v %v", err, res)
		}
	})
}

// TestManyConversations runs whole conversations at once and checks that Close
// leaves nothing running.
func TestManyConversations(t *testing.T) {
	n := 100
	if testing.Short() {
		n = 20
	}
	e := newEnv(t, Options{PingInterval: 50 * time.Millisecond, Hooks: []string{HookHashEndsCall}})
	id := e.createAgent(agentBody("Hi.", "ulaw_8000"))
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for range n {
		c := e.dial(id, initiation(nil))
		wg.Go(func() {
			// Not c.next: this is not the test's goroutine, so no Fatal.
			for ev := range c.events {
				switch ev.Type {
				case "conversation_initiation_metadata":
					c.sendPCM(concat(tone(8000, 1000, 600*time.Millisecond), silence(8000, 600*time.Millisecond)), 20*time.Millisecond)
				case "agent_response":
					if ev.AgentResponse.Text == "I heard you for 0.6 seconds." {
						c.send(map[string]any{"type": "user_message", "text": "The caller entered # on the keypad."})
					}
				}
			}
			if code := closeCode(c.err); code != 1000 {
				errs <- fmt.Sprintf("conversation ended with %v", c.err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	done := 0
	deadline := time.After(30 * time.Second)
	for range n {
		select {
		case c := <-e.ended:
			if c.TerminationReason == reasonEndCall && len(c.Transcript) == 5 {
				done++
			}
		case <-deadline:
			t.Fatalf("only %d conversations ended", done)
		}
	}
	if done != n {
		t.Errorf("%d of %d conversations ended with end_call and 5 turns", done, n)
	}
	_ = e.sim.Close()
	if l := len(e.sim.liveConns()); l != 0 {
		t.Errorf("%d sockets open after Close", l)
	}
}
