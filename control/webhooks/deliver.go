package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cxco/gateway/control"
	"github.com/cxco/gateway/store"
)

// newClient is the HTTP client of every attempt: no proxy, no redirects, and a dialer
// that connects only to the addresses it has checked.
func (w *Worker) newClient() *http.Client {
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would dial the target itself, past our address check
		DialContext:            w.dial,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           2 * w.opts.Workers,
		MaxIdleConnsPerHost:    w.opts.Workers,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    w.opts.Timeout,
		ResponseHeaderTimeout:  w.opts.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// dial resolves the host once, refuses it if any of its addresses is forbidden (unless
// insecure targets are allowed), and connects to exactly the addresses it checked, so
// a name that resolves differently a moment later (DNS rebinding) cannot slip through.
func (w *Worker) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port %q", portStr)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = w.opts.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("%s has no address", host)
		}
	}
	if !w.opts.AllowInsecure {
		for _, ip := range ips {
			if control.ForbiddenAddr(ip) {
				return nil, fmt.Errorf("%w: %s resolves to %s (private, loopback, link-local or metadata)", ErrForbiddenAddress, host, ip.Unmap())
			}
		}
	}
	var d net.Dialer
	var firstErr error
	for _, ip := range ips {
		c, err := d.DialContext(ctx, network, netip.AddrPortFrom(ip.Unmap().WithZone(""), uint16(port)).String())
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// handle runs one claimed delivery: attempt it and record the outcome, or park it
// (webhook disabled), drop it (webhook deleted) or hand it back (shutting down).
func (w *Worker) handle(ctx context.Context, d *store.Delivery) {
	bg := context.WithoutCancel(ctx) // an attempt under way finishes during shutdown
	log := w.log.With("company_id", d.CompanyID, "webhook_id", d.WebhookID, "delivery_id", d.ID)
	if ctx.Err() != nil {
		w.finish(bg, log, d, store.Attempt{Outcome: store.OutcomeRelease})
		return
	}
	hook, err := w.st.GetWebhook(ctx, d.CompanyID, d.WebhookID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		w.finish(bg, log, d, store.Attempt{Outcome: store.OutcomeDrop})
		return
	case err != nil:
		log.Warn("webhooks: cannot read the webhook; the delivery is retried when its lease ends", "err", err)
		return
	case hook.Status != store.WebhookActive:
		w.finish(bg, log, d, store.Attempt{Outcome: store.OutcomePark})
		return
	}
	actx, cancel := context.WithTimeout(bg, w.opts.Timeout)
	res := w.deliver(actx, hook, d)
	cancel()
	w.attempts.Add(1)
	if res.Outcome == store.OutcomeSucceeded {
		w.succeeded.Add(1)
	} else {
		w.failed.Add(1)
	}
	applied, next := w.finish(bg, log, d, res)
	if !applied {
		return
	}
	switch {
	case res.Outcome == store.OutcomeSucceeded:
		log.Debug("webhook delivered", "event_type", d.EventType, "status", res.StatusCode, "attempt", d.Attempts+1)
	case next < 0:
		log.Warn("webhook delivery failed for good", "event_type", d.EventType, "attempts", d.Attempts+1, "err", res.Error)
	default:
		log.Debug("webhook attempt failed; will retry", "attempt", d.Attempts+1, "err", res.Error,
			"next_attempt_at", time.UnixMilli(next).UTC().Format(time.RFC3339Nano))
	}
	w.noteHealth(bg, log, hook, res)
}

func (w *Worker) finish(ctx context.Context, log *slog.Logger, d *store.Delivery, a store.Attempt) (bool, int64) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	applied, next, err := w.st.FinishDelivery(ctx, d, a, w.opts.Retries, w.opts.Retention)
	if err != nil {
		log.Warn("webhooks: cannot record the outcome; the delivery is attempted again when its lease ends", "outcome", string(a.Outcome), "err", err)
		return false, -1
	}
	if !applied {
		log.Warn("webhooks: lease lost before the outcome was recorded (another node has the delivery)", "outcome", string(a.Outcome))
	}
	return applied, next
}

// noteHealth writes the webhook's failing_since only when it changes, and disables a
// webhook that has failed for DisableAfter.
func (w *Worker) noteHealth(ctx context.Context, log *slog.Logger, hook *store.Webhook, res store.Attempt) {
	ok := res.Outcome == store.OutcomeSucceeded
	if ok && hook.FailingSince == nil {
		return
	}
	if !ok && hook.FailingSince != nil && time.Since(*hook.FailingSince) < w.opts.DisableAfter {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	changed, err := w.st.NoteWebhookHealth(ctx, hook.CompanyID, hook.ID, hook.URL, ok, res.Error, w.opts.DisableAfter)
	if err != nil {
		log.Warn("webhooks: cannot record the webhook's health", "err", err)
		return
	}
	if changed != nil && changed.Status == store.WebhookDisabled {
		log.Warn("webhook disabled: it kept failing", "url", changed.URL, "reason", *changed.DisableReason)
	}
}

// deliver makes one attempt.
func (w *Worker) deliver(ctx context.Context, hook *store.Webhook, d *store.Delivery) store.Attempt {
	fail := func(code int, format string, args ...any) store.Attempt {
		return store.Attempt{Outcome: store.OutcomeFailed, StatusCode: code, Error: clip(fmt.Sprintf(format, args...), 500)}
	}
	if err := control.CheckWebhookURL(ctx, hook.URL, w.opts.AllowInsecure); err != nil {
		return fail(0, "refused: %v", err)
	}
	secret, err := w.st.WebhookSecret(hook)
	if err != nil {
		return fail(0, "the webhook's secret cannot be opened (was --secret-key changed?)")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return fail(0, "bad request: %v", err)
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", UserAgent)
	h.Set(HeaderEvent, d.EventType)
	h.Set(HeaderDelivery, strconv.FormatInt(d.ID, 10))
	if secret != "" {
		h.Set(HeaderSignature, Sign(secret, time.Now(), d.Payload))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return fail(0, "%s", describe(err, w.opts.Timeout))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return store.Attempt{Outcome: store.OutcomeSucceeded, StatusCode: code}
	case code >= 300 && code < 400:
		return fail(code, "HTTP %d: redirects are not followed (Location: %s)", code, resp.Header.Get("Location"))
	default:
		return fail(code, "HTTP %d: %s", code, clip(string(body), 200))
	}
}

// describe turns a client error into a short message for last_error.
func describe(err error, timeout time.Duration) string {
	switch {
	case errors.Is(err, ErrForbiddenAddress):
		return "refused: " + innermost(err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no response within %s", timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// innermost is the message of the dial error, without the "dial tcp" wrapping.
func innermost(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

// clip shortens s to at most n bytes of valid UTF-8 on one line.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return strings.ToValidUTF8(s, "")
}
