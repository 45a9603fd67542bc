// Package openai is OpenAI's Realtime API as a voice-AI provider: each call is
// one Realtime session over the GA websocket protocol (wss://api.openai.com
// /v1/realtime?model=...), configured with session.update (the agent's
// personality as instructions, its voice, G.711 µ-law both ways so a PCMU call
// is never transcoded, server or semantic VAD, input transcription, and the
// gateway's transfer_call and end_call as function tools). The opening line is
// the first response; barge-in truncates the interrupted item at the
// milliseconds the caller heard; token usage comes from response.done.
//
// Its simulator, written from OpenAI's published reference and never from this
// package, is openaisim beside it; contract holds both sides' messages to the
// published event schemas.
package openai

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge"
	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
)

// ErrProvider: OpenAI failed or could not be reached (HTTP 503 / SIP 503).
var ErrProvider error = providerError{}

type providerError struct{}

func (providerError) Error() string     { return "OpenAI Realtime unavailable" }
func (providerError) Unavailable() bool { return true }

// Defaults.
const (
	DefaultBaseURL            = "https://api.openai.com"
	DefaultModel              = "gpt-realtime"
	DefaultTranscriptionModel = "gpt-4o-mini-transcribe"
	DefaultVoice              = "marin"
)

// Credentials finds the API key a company's calls use.
type Credentials interface {
	// CredentialSecrets opens a company's stored credentials for a provider;
	// store.ErrNotFound when it has none.
	CredentialSecrets(ctx context.Context, cid int64, slug string) (map[string]any, error)
	// GetVoice is a voice of the catalogue (the agent's).
	GetVoice(ctx context.Context, id int64) (*store.Voice, error)
}

// Provider is OpenAI Realtime as a bridge.Provider.
type Provider struct {
	// BaseURL is the API's origin (https://api.openai.com, or the simulator's).
	BaseURL string
	// Model is the Realtime model (default gpt-realtime).
	Model string
	// PlatformKey is the platform's key, for companies without their own.
	PlatformKey string
	Store       Credentials
	Log         *slog.Logger

	once   sync.Once
	dialer *websocket.Dialer
	// writeBufs lends gorilla a write buffer only while it writes (the session
	// update, the greeting, the close): the session frames its data messages itself.
	writeBufs sync.Pool
}

func (p *Provider) init() {
	p.once.Do(func() {
		// The read buffer is held for the call's life; a message longer than it is
		// read past it, straight into the session's pooled buffer.
		p.dialer = &websocket.Dialer{NetDialContext: bridge.NetDial(nil), ReadBufferSize: 2 << 10, WriteBufferSize: 4 << 10, WriteBufferPool: &p.writeBufs}
		if p.BaseURL == "" {
			p.BaseURL = DefaultBaseURL
		}
		if p.Model == "" {
			p.Model = DefaultModel
		}
		if p.Log == nil {
			p.Log = slog.New(slog.DiscardHandler)
		}
	})
}

// Slug implements bridge.Provider.
func (p *Provider) Slug() string { return store.ProviderOpenAI }

// key is the company's OpenAI key, else the platform's.
func (p *Provider) key(ctx context.Context, cid int64) (string, error) {
	creds, err := p.Store.CredentialSecrets(ctx, cid, store.ProviderOpenAI)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return "", err
	default:
		if k, _ := creds["api_key"].(string); k != "" {
			return k, nil
		}
	}
	if p.PlatformKey == "" {
		return "", fmt.Errorf("%w: no OpenAI key for company %d and no platform key", ErrProvider, cid)
	}
	return p.PlatformKey, nil
}

// realtimeURL is the websocket URL of the Realtime API for the model.
func (p *Provider) realtimeURL() (string, error) {
	u, err := url.Parse(strings.TrimRight(p.BaseURL, "/") + "/v1/realtime")
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	case "http":
		u.Scheme = "ws"
	}
	u.RawQuery = url.Values{"model": {p.Model}}.Encode()
	return u.String(), nil
}

// Dial implements bridge.Provider: the websocket with the company's key (never
// logged), session.created, our session.update and its session.updated; then
// the opening line is asked for as the first response — or, on a reconnect,
// the conversation so far is given as a system message and the agent waits.
func (p *Provider) Dial(ctx context.Context, info *callpath.Info, resume *bridge.Resume) (bridge.Conversation, error) {
	p.init()
	a := info.Agent
	key, err := p.key(ctx, a.CompanyID)
	if err != nil {
		return nil, err
	}
	voice := DefaultVoice
	if v, err := p.Store.GetVoice(ctx, a.VoiceID); err == nil && v.ProviderID == store.ProviderID(store.ProviderOpenAI) && v.ExternalVoiceID != "" {
		voice = v.ExternalVoiceID
	}
	u, err := p.realtimeURL()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProvider, err)
	}
	h := http.Header{"Authorization": {"Bearer " + key}}
	conn, res, err := p.dialer.DialContext(ctx, u, h)
	if err != nil {
		if res != nil {
			return nil, fmt.Errorf("%w: websocket handshake: HTTP %d", ErrProvider, res.StatusCode)
		}
		return nil, fmt.Errorf("%w: websocket: %w", ErrProvider, err)
	}
	c := &conversation{conn: conn, log: info.Log, chunk: info.Config.ChunkMS * 8, calls: map[string]string{}, items: map[string]*item{}}
	fail := func(err error) (bridge.Conversation, error) {
		conn.Close()
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	conn.SetReadDeadline(deadline)
	conn.SetWriteDeadline(deadline)
	// session.created comes first.
	if err := c.await(conn, "session.created"); err != nil {
		return fail(err)
	}
	if err := conn.WriteMessage(websocket.TextMessage, sessionUpdate(info, voice)); err != nil {
		return fail(fmt.Errorf("%w: send session.update: %w", ErrProvider, err))
	}
	if err := c.await(conn, "session.updated"); err != nil {
		return fail(err)
	}
	var first [][]byte
	if resume == nil {
		switch {
		case info.Message != "":
			// leave_message: the only response is the message, word for word.
			first = append(first, sayOnly(callpath.FillVariables(info.Message, info.Variables())))
		case a.OpeningLine != "":
			first = append(first, openingLine(a.OpeningLine))
		}
	} else if resume.Digest != "" {
		first = append(first, systemMessage("The phone connection dropped and was restored; the conversation continues. Do not greet the caller again. So far:\n"+resume.Digest))
	}
	for _, m := range first {
		if err := conn.WriteMessage(websocket.TextMessage, m); err != nil {
			return fail(fmt.Errorf("%w: %w", ErrProvider, err))
		}
	}
	conn.SetReadDeadline(time.Time{})
	conn.SetWriteDeadline(time.Time{})
	return c, nil
}

// await reads until an event of type want (keeping what else comes for the
// session); an error event fails the set-up with OpenAI's message.
func (c *conversation) await(conn *websocket.Conn, want string) error {
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("%w: waiting for %s: %w", ErrProvider, want, err)
		}
		typ := eventType(msg)
		switch typ {
		case want:
			if typ == "session.created" {
				c.id = sessionID(msg)
			}
			return nil
		case "error":
			return fmt.Errorf("%w: %s refused: %s", ErrProvider, want, errorMessage(msg))
		default:
			c.early = append(c.early, msg)
		}
	}
}

var _ bridge.Provider = (*Provider)(nil)

// chunk sizes are in µ-law bytes: 8 a millisecond.
var _ = media.FormatULaw8k
