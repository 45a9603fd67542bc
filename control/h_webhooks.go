package control

import (
	"slices"
	"strings"
	"time"

	"github.com/cxco/gateway/store"
)

type webhookView struct {
	ID             int64      `json:"id"`
	CompanyID      int64      `json:"company_id"`
	URL            string     `json:"url"`
	Events         []string   `json:"events"`
	Status         string     `json:"status"`
	HasSecret      bool       `json:"has_secret"`
	DisabledReason *string    `json:"disabled_reason,omitempty"`
	DisabledAt     *time.Time `json:"disabled_at,omitempty"`
	CreatedAt      string     `json:"created_at"`
	UpdatedAt      string     `json:"updated_at"`
}

func viewWebhook(w *store.Webhook) *webhookView {
	ev := w.Events
	if ev == nil {
		ev = []string{}
	}
	return &webhookView{ID: w.ID, CompanyID: w.CompanyID, URL: w.URL, Events: ev, Status: w.Status, HasSecret: w.HasSecret(),
		DisabledReason: w.DisableReason, DisabledAt: w.DisabledAt, CreatedAt: rfc3339(w.CreatedAt), UpdatedAt: rfc3339(w.UpdatedAt)}
}

func readEvents(f *form, required bool) ([]string, error) {
	ev, err := f.strings("events", required)
	if err != nil || ev == nil {
		return ev, err
	}
	if len(ev) == 0 {
		return nil, invalid("events: subscribe to at least one of %s", strings.Join(store.EventTypes, ", "))
	}
	var out []string
	for i, e := range ev {
		if !slices.Contains(store.EventTypes, e) {
			return nil, invalid("events[%d]: %q is not an event (one of %s)", i, e, strings.Join(store.EventTypes, ", "))
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *Server) createWebhook(c *call) (result, error) {
	f, err := readForm(c.w, c.r, "url", "events", "secret")
	if err != nil {
		return result{}, err
	}
	u, err := f.str("url", true, 1, 2000)
	if err != nil {
		return result{}, err
	}
	if err := CheckWebhookURL(c.ctx, *u, s.opts.WebhookAllowInsecure); err != nil {
		return result{}, err
	}
	events, err := readEvents(f, true)
	if err != nil {
		return result{}, err
	}
	secret, err := f.str("secret", false, 8, 256)
	if err != nil {
		return result{}, err
	}
	sec := ""
	if secret != nil {
		sec = *secret
	}
	w, err := s.st.CreateWebhook(c.ctx, c.companyID(), *u, events, sec)
	if err != nil {
		return result{}, err
	}
	return created(viewWebhook(w))
}

func (s *Server) listWebhooks(c *call) (result, error) {
	ws, err := s.st.ListWebhooks(c.ctx, c.companyID())
	if err != nil {
		return result{}, err
	}
	out := make([]*webhookView, len(ws))
	for i, w := range ws {
		out[i] = viewWebhook(w)
	}
	return ok(out)
}

func (s *Server) getWebhook(c *call) (result, error) {
	id, err := c.pathID("webhook_id")
	if err != nil {
		return result{}, err
	}
	w, err := s.st.GetWebhook(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	return ok(viewWebhook(w))
}

func (s *Server) putWebhook(c *call) (result, error) {
	id, err := c.pathID("webhook_id")
	if err != nil {
		return result{}, err
	}
	f, err := readForm(c.w, c.r, "url", "events", "status", "secret")
	if err != nil {
		return result{}, err
	}
	u, err := f.str("url", false, 1, 2000)
	if err != nil {
		return result{}, err
	}
	if u != nil {
		if err := CheckWebhookURL(c.ctx, *u, s.opts.WebhookAllowInsecure); err != nil {
			return result{}, err
		}
	}
	events, err := readEvents(f, false)
	if err != nil {
		return result{}, err
	}
	status, err := f.str("status", false, 1, 20)
	if err != nil {
		return result{}, err
	}
	if status != nil {
		if err := oneOf("status", *status, store.WebhookActive, store.WebhookDisabled); err != nil {
			return result{}, err
		}
	}
	secret, err := f.str("secret", false, 8, 256)
	if err != nil {
		return result{}, err
	}
	clearSecret := f.isNull("secret")
	w, err := s.st.UpdateWebhook(c.ctx, c.companyID(), id, func(w *store.Webhook) error {
		if u != nil {
			w.URL = *u
		}
		if events != nil {
			w.Events = events
		}
		if status != nil {
			if *status == store.WebhookActive && w.Status != store.WebhookActive {
				w.FailingSince, w.DisabledAt, w.DisableReason = nil, nil, nil
			}
			w.Status = *status
		}
		if secret != nil {
			s.st.SealWebhookSecret(w, *secret)
		} else if clearSecret {
			s.st.SealWebhookSecret(w, "")
		}
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return ok(viewWebhook(w))
}

func (s *Server) deleteWebhook(c *call) (result, error) {
	id, err := c.pathID("webhook_id")
	if err != nil {
		return result{}, err
	}
	if err := s.st.DeleteWebhook(c.ctx, c.companyID(), id); err != nil {
		return result{}, err
	}
	return noContent()
}
