package sip

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/callpath"
)

// RFC 4028 session timers, when the trunk asks for them: we accept its interval
// (or refuse one below our Min-SE with 422), let the UAC refresh unless it asks us
// to, and end the call if no refresh (re-INVITE or UPDATE) comes in time.

func headerValue(req *gsip.Request, long, compact string) string {
	if h := req.GetHeader(long); h != nil {
		return h.Value()
	}
	if h := req.GetHeader(compact); h != nil {
		return h.Value()
	}
	return ""
}

func supportsTimer(req *gsip.Request) bool {
	for _, v := range []string{headerValue(req, "Supported", "k"), headerValue(req, "Require", "")} {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "timer") {
				return true
			}
		}
	}
	return false
}

// parseSE reads "1800;refresher=uac".
func parseSE(v string) (time.Duration, string, bool) {
	parts := strings.Split(v, ";")
	n, err := strconv.Atoi(strings.TrimSpace(parts[0]))
	if err != nil || n <= 0 {
		return 0, "", false
	}
	refresher := ""
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "refresher") {
			refresher = strings.ToLower(strings.TrimSpace(val))
		}
	}
	return time.Duration(n) * time.Second, refresher, true
}

// sessionTimerOffer reads the INVITE's Session-Expires. It returns the interval to
// use (0: none), or a 422 response to send instead of going on.
func (c *call) sessionTimerOffer() (time.Duration, *gsip.Response) {
	v := headerValue(c.invite, "Session-Expires", "x")
	if v == "" {
		return 0, nil
	}
	se, refresher, ok := parseSE(v)
	if !ok {
		return 0, nil
	}
	if se < c.s.opt.SessionMinSE {
		res := gsip.NewResponseFromRequest(c.invite, 422, "Session Interval Too Small", nil)
		res.AppendHeader(gsip.NewHeader("Min-SE", strconv.Itoa(int(c.s.opt.SessionMinSE/time.Second))))
		return 0, res
	}
	switch refresher {
	case "uas":
		c.weRefresh = true
	case "uac":
	default:
		c.weRefresh = !supportsTimer(c.invite)
	}
	c.sessionExp = time.Now().Add(se)
	return se, nil
}

// addSessionTimer puts Session-Expires (and Require: timer) on a 2xx.
func (c *call) addSessionTimer(res *gsip.Response) {
	c.mu.Lock()
	se, we := c.sessionSE, c.weRefresh
	c.mu.Unlock()
	if se <= 0 {
		return
	}
	refresher := "uac"
	if we {
		refresher = "uas"
	}
	res.AppendHeader(gsip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=%s", int(se/time.Second), refresher)))
	if supportsTimer(c.invite) {
		res.AppendHeader(gsip.NewHeader("Require", "timer"))
	}
}

// refreshedBy takes a re-INVITE or UPDATE as a session refresh (and its new interval).
func (c *call) refreshedBy(req *gsip.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := headerValue(req, "Session-Expires", "x"); v != "" {
		if se, refresher, ok := parseSE(v); ok && se >= c.s.opt.SessionMinSE {
			c.sessionSE = se
			if refresher != "" {
				c.weRefresh = refresher == "uas"
			}
		}
	}
	if c.sessionSE > 0 {
		c.sessionExp = time.Now().Add(c.sessionSE)
	}
}

// sessionTimerDue says whether the session has expired (end it), or whether it is
// our turn to refresh it (half the interval has passed).
func (c *call) sessionTimerDue(now time.Time) (expired, refresh bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessionSE <= 0 {
		return false, false
	}
	if c.weRefresh {
		return false, now.After(c.sessionExp.Add(-c.sessionSE / 2))
	}
	// RFC 4028 §10: BYE at SE - min(32 s, SE/3) without a refresh.
	return now.After(c.sessionExp.Add(-min(32*time.Second, c.sessionSE/3))), false
}

// refreshSession refreshes the session with an UPDATE (no SDP).
func (c *call) refreshSession() {
	c.mu.Lock()
	if c.sessionSE <= 0 || !c.weRefresh {
		c.mu.Unlock()
		return
	}
	c.sessionExp = time.Now().Add(c.sessionSE) // one refresh at a time
	se := c.sessionSE
	c.mu.Unlock()
	req := c.newRequest(gsip.UPDATE)
	req.AppendHeader(gsip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=uas", int(se/time.Second))))
	req.AppendHeader(gsip.NewHeader("Supported", "timer"))
	ctx, cancel := context.WithTimeout(c.cp.Context(), 32*time.Second)
	defer cancel()
	res, err := c.s.cli.Do(ctx, req)
	if err != nil || res.StatusCode >= 300 {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		c.log.Warn("session refresh failed", "status", status, "err", err)
		if status == 481 || status == 408 {
			c.cp.End(callpath.End{Reason: callpath.SessionExpired})
		}
	}
}
