package control

import (
	"errors"
	"net/http"
	"time"

	"github.com/cxco/gateway/store"
)

// The webhook deliveries API (beyond the reference): list a webhook's deliveries,
// read one, redeliver one, and send a webhook.test event. The worker that makes the
// attempts is control/webhooks.

type deliveryView struct {
	ID             int64   `json:"id"`
	WebhookID      int64   `json:"webhook_id"`
	EventID        string  `json:"event_id"`
	EventType      string  `json:"event_type"`
	Status         string  `json:"status"`
	Attempts       int     `json:"attempts"`
	LastStatusCode *int    `json:"last_status_code"`
	LastError      *string `json:"last_error"`
	LastAttemptAt  *string `json:"last_attempt_at"`
	NextAttemptAt  *string `json:"next_attempt_at"`
	CreatedAt      string  `json:"created_at"`
	UpdatedAt      string  `json:"updated_at"`
}

func optTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := rfc3339(*t)
	return &s
}

func viewDelivery(d *store.Delivery) *deliveryView {
	return &deliveryView{ID: d.ID, WebhookID: d.WebhookID, EventID: d.EventID, EventType: d.EventType, Status: d.Status,
		Attempts: d.Attempts, LastStatusCode: d.LastStatusCode, LastError: d.LastError, LastAttemptAt: optTime(d.LastAttemptAt),
		NextAttemptAt: optTime(d.NextAttemptAt), CreatedAt: rfc3339(d.CreatedAt), UpdatedAt: rfc3339(d.UpdatedAt)}
}

func webhookDeliverySchema() js {
	return object([]string{"id", "webhook_id", "event_id", "event_type", "status", "attempts", "last_status_code", "last_error",
		"last_attempt_at", "next_attempt_at", "created_at", "updated_at"}, js{
		"id":               js{"type": "integer", "description": "also sent as X-CXCO-Delivery, the same on every attempt"},
		"webhook_id":       integer(),
		"event_id":         str("the id in the event body; receivers deduplicate on it"),
		"event_type":       strEnum(append([]string{store.EventWebhookTest}, store.EventTypes...)...),
		"status":           strEnum(store.DeliveryPending, store.DeliverySucceeded, store.DeliveryFailed),
		"attempts":         integer(),
		"last_status_code": js{"type": []string{"integer", "null"}, "description": "HTTP status of the last attempt; null when it got no response"},
		"last_error":       js{"type": []string{"string", "null"}, "description": "why the last attempt failed, with the start of the response body"},
		"last_attempt_at":  js{"type": []string{"string", "null"}, "format": "date-time"},
		"next_attempt_at": js{"type": []string{"string", "null"}, "format": "date-time",
			"description": "null once finished, and while the webhook is disabled (the delivery resumes when it is active again)"},
		"created_at": dateTime(), "updated_at": dateTime()})
}

// companyWebhook reads the caller's webhook named by the path.
func (s *Server) companyWebhook(c *call) (*store.Webhook, error) {
	wid, err := c.pathID("webhook_id")
	if err != nil {
		return nil, err
	}
	return s.st.GetWebhook(c.ctx, c.companyID(), wid)
}

func activeWebhook(w *store.Webhook) error {
	if w.Status != store.WebhookActive {
		return errf(http.StatusConflict, typeConflict, "webhook %d is %s; set its status to active first", w.ID, w.Status)
	}
	return nil
}

func deliveryErr(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound("delivery")
	}
	return err
}

func (s *Server) listWebhookDeliveries(c *call) (result, error) {
	w, err := s.companyWebhook(c)
	if err != nil {
		return result{}, err
	}
	cursor, limit, err := c.paging()
	if err != nil {
		return result{}, err
	}
	page, err := s.st.ListDeliveries(c.ctx, w.CompanyID, w.ID, cursor, limit)
	if err != nil {
		return result{}, err
	}
	out := make([]*deliveryView, len(page.Items))
	for i, d := range page.Items {
		out[i] = viewDelivery(d)
	}
	return ok(newPage(out, page.HasMore, page.NextCursor))
}

func (s *Server) getWebhookDelivery(c *call) (result, error) {
	w, err := s.companyWebhook(c)
	if err != nil {
		return result{}, err
	}
	did, err := c.pathID("delivery_id")
	if err != nil {
		return result{}, err
	}
	d, err := s.st.GetDelivery(c.ctx, w.CompanyID, w.ID, did)
	if err != nil {
		return result{}, deliveryErr(err)
	}
	return ok(viewDelivery(d))
}

func (s *Server) redeliverWebhookDelivery(c *call) (result, error) {
	w, err := s.companyWebhook(c)
	if err != nil {
		return result{}, err
	}
	did, err := c.pathID("delivery_id")
	if err != nil {
		return result{}, err
	}
	if err := activeWebhook(w); err != nil {
		return result{}, err
	}
	d, err := s.st.Redeliver(c.ctx, w.CompanyID, w.ID, did)
	if err != nil {
		return result{}, deliveryErr(err)
	}
	return result{http.StatusAccepted, viewDelivery(d)}, nil
}

func (s *Server) testWebhook(c *call) (result, error) {
	w, err := s.companyWebhook(c)
	if err != nil {
		return result{}, err
	}
	if err := activeWebhook(w); err != nil {
		return result{}, err
	}
	d, err := s.st.QueueDirect(c.ctx, w, store.EventWebhookTest, map[string]any{
		"webhook_id": w.ID, "url": w.URL, "events": w.Events, "message": "This is a test event from CXCo."})
	if err != nil {
		return result{}, err
	}
	return result{http.StatusAccepted, viewDelivery(d)}, nil
}
