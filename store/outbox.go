package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"
)

// Event types recorded in a company's outbox and delivered to its webhooks.
const (
	EventConversationCompleted   = "conversation.completed"
	EventConversationTransferred = "conversation.transferred"
	EventAgentStatusChanged      = "agent.status_changed"
	EventWhatsAppVerified        = "phone_number.whatsapp_verified"
	EventWebhookTest             = "webhook.test"
)

// EventTypes are the events a webhook can subscribe to.
var EventTypes = []string{EventConversationCompleted, EventConversationTransferred, EventAgentStatusChanged, EventWhatsAppVerified}

// Event is one recorded change, as delivered: the data is the resource after the change.
type Event struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	CompanyID int64     `json:"company_id"`
	Data      any       `json:"data"`
}

// NewEventID returns "evt_" and 24 hex characters.
func NewEventID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "evt_" + hex.EncodeToString(b)
}

// queueEvent appends an event to the company's outbox inside the caller's MULTI, so
// the event exists if and only if the change it describes was committed.
func (s *Store) queueEvent(ctx context.Context, pipe redis.Pipeliner, cid int64, typ string, data any) error {
	ev := Event{ID: NewEventID(), Type: typ, CreatedAt: s.Now(), CompanyID: cid, Data: data}
	b, err := marshal(ev)
	if err != nil {
		return err
	}
	pipe.XAdd(ctx, &redis.XAddArgs{
		Stream: keyOutbox(cid),
		Values: []any{"id", ev.ID, "type", typ, "event", b},
	})
	return nil
}
