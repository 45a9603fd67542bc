package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Webhook statuses.
const (
	WebhookActive   = "active"
	WebhookDisabled = "disabled"
)

// Webhook is a company's registered endpoint. The secret is sealed at rest.
type Webhook struct {
	ID            int64      `json:"id"`
	CompanyID     int64      `json:"company_id"`
	URL           string     `json:"url"`
	Events        []string   `json:"events"`
	Status        string     `json:"status"`
	SecretSealed  string     `json:"secret_sealed,omitempty"`
	FailingSince  *time.Time `json:"failing_since,omitempty"`
	DisabledAt    *time.Time `json:"disabled_at,omitempty"`
	DisableReason *string    `json:"disabled_reason,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

// HasSecret says whether deliveries are signed.
func (w *Webhook) HasSecret() bool { return w.SecretSealed != "" }

func webhookAD(cid, id int64) string { return "webhook-secret:" + itoa(cid) + ":" + itoa(id) }

// WebhookSecret opens the webhook's secret ("" when it has none).
func (s *Store) WebhookSecret(w *Webhook) (string, error) {
	if w.SecretSealed == "" {
		return "", nil
	}
	b, err := s.sealer.Open(w.SecretSealed, webhookAD(w.CompanyID, w.ID))
	return string(b), err
}

// SealWebhookSecret seals a secret for the webhook (for use inside UpdateWebhook).
func (s *Store) SealWebhookSecret(w *Webhook, secret string) {
	if secret == "" {
		w.SecretSealed = ""
		return
	}
	w.SecretSealed = s.sealer.Seal([]byte(secret), webhookAD(w.CompanyID, w.ID))
}

// CreateWebhook registers an endpoint.
func (s *Store) CreateWebhook(ctx context.Context, cid int64, url string, events []string, secret string) (*Webhook, error) {
	id, err := s.nextID(ctx, "webhook")
	if err != nil {
		return nil, err
	}
	now := s.Now()
	w := &Webhook{ID: id, CompanyID: cid, URL: url, Events: events, Status: WebhookActive, CreatedAt: now, UpdatedAt: now}
	s.SealWebhookSecret(w, secret)
	b, err := marshal(w)
	if err != nil {
		return nil, err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, keyWebhook(cid, id), b, 0)
		p.ZAdd(ctx, keyWebhooks(cid), redis.Z{Score: float64(id), Member: id})
		return nil
	})
	if err != nil {
		return nil, wrapRedis(err)
	}
	return w, nil
}

// GetWebhook reads a webhook of the company.
func (s *Store) GetWebhook(ctx context.Context, cid, id int64) (*Webhook, error) {
	var w Webhook
	if err := s.getJSON(ctx, keyWebhook(cid, id), &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// ListWebhooks returns all of a company's webhooks, oldest first.
func (s *Store) ListWebhooks(ctx context.Context, cid int64) ([]*Webhook, error) {
	ids, err := s.rdb.ZRange(ctx, keyWebhooks(cid), 0, -1).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = keyWebhook(cid, parseID(id))
	}
	return getJSONs[Webhook](ctx, s, keys)
}

// UpdateWebhook changes a webhook with fn.
func (s *Store) UpdateWebhook(ctx context.Context, cid, id int64, fn func(*Webhook) error) (*Webhook, error) {
	return mutate(ctx, s, keyWebhook(cid, id), nil, func(w *Webhook, _ redis.Pipeliner) error {
		if err := fn(w); err != nil {
			return err
		}
		w.UpdatedAt = s.Now()
		return nil
	})
}

// DeleteWebhook removes a webhook at once, with the list of its deliveries; the
// worker drops its pending deliveries when they fall due.
func (s *Store) DeleteWebhook(ctx context.Context, cid, id int64) error {
	if _, err := s.GetWebhook(ctx, cid, id); err != nil {
		return err
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, keyWebhook(cid, id), keyWebhookDeliveries(cid, id))
		p.ZRem(ctx, keyWebhooks(cid), id)
		return nil
	})
	return wrapRedis(err)
}
