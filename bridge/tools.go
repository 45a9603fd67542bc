package bridge

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
)

// The tools every agent has and the keypad, alike for every provider.

// onToolCall runs a tool the agent called.
func (s *Session) onToolCall(name, id string, args map[string]any) {
	switch name {
	case ToolTransfer:
		s.spawn(func() { s.transfer(id, args) })
	case ToolEndCall:
		s.reply(id, "The call is ending.", false)
		(*events)(s).EndCall(0)
	default:
		s.log.Info("unknown tool called", "tool", name)
		s.reply(id, fmt.Sprintf("Unknown tool %q: the gateway cannot run it.", name), true)
	}
}

// reply answers a tool call.
func (s *Session) reply(id, result string, isError bool) {
	for _, m := range s.current().ToolResult(id, result, isError) {
		s.send(m)
	}
}

// transfer runs the transfer tool: the destination must be one of the agent's;
// the call's transfer (REFER or bridged) either succeeds — the caller is gone to
// a human — or fails, and the agent is told so it can say so.
func (s *Session) transfer(id string, params map[string]any) {
	target, _ := params["destination"].(string)
	target = strings.TrimSpace(target)
	if reason, _ := params["reason"].(string); reason != "" {
		s.log.Info("the agent asks for a transfer", "destination", target, "reason", reason)
	}
	var dest *store.TransferDestination
	for i, d := range s.cfg.Transfer.Destinations {
		if sameDestination(d.Number, target) {
			dest = &s.cfg.Transfer.Destinations[i]
			break
		}
	}
	if dest == nil {
		s.log.Info("transfer to a destination the agent does not have", "target", target)
		s.reply(id, fmt.Sprintf("%q is not one of this agent's transfer destinations; the call goes on.", target), true)
		return
	}
	lb := s.line.Load()
	if lb == nil {
		s.reply(id, "The call is not connected yet.", true)
		return
	}
	s.rec.Entry(store.RoleSystem, "Transfer to "+dest.Number+" requested.", s.since())
	// The call ending meanwhile (Close) cancels the transfer.
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
	defer cancel()
	err := lb.Transfer(ctx, dest.Number, s.cfg.Transfer.Mode == store.TransferBridge)
	if err != nil {
		s.log.Info("transfer failed", "target", dest.Number, "err", err)
		s.rec.Entry(store.RoleSystem, "Transfer to "+dest.Number+" failed: "+err.Error()+".", s.since())
		s.reply(id, "The transfer failed ("+err.Error()+"). Tell the caller and carry on with the conversation.", true)
		return
	}
	s.rec.Entry(store.RoleSystem, "Call transferred to "+dest.Number+".", s.since())
	s.reply(id, "The caller has been transferred to "+dest.Number+".", false)
	// The caller is with a human now (REFER: the call is ending; bridged: the call
	// goes on between the caller and the destination): the agent leaves the call,
	// and the call's supervisor closes the session.
	s.finish(callpath.End{Reason: callpath.Transferred})
}

// sameDestination compares an E.164 number or a sip: URI as the agent configured it
// with what the provider asked for.
func sameDestination(configured, asked string) bool {
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimSpace(s))
		if strings.HasPrefix(s, "sip:") || strings.HasPrefix(s, "sips:") {
			return s
		}
		var b strings.Builder
		for _, r := range s {
			if r >= '0' && r <= '9' {
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	return asked != "" && norm(configured) == norm(asked)
}

// DigitSender is a conversation that takes each keypad digit as it is pressed
// (the Media Streams dtmf message) rather than a whole entry.
type DigitSender interface {
	Digit(d rune) []byte
}

// keypad collects digits until # or a pause.
type keypad struct {
	mu      sync.Mutex
	digits  []byte
	t       *time.Timer
	gen     int
	stopped bool
}

func (k *keypad) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	if k.t != nil {
		k.t.Stop()
	}
}

// OnDigit implements callpath.Peer: keypad digits are collected until # or a pause of
// config.keypad.inter_digit_timeout_ms, then go to the agent as one entry, as
// config.keypad.mode says: by default a user turn, which the agent answers.
func (s *Session) OnDigit(d media.Digit) {
	if s.cfg.Keypad.Mode == store.KeypadOff {
		s.log.Info("DTMF from the caller ignored (keypad off)", "digit", string(d.Digit))
		return
	}
	if ds, ok := s.current().(DigitSender); ok {
		s.send(ds.Digit(d.Digit))
	}
	k := &s.keys
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	k.digits = append(k.digits, byte(d.Digit))
	k.gen++
	gen := k.gen
	if k.t != nil {
		k.t.Stop()
	}
	if d.Digit == '#' {
		k.mu.Unlock()
		s.keypadEntry(gen)
		return
	}
	k.t = time.AfterFunc(time.Duration(s.cfg.Keypad.InterDigitMS)*time.Millisecond, func() {
		s.spawn(func() { s.keypadEntry(gen) })
	})
	k.mu.Unlock()
}

// keypadEntry sends the digits collected so far (unless more came since gen).
func (s *Session) keypadEntry(gen int) {
	k := &s.keys
	k.mu.Lock()
	if gen != k.gen || len(k.digits) == 0 {
		k.mu.Unlock()
		return
	}
	entry := string(k.digits)
	k.digits = k.digits[:0]
	k.mu.Unlock()
	text := "The caller entered " + entry + " on the keypad."
	s.log.Info("keypad entry from the caller", "digits", len(entry), "mode", s.cfg.Keypad.Mode)
	// Providers answer a typed turn but do not transcribe it back: the transcript
	// gets the entry here.
	role := store.RoleUser
	if s.cfg.Keypad.Mode == store.KeypadContextualUpdate {
		role = store.RoleSystem
	}
	s.rec.Entry(role, text, s.since())
	if _, perDigit := s.current().(DigitSender); !perDigit {
		for _, m := range s.current().Keypad(text, s.cfg.Keypad.Mode) {
			s.send(m)
		}
	}
}
