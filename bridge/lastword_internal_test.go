package bridge

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/callpath/callstore"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
	"github.com/cxco/gateway/store/redistest"
)

// TestQueuedBeforeLastWord: what the session queued for the provider before the
// call ended (end_call's tool result) reaches it before the provider's last word
// (Media Streams' stop), also when the writer has not sent it yet as the call
// ends: Close waits for the writer Connect started. A session whose Close did
// not wait wrote stop and closed the socket under the writer, and a bot got stop
// but never the result of its end_call (TestBotConversation, under load).
//
// The writer is held while it builds a chunk of caller audio until the bot has
// stop (what a Close that does not wait sends at once), or for holdWriter (a
// Close that waits sends nothing meanwhile): the test's verdict does not hang on
// the hold's length, only its cost does (about 1.2 s).
func TestQueuedBeforeLastWord(t *testing.T) {
	const holdWriter = time.Second
	accepted := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{}
		if ws, err := up.Upgrade(w, r, nil); err == nil {
			accepted <- ws
		}
	}))
	defer srv.Close()

	red := redistest.StartRedis(t)
	sealer, _ := store.NewSealer(store.GenerateSecretKey())
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{URL: red.URL, Sealer: sealer, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	conv, err := st.CreateConversation(ctx, store.Conversation{CompanyID: 1, AgentID: 1, Channel: "voice", Direction: "inbound"})
	if err != nil {
		t.Fatal(err)
	}
	p := &lastWordProvider{url: "ws" + strings.TrimPrefix(srv.URL, "http"), stopSeen: make(chan struct{}), holding: make(chan struct{}, 1), hold: holdWriter}
	c := &Connector{Providers: map[string]Provider{p.Slug(): p}, Log: log}
	defer c.Close()
	peer, err := c.Connect(ctx, &callpath.Info{ConversationID: conv.ID, Agent: &store.Agent{ID: 1, CompanyID: 1, VoiceProvider: p.Slug()},
		Record: callstore.New(st, log).Open(conv, log), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	s := peer.(*Session)
	ws := <-accepted
	defer ws.Close()
	got := make(chan []string, 1)
	go func() { // the bot reads everything, in order
		var msgs []string
		for {
			_, m, err := ws.ReadMessage()
			if err != nil {
				got <- msgs
				return
			}
			msgs = append(msgs, string(m))
			if string(m) == `{"event":"stop"}` {
				close(p.stopSeen)
			}
		}
	}()

	// A chunk of caller audio: the writer builds its message, and is held there.
	s.audioMu.Lock()
	s.partial = append(s.partial, make([]byte, s.chunkBytes)...)
	s.pushChunkLocked(s.partial)
	s.audioMu.Unlock()
	s.wake <- struct{}{}
	<-p.holding
	// end_call: its tool result is queued behind the held writer, and the call ends.
	if err := ws.WriteMessage(websocket.TextMessage, []byte("end")); err != nil {
		t.Fatal(err)
	}
	<-peer.Done()
	peer.Close(callpath.AgentHangup)
	msgs := <-got
	tr, stop := slices.Index(msgs, `{"tool_result":"7"}`), slices.Index(msgs, `{"event":"stop"}`)
	if tr < 0 || stop != len(msgs)-1 || tr > stop {
		t.Fatalf("the bot got %q: the tool result must come before stop, and stop last", msgs)
	}
}

// lastWordProvider is a provider whose conversation (lastWordConv) takes "end"
// from the bot as its end_call (id 7), says stop last, and holds the writer in
// AppendAudio until the bot has stop or for hold.
type lastWordProvider struct {
	url      string
	stopSeen chan struct{}
	holding  chan struct{}
	hold     time.Duration
}

func (p *lastWordProvider) Slug() string { return "lastword-test" }

func (p *lastWordProvider) Dial(ctx context.Context, _ *callpath.Info, _ *Resume) (Conversation, error) {
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, p.url, nil)
	if err != nil {
		return nil, err
	}
	return &lastWordConv{p: p, conn: conn}, nil
}

type lastWordConv struct {
	p    *lastWordProvider
	conn *websocket.Conn
}

func (c *lastWordConv) Conn() *websocket.Conn                    { return c.conn }
func (c *lastWordConv) ID() string                               { return "lastword" }
func (c *lastWordConv) Format() media.Format                     { return media.FormatULaw8k }
func (c *lastWordConv) ChunkBytes() int                          { return 160 }
func (c *lastWordConv) Early() [][]byte                          { return nil }
func (c *lastWordConv) Keypad(string, store.KeypadMode) [][]byte { return nil }
func (c *lastWordConv) Stop() []byte                             { return []byte(`{"event":"stop"}`) }
func (c *lastWordConv) ToolResult(id, _ string, _ bool) [][]byte {
	return [][]byte{[]byte(`{"tool_result":"` + id + `"}`)}
}

func (c *lastWordConv) AppendAudio(dst, _ []byte) []byte {
	select {
	case c.p.holding <- struct{}{}:
	default:
	}
	t := time.NewTimer(c.p.hold)
	defer t.Stop()
	select {
	case <-c.p.stopSeen:
	case <-t.C:
	}
	return append(dst[:0], `{"event":"media"}`...)
}

func (c *lastWordConv) Handle(msg []byte, ev Events) {
	if string(msg) == "end" {
		ev.ToolCall(ToolEndCall, "7", nil)
	}
}

var _ Stopper = (*lastWordConv)(nil)
