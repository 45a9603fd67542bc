// Package mediastream connects a call to your own bot over a websocket, in the
// Twilio Media Streams message format: the format voice-bot frameworks
// (pipecat, Vocode and others) already speak for Twilio, so a bot written for
// them answers the gateway's calls unchanged.
//
// The gateway plays Twilio's part of a bidirectional stream (Twilio's Media
// Streams "WebSocket Messages" reference): it dials the agent's config.bot.url
// with the company's headers (its mediastream credential), sends connected,
// then start (streamSid, callSid, accountSid, tracks, mediaFormat audio/x-mulaw
// at 8000 Hz, and customParameters), the caller's audio as media messages of
// 20 ms of base64 µ-law, each keypad digit as dtmf, a mark back when the bot's
// audio before it has played, and stop when the call ends. The bot sends media
// (its voice), mark, and clear (barge-in: its queued audio is dropped and its
// pending marks come back at once).
//
// Beyond Twilio's messages, a bot may send what the gateway records and does
// (documented in the README, "Your own bot"):
//
//	{"event": "transcript", "streamSid": "...", "transcript": {"role": "user" | "agent", "text": "..."}}
//	{"event": "tool_call", "streamSid": "...", "toolCall": {"id": "1", "name": "transfer_call" | "end_call", "arguments": {...}}}
//
// and gets {"event": "tool_result", "streamSid": "...", "toolResult": {"id":
// "1", "result": "...", "isError": false}} for each tool call. A bot that closes
// the socket normally ends the call once its audio has played.
//
// start.customParameters carry the call and the agent: cxco_conversation_id,
// cxco_agent_id, cxco_agent_name, cxco_language, cxco_caller, cxco_called,
// cxco_opening_line, cxco_transfer_destinations (a JSON array of {number,
// label, condition}), cxco_resumed ("true" after the socket dropped and was
// dialled again, with cxco_conversation_so_far), and the agent's own
// config.bot.parameters.
package mediastream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge"
	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"

	"github.com/cxco/gateway/bridge/internal/b64"
)

// ErrProvider: the bot could not be reached (SIP 503).
var ErrProvider error = providerError{}

type providerError struct{}

func (providerError) Error() string     { return "the agent's bot is unavailable" }
func (providerError) Unavailable() bool { return true }

// ErrForbiddenAddress: the bot's URL names a loopback, private or link-local
// address, which only AllowPrivate permits (the gateway must not be a way into
// the network it runs in).
var ErrForbiddenAddress = errors.New("mediastream: the bot's address is not public")

// Credentials opens a company's stored credentials.
type Credentials interface {
	CredentialSecrets(ctx context.Context, cid int64, slug string) (map[string]any, error)
}

// Provider is your own bot as a bridge.Provider.
type Provider struct {
	Store Credentials
	// AllowPrivate lets bots live at loopback and private addresses, and use
	// ws:// (development and tests; --bot-allow-insecure).
	AllowPrivate bool
	Log          *slog.Logger

	once   sync.Once
	dialer *websocket.Dialer
	// writeBufs lends gorilla a write buffer only while it writes (the start
	// messages, the close): the session frames its data messages itself.
	writeBufs sync.Pool
}

func (p *Provider) init() {
	p.once.Do(func() {
		d := &net.Dialer{Timeout: 10 * time.Second, Control: p.checkAddress}
		// The read buffer is held for the call's life; a message longer than it is
		// read past it, straight into the session's pooled buffer.
		p.dialer = &websocket.Dialer{NetDialContext: bridge.NetDial(d.DialContext), ReadBufferSize: 2 << 10, WriteBufferSize: 4 << 10,
			WriteBufferPool: &p.writeBufs}
		if p.Log == nil {
			p.Log = slog.New(slog.DiscardHandler)
		}
	})
}

// checkAddress refuses, at connect time (after DNS, so a name cannot be
// rebound to one), the addresses a public bot cannot have.
func (p *Provider) checkAddress(_, address string, _ syscall.RawConn) error {
	if p.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return err
	}
	a := ap.Addr().Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, a)
	}
	return nil
}

// Slug implements bridge.Provider.
func (p *Provider) Slug() string { return store.ProviderMediaStream }

// headers are the company's headers for its bots (its mediastream credential).
func (p *Provider) headers(ctx context.Context, cid int64) (http.Header, error) {
	h := http.Header{}
	creds, err := p.Store.CredentialSecrets(ctx, cid, store.ProviderMediaStream)
	if errors.Is(err, store.ErrNotFound) {
		return h, nil
	}
	if err != nil {
		return nil, err
	}
	hm, _ := creds["headers"].(map[string]any)
	for k, v := range hm {
		if s, ok := v.(string); ok {
			h.Set(k, s)
		}
	}
	return h, nil
}

// Dial implements bridge.Provider: the bot's websocket, connected and start.
func (p *Provider) Dial(ctx context.Context, info *callpath.Info, resume *bridge.Resume) (bridge.Conversation, error) {
	if info.Message != "" {
		// Media Streams (Twilio's protocol, which our bot speaks) carries
		// audio, marks and DTMF; it has no message that tells the bot what
		// to say, so a voicemail message cannot be left through a bot.
		return nil, callpath.Refuse(480, "Temporarily Unavailable", callpath.VoicemailFailed,
			errors.New("a Media Streams bot cannot be told what to say: leave_message needs an agent on elevenlabs or openai"))
	}
	p.init()
	bot := info.Config.Bot
	if bot.URL == "" {
		return nil, callpath.Refuse(480, "Temporarily Unavailable", callpath.AgentNotProvisioned, errors.New("the agent has no config.bot.url"))
	}
	u, err := url.Parse(bot.URL)
	if err != nil || (u.Scheme != "wss" && !(u.Scheme == "ws" && p.AllowPrivate)) {
		return nil, fmt.Errorf("%w: %q is not a wss:// URL", ErrProvider, bot.URL)
	}
	h, err := p.headers(ctx, info.Agent.CompanyID)
	if err != nil {
		return nil, err
	}
	conn, res, err := p.dialer.DialContext(ctx, bot.URL, h)
	if err != nil {
		if res != nil {
			return nil, fmt.Errorf("%w: websocket handshake: HTTP %d", ErrProvider, res.StatusCode)
		}
		return nil, fmt.Errorf("%w: %w", ErrProvider, err)
	}
	c := &conversation{conn: conn, log: info.Log, streamSid: "MZ" + sid(), callSid: "CA" + sid(), accountSid: "AC" + sid(),
		chunk: max(info.Config.ChunkMS, 20) * 8, started: time.Now()}
	deadline, _ := ctx.Deadline()
	conn.SetWriteDeadline(deadline)
	for _, m := range [][]byte{connected, c.startMessage(info, resume)} {
		if err := conn.WriteMessage(websocket.TextMessage, m); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%w: %w", ErrProvider, err)
		}
	}
	conn.SetWriteDeadline(time.Time{})
	return c, nil
}

var connected = []byte(`{"event":"connected","protocol":"Call","version":"1.0.0"}`)

// startMessage is start: the stream's ids, the media format, and the custom
// parameters that tell the bot about the call.
func (c *conversation) startMessage(info *callpath.Info, resume *bridge.Resume) []byte {
	a := info.Agent
	params := map[string]string{}
	for k, v := range info.Config.Bot.Parameters {
		params[k] = v
	}
	dests := make([]map[string]string, 0, len(info.Config.Transfer.Destinations))
	for _, d := range info.Config.Transfer.Destinations {
		dests = append(dests, map[string]string{"number": d.Number, "label": d.Label, "condition": d.Condition})
	}
	db, _ := json.Marshal(dests)
	params["cxco_conversation_id"] = strconv.FormatInt(info.ConversationID, 10)
	params["cxco_agent_id"] = strconv.FormatInt(a.ID, 10)
	params["cxco_agent_name"] = a.Name
	params["cxco_language"] = a.Language
	params["cxco_caller"] = info.Caller
	params["cxco_called"] = info.Called
	params["cxco_opening_line"] = a.OpeningLine
	params["cxco_transfer_destinations"] = string(db)
	if resume != nil {
		params["cxco_resumed"] = "true"
		params["cxco_conversation_so_far"] = resume.Digest
	}
	return c.message("start", "start", map[string]any{"streamSid": c.streamSid, "accountSid": c.accountSid, "callSid": c.callSid,
		"tracks": []string{"inbound"}, "customParameters": params,
		"mediaFormat": map[string]any{"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})
}

func sid() string {
	var b [16]byte
	for i := range b {
		b[i] = "0123456789abcdef"[rand.IntN(16)]
	}
	return string(b[:]) + string(b[:])
}

// conversation is one stream to the bot (bridge.Conversation).
type conversation struct {
	conn                           *websocket.Conn
	log                            *slog.Logger
	streamSid, callSid, accountSid string
	chunk                          int
	started                        time.Time

	seq    atomic.Int64 // sequenceNumber of the last message sent
	chunks atomic.Int64 // media chunks sent (the writer)
	buf    []byte       // decoded media (reader)
}

// message is a message with its sequence number and the stream's sid; key
// names the payload object.
func (c *conversation) message(event, key string, payload any) []byte {
	m := map[string]any{"event": event, "sequenceNumber": strconv.FormatInt(c.seq.Add(1), 10), "streamSid": c.streamSid}
	if key != "" {
		m[key] = payload
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func (c *conversation) Conn() *websocket.Conn { return c.conn }
func (c *conversation) ID() string            { return c.streamSid }
func (c *conversation) Format() media.Format  { return media.FormatULaw8k }
func (c *conversation) ChunkBytes() int       { return c.chunk }
func (c *conversation) Early() [][]byte       { return nil }

// AppendAudio implements bridge.Conversation: a media message, as Twilio sends
// them (track, chunk, timestamp in ms since the stream started, payload).
func (c *conversation) AppendAudio(dst, chunk []byte) []byte {
	n := c.chunks.Add(1)
	dst = append(dst[:0], `{"event":"media","sequenceNumber":"`...)
	dst = strconv.AppendInt(dst, c.seq.Add(1), 10)
	dst = append(dst, `","streamSid":"`...)
	dst = append(dst, c.streamSid...)
	dst = append(dst, `","media":{"track":"inbound","chunk":"`...)
	dst = strconv.AppendInt(dst, n, 10)
	dst = append(dst, `","timestamp":"`...)
	dst = strconv.AppendInt(dst, time.Since(c.started).Milliseconds(), 10)
	dst = append(dst, `","payload":"`...)
	k := b64.EncodedLen(len(chunk))
	start := len(dst)
	dst = slices.Grow(dst, k+3)[:start+k]
	b64.Encode(dst[start:], chunk)
	return append(dst, `"}}`...)
}

// Digit implements bridge.DigitSender: Twilio sends each key as it is pressed.
func (c *conversation) Digit(d rune) []byte {
	return c.message("dtmf", "dtmf", map[string]any{"track": "inbound_track", "digit": string(d)})
}

// Keypad implements bridge.Conversation: the bot had each digit (Digit).
func (c *conversation) Keypad(string, store.KeypadMode) [][]byte { return nil }

// ToolResult implements bridge.Conversation.
func (c *conversation) ToolResult(id, result string, isError bool) [][]byte {
	return [][]byte{c.message("tool_result", "toolResult", map[string]any{"id": id, "result": result, "isError": isError})}
}

// Stop implements bridge.Stopper: the stop message, sent when the call ends.
func (c *conversation) Stop() []byte {
	return c.message("stop", "stop", map[string]any{"accountSid": c.accountSid, "callSid": c.callSid})
}

// botMessage is what the gateway reads of a bot's message.
type botMessage struct {
	Event string `json:"event"`
	Media *struct {
		Payload string `json:"payload"`
	} `json:"media"`
	Mark *struct {
		Name string `json:"name"`
	} `json:"mark"`
	Transcript *struct {
		Role string `json:"role"`
		Text string `json:"text"`
	} `json:"transcript"`
	ToolCall *struct {
		ID        string         `json:"id"`
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
	} `json:"toolCall"`
}

// Handle implements bridge.Conversation.
func (c *conversation) Handle(msg []byte, ev bridge.Events) {
	var m botMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		c.log.Warn("unreadable message from the bot", "err", err)
		return
	}
	switch m.Event {
	case "media":
		if m.Media == nil {
			return
		}
		need := base64.StdEncoding.DecodedLen(len(m.Media.Payload))
		if cap(c.buf) < need {
			c.buf = make([]byte, need)
		}
		n, err := base64.StdEncoding.Decode(c.buf[:need], []byte(m.Media.Payload))
		if err != nil {
			c.log.Warn("bot media is not base64", "err", err)
			return
		}
		ev.Audio(c.buf[:n])
	case "mark":
		if m.Mark == nil || m.Mark.Name == "" {
			return
		}
		name := m.Mark.Name
		ev.OnPlayed(func() { ev.Send(c.message("mark", "mark", map[string]any{"name": name})) })
	case "clear":
		ev.Interrupt()
		ev.ReplyStarted()
	case "transcript":
		if t := m.Transcript; t != nil && (t.Role == string(store.RoleUser) || t.Role == string(store.RoleAgent)) {
			ev.Transcript(store.Role(t.Role), t.Text)
		}
	case "tool_call":
		if t := m.ToolCall; t != nil && t.ID != "" {
			ev.ToolCall(t.Name, t.ID, t.Arguments)
		}
	default:
		c.log.Debug("message from the bot ignored", "event", m.Event)
	}
}

var (
	_ bridge.Provider     = (*Provider)(nil)
	_ bridge.Conversation = (*conversation)(nil)
	_ bridge.DigitSender  = (*conversation)(nil)
	_ bridge.Stopper      = (*conversation)(nil)
)
