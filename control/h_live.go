package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cxco/gateway/store"
)

// Live calls: the calls in progress on every node (store/live.go), their
// changes as server-sent events, and hanging one up. The agency key sees every
// company's calls; company and user keys their company's.

// hangupWait is how long DELETE waits for the call's node to end it.
const hangupWait = 10 * time.Second

func (s *Server) liveRoutes() []*route {
	lr := func(method, path, summary string, rl role, status int, resp string, errs []int) *route {
		return &route{method: method, path: path, auth: authAll, role: rl, tag: "Live calls", summary: summary,
			resource: "live call", resp: resp, status: status, errors: errs}
	}
	list := lr("GET", "/api/calls/live", "List the calls in progress on every node, with their quality now", roleViewer, 200, "LiveCallList", nil)
	list.h = s.listLiveCalls
	events := lr("GET", "/api/calls/live/events",
		"Server-sent events: snapshot (the calls now), upsert (calls new or changed, every 2 s with a fresh quality figure), end (calls that ended)",
		roleViewer, 200, "", nil)
	events.stream = s.liveEvents
	hangup := lr("DELETE", "/api/calls/live/{conversation_id}",
		"Hang up a call in progress: its node sends the BYE; 204 once the call has ended, 202 if it had not within 10 s", roleMember, 204, "", []int{404, 422})
	hangup.h = s.hangupLiveCall
	return []*route{list, events, hangup}
}

func liveSchemas() js {
	quality := object([]string{"rating", "loss_percent", "jitter_ms", "buffer_ms", "remote_loss_percent"}, js{
		"rating":              js{"type": "string", "enum": []string{"good", "fair", "poor"}, "description": "good: under 1% loss and 30 ms jitter; poor: 5% loss or 60 ms jitter and above"},
		"loss_percent":        js{"type": "number", "description": "the caller's packets lost or too late to play, over the last interval"},
		"jitter_ms":           js{"type": "number", "description": "RFC 3550 interarrival jitter of the caller's RTP"},
		"buffer_ms":           js{"type": "number", "description": "the jitter buffer's delay now"},
		"remote_loss_percent": js{"type": []string{"number", "null"}, "description": "the loss of our RTP the caller reports (RTCP), when it does"},
		"mos":                 js{"type": "number", "description": "conversational quality estimate (ITU-T G.107), when the media engine gives one"}})
	call := object([]string{"conversation_id", "company_id", "agent_id", "node", "caller", "called", "state", "started_at", "codec", "provider", "updated_at"}, js{
		"conversation_id": integer(), "company_id": integer(), "company_name": str(), "agent_id": integer(), "agent_name": str(),
		"node":   str("the gateway node that carries the call (--node-id)"),
		"caller": str(), "called": str(), "direction": strEnum("inbound", "outbound"),
		"state":      strEnum(store.LiveRinging, store.LiveTalking, store.LiveOnHold, store.LiveWithHuman),
		"started_at": dateTime(), "answered_at": js{"type": []string{"string", "null"}, "format": "date-time"},
		"codec": str("PCMU or PCMA"), "transport": str("UDP, TCP or TLS"), "provider": str("the voice-AI provider"),
		"quality":    js{"oneOf": []js{quality, {"type": "null"}}, "description": "null while the caller sends no audio (on hold, or not yet)"},
		"updated_at": dateTime()})
	return js{"LiveCall": call, "LiveCallList": object([]string{"items"}, js{"items": arrayOf(ref("LiveCall"))})}
}

// liveScope is the company whose calls a key sees: 0 for the agency (all).
func (c *call) liveScope() int64 {
	if c.p.Kind == "agency" {
		return 0
	}
	return c.companyID()
}

func (s *Server) listLiveCalls(c *call) (result, error) {
	calls, err := s.st.LiveCalls(c.ctx, c.liveScope())
	if err != nil {
		return result{}, err
	}
	if calls == nil {
		calls = []store.LiveCall{}
	}
	return ok(map[string]any{"items": calls})
}

func (s *Server) hangupLiveCall(c *call) (result, error) {
	id, err := c.pathID("conversation_id")
	if err != nil {
		return result{}, err
	}
	lc, err := s.st.LiveCall(c.ctx, id)
	if err != nil {
		return result{}, err
	}
	if scope := c.liveScope(); scope != 0 && lc.CompanyID != scope {
		return result{}, store.ErrNotFound // another company's: as if there were none
	}
	sub, err := s.live.subscribe()
	if err != nil {
		return result{}, err
	}
	defer sub.close()
	if err := s.st.RequestHangup(c.ctx, id); err != nil {
		return result{}, err
	}
	timeout := time.NewTimer(hangupWait)
	defer timeout.Stop()
	for {
		select {
		case ev, open := <-sub.ch:
			if !open {
				return result{http.StatusAccepted, map[string]any{"conversation_id": id, "detail": "the hang-up was requested; its end could not be watched"}}, nil
			}
			if ev.Type == store.LiveEnd && endsCall(ev, id) {
				return noContent()
			}
		case <-timeout.C:
			return result{http.StatusAccepted, map[string]any{"conversation_id": id,
				"detail": fmt.Sprintf("the hang-up was requested from node %s; the call had not ended after %s", lc.Node, hangupWait)}}, nil
		case <-c.ctx.Done():
			return result{}, c.ctx.Err()
		}
	}
}

func endsCall(ev store.LiveEvent, id int64) bool {
	for _, lc := range ev.Calls {
		if lc.ConversationID == id {
			return true
		}
	}
	return false
}

// liveEvents streams the live calls as server-sent events until the client
// goes (or the server shuts down): first a snapshot, then upserts and ends.
// A stream that falls behind is ended; the client reconnects and gets a new
// snapshot (EventSource does so by itself).
func (s *Server) liveEvents(c *call) error {
	scope := c.liveScope()
	sub, err := s.live.subscribe()
	if err != nil {
		return err
	}
	defer sub.close()
	calls, err := s.st.LiveCalls(c.ctx, scope)
	if err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // a proxy in front must not buffer the stream
	c.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(c.w)
	send := func(event string, v any) error {
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(c.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if calls == nil {
		calls = []store.LiveCall{}
	}
	if _, err := fmt.Fprint(c.w, "retry: 2000\n\n"); err != nil {
		return nil
	}
	if send("snapshot", map[string]any{"items": calls}) != nil {
		return nil
	}
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return nil
		case <-s.streamsDone:
			return nil
		case <-ping.C:
			if _, err := fmt.Fprint(c.w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return nil
			}
		case ev, open := <-sub.ch:
			if !open {
				return nil
			}
			var mine []store.LiveCall
			for _, lc := range ev.Calls {
				if scope == 0 || lc.CompanyID == scope {
					mine = append(mine, lc)
				}
			}
			if len(mine) == 0 {
				continue
			}
			var err error
			switch ev.Type {
			case store.LiveUpsert:
				err = send("upsert", map[string]any{"items": mine})
			case store.LiveEnd:
				ids := make([]int64, len(mine))
				for i, lc := range mine {
					ids[i] = lc.ConversationID
				}
				err = send("end", map[string]any{"conversation_ids": ids})
			}
			if err != nil {
				return nil
			}
		}
	}
}

// CloseStreams ends every event stream (give it to http.Server.RegisterOnShutdown).
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.streamsDone) }) }

// liveHub shares one subscription to the live channel between this server's
// streams and hang-up requests: it subscribes with the first of them and
// unsubscribes with the last.
type liveHub struct {
	st   *store.Store
	mu   sync.Mutex
	subs map[*liveSub]struct{}
	gen  *liveGen // the subscription now, nil when there is none
}

type liveGen struct{ cancel context.CancelFunc }

type liveSub struct {
	h  *liveHub
	ch chan store.LiveEvent
}

func (h *liveHub) subscribe() (*liveSub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st == nil {
		return nil, errors.New("control: no store")
	}
	if h.gen == nil {
		ctx, cancel := context.WithCancel(context.Background())
		events, err := h.st.SubscribeLive(ctx)
		if err != nil {
			cancel()
			return nil, err
		}
		h.gen = &liveGen{cancel: cancel}
		go h.fanout(h.gen, events)
	}
	sub := &liveSub{h: h, ch: make(chan store.LiveEvent, 64)}
	h.subs[sub] = struct{}{}
	return sub, nil
}

// fanout hands each event to every subscriber; one that is full falls behind
// and is dropped (its channel closes). When the subscription ends, every
// subscriber of it is dropped.
func (h *liveHub) fanout(gen *liveGen, events <-chan store.LiveEvent) {
	for ev := range events {
		h.mu.Lock()
		for sub := range h.subs {
			select {
			case sub.ch <- ev:
			default:
				delete(h.subs, sub)
				close(sub.ch)
			}
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gen == gen {
		for sub := range h.subs {
			delete(h.subs, sub)
			close(sub.ch)
		}
		h.gen = nil
	}
}

func (sub *liveSub) close() {
	h := sub.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[sub]; ok {
		delete(h.subs, sub)
		close(sub.ch)
	}
	if len(h.subs) == 0 && h.gen != nil {
		h.gen.cancel()
		h.gen = nil
	}
}
