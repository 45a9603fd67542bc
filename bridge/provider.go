package bridge

import (
	"context"
	"log/slog"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
)

// A Provider is one voice-AI service. Each is a package under bridge
// (elevenlabs, ...) holding its protocol types, its REST client if it has one,
// and beside it a simulator written from its published documentation. The
// session logic (audio both ways, transcript, keypad, transfers, the end of the
// call) is Session's and knows no provider.
type Provider interface {
	// Slug names the provider as the API does (GET /api/providers).
	Slug() string
	// Dial opens the conversation of one call: credentials, the websocket and the
	// conversation's set-up, all within ctx. resume is nil for a call's first
	// conversation; after the socket dropped, the session dials again with what
	// was said so far, and the agent must not greet the caller a second time.
	Dial(ctx context.Context, call *callpath.Info, resume *Resume) (Conversation, error)
}

// Resume is what a reconnect tells the provider about the conversation so far.
type Resume struct {
	// Digest is the transcript's last lines, "role: text" each.
	Digest string
}

// Conversation is one call's conversation with a provider over an open
// websocket. From Dial's return on, the session reads the socket (one reader,
// which calls Handle) and writes it (one writer, which sends what AppendAudio,
// Keypad and ToolResult build, and whatever Handle sends through Events).
type Conversation interface {
	// Conn is the conversation's websocket.
	Conn() *websocket.Conn
	// ID is the provider's id of the conversation (logged and recorded).
	ID() string
	// Format is the audio format both ways.
	Format() media.Format
	// ChunkBytes is how much caller audio each audio message carries.
	ChunkBytes() int
	// Early is what the provider sent during the set-up that the session still
	// has to handle, in order.
	Early() [][]byte
	// AppendAudio appends to dst the message that carries one chunk of caller audio.
	AppendAudio(dst, chunk []byte) []byte
	// Handle acts on one message from the provider (on the reader goroutine).
	Handle(msg []byte, ev Events)
	// Keypad is the messages that give the agent a keypad entry, text being "The
	// caller entered 1234# on the keypad.", as the agent's keypad mode
	// (store.Keypad*) says.
	Keypad(text string, mode store.KeypadMode) [][]byte
	// ToolResult is the message(s) that answer a tool call.
	ToolResult(id, result string, isError bool) [][]byte
}

// Events is what a conversation tells the session, from the reader goroutine.
type Events interface {
	// Audio is agent audio to play, in the conversation's format.
	Audio(audio []byte)
	// ReplyStarted: the audio that follows belongs to a new reply.
	ReplyStarted()
	// Interrupt is barge-in: the agent's queued audio is dropped at once. It
	// returns how much of the reply since ReplyStarted the caller has heard.
	Interrupt() time.Duration
	// Transcript records what the caller or the agent said.
	Transcript(role store.Role, text string)
	// CorrectAgent replaces the agent's last transcript entry with what the
	// caller actually heard.
	CorrectAgent(text string)
	// ToolCall runs a tool the agent called (the transfer, end_call); the answer
	// goes back through Conversation.ToolResult.
	ToolCall(name, id string, args map[string]any)
	// EndCall: the agent ended the call. The call hangs up once its audio has
	// played, at most wait later if the provider does not close the
	// conversation first (0: at once).
	EndCall(wait time.Duration)
	// OnPlayed runs fn once the agent audio queued so far has played (or was
	// dropped by barge-in), from a session goroutine.
	OnPlayed(fn func())
	// Send queues a message for the provider.
	Send(msg []byte)
	// RTT reports a round trip the provider measured.
	RTT(d time.Duration)
	// Log is the call's logger.
	Log() *slog.Logger
}

// Analysis is what a provider knows about a conversation once it is over.
type Analysis struct {
	Summary    *string
	Successful *bool
	Metadata   map[string]any // merged into the conversation's metadata_
}

// Analyser is a provider with something to add once a call is over (ElevenLabs'
// post-call analysis, fetched over REST). Analyse runs in the background, tracked
// by the Connector; it gives up when stop closes.
type Analyser interface {
	Analyse(stop <-chan struct{}, call *callpath.Info, conversations []string) *Analysis
}

// Usage is a conversation that counts its own usage as it goes (OpenAI's
// response.done): Usage is merged into the conversation's metadata_ at the end.
type Usage interface {
	Usage() map[string]any
}

// Stopper is a conversation that says goodbye before the gateway closes the
// socket at the end of the call (Media Streams' stop).
type Stopper interface {
	Stop() []byte
}

// Finisher is a conversation with something to record when the call ends while
// it is under way (OpenAI's transcript of a reply the hang-up cut short). The
// session calls Finish once its reader has stopped, before the call's record
// is closed.
type Finisher interface {
	Finish(ev Events)
}
