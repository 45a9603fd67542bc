package openaisim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge/openai/contract"
)

type client struct {
	t  *testing.T
	ws *websocket.Conn
}

func dial(t *testing.T, s *Server, key string) (*client, *http.Response, error) {
	t.Helper()
	hs := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); hs.Close() })
	h := http.Header{}
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
	ws, res, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/v1/realtime?model=gpt-realtime", h)
	if err != nil {
		return nil, res, err
	}
	t.Cleanup(func() { ws.Close() })
	return &client{t: t, ws: ws}, res, nil
}

func (c *client) send(v any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

// next reads until an event of type typ and returns it.
func (c *client) next(typ string) map[string]any {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", typ, err)
		}
		var ev map[string]any
		_ = json.Unmarshal(msg, &ev)
		if ev["type"] == typ {
			return ev
		}
	}
}

func strict(t *testing.T) func(Direction, []byte) {
	c, err := contract.Load()
	if err != nil {
		t.Fatal(err)
	}
	return func(d Direction, msg []byte) {
		if d == FromServer {
			if err := c.Server(msg); err != nil {
				t.Error(err)
			}
		}
	}
}

// TestAuth: no key or an unknown key is 401 before the upgrade; a refusing
// service 503.
func TestAuth(t *testing.T) {
	for _, tc := range []struct {
		name   string
		key    string
		refuse bool
		status int
	}{{"no key", "", false, 401}, {"unknown key", "sk-other", false, 401}, {"refusing", "sk-1", true, 503}} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{Keys: []string{"sk-1"}})
			s.SetRefuse(tc.refuse)
			_, res, err := dial(t, s, tc.key)
			if err == nil || res == nil || res.StatusCode != tc.status {
				t.Fatalf("dial: %v, %v", err, res)
			}
		})
	}
}

// TestClientErrors: what the reference says the server refuses is an error
// event, and the session goes on: an invented field, a second response while
// one is in progress, a truncation past the audio sent, an unknown event.
func TestClientErrors(t *testing.T) {
	s := New(Options{Observe: strict(t)})
	c, _, err := dial(t, s, "sk-1")
	if err != nil {
		t.Fatal(err)
	}
	c.next("session.created")
	c.send(map[string]any{"type": "session.update", "session": map[string]any{"type": "realtime", "temperature": 0.7}})
	if e := c.next("error")["error"].(map[string]any); e["code"] != "unknown_parameter" {
		t.Fatalf("invented field: %v", e)
	}
	c.send(map[string]any{"type": "session.update", "session": map[string]any{"type": "realtime",
		"audio": map[string]any{"output": map[string]any{"format": map[string]any{"type": "audio/pcmu"}}}}})
	c.next("session.updated")
	c.send(map[string]any{"type": "response.create", "response": map[string]any{"instructions": `Say "Hello there, this is a long greeting that takes a while."`}})
	created := c.next("response.created")
	c.send(map[string]any{"type": "response.create"})
	if e := c.next("error")["error"].(map[string]any); e["code"] != "conversation_already_has_active_response" {
		t.Fatalf("second response: %v", e)
	}
	delta := c.next("response.output_audio.delta")
	c.send(map[string]any{"type": "conversation.item.truncate", "item_id": delta["item_id"], "content_index": 0, "audio_end_ms": 60000})
	if e := c.next("error")["error"].(map[string]any); e["code"] != "invalid_value" {
		t.Fatalf("truncation past the audio: %v", e)
	}
	c.send(map[string]any{"type": "conversation.item.truncate", "item_id": delta["item_id"], "content_index": 0, "audio_end_ms": 50})
	if tr := c.next("conversation.item.truncated"); tr["audio_end_ms"] != float64(50) {
		t.Fatalf("truncated: %v", tr)
	}
	done := c.next("response.done")["response"].(map[string]any)
	if done["id"] != created["response"].(map[string]any)["id"] || done["status"] != "completed" || done["usage"] == nil {
		t.Fatalf("response.done: %v", done)
	}
	c.send(map[string]any{"type": "conversation.reset"})
	if e := c.next("error")["error"].(map[string]any); e["code"] != "invalid_value" {
		t.Fatalf("unknown event: %v", e)
	}
	if got := s.Sessions()[0]; len(got.Errors) != 4 || len(got.Truncations) != 2 || !got.Truncations[1].OK {
		t.Fatalf("session record: %+v", got)
	}
}
