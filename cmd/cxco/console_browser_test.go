package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
)

// TestOperatorConsoleInBrowser walks, in headless Chromium against the built
// binary, what an operator does in the first hour: the API reference at
// /api/docs renders every operation of /api/openapi.json; the agency key signs
// in to the console, creates a company (its key shown once), adds a number to
// the pool and creates a user of the company; with that user's key an agent is
// created, given a transfer destination with its condition, and published; a
// SIPp call to it appears on the live-calls page (pushed), is hung up from
// there and disappears; its conversation shows the SIP ladder. Every page is
// saved as a screenshot (the test prints where).
//
// It runs in a network namespace of its own, like TestDashboardInBrowser.
func TestOperatorConsoleInBrowser(t *testing.T) {
	if inOwnNetNS(t) {
		return
	}
	start := time.Now()
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{})
	b := newTab(t, g.HTTP, callerWAV(t))

	// The API reference: every operation of the document is on the page.
	doc := g.Must(200, "GET", "/api/openapi.json", "", nil)
	var want []string
	for path, item := range doc["paths"].(map[string]any) {
		for method := range item.(map[string]any) {
			want = append(want, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(want)
	b.run("open /api/docs", 20*time.Second, chromedp.Navigate(g.HTTP+"/api/docs"))
	b.wait("every operation rendered", fmt.Sprintf(`document.querySelectorAll('.opblock').length === %d`, len(want)), 30*time.Second)
	got := eval[[]string](b, `[...document.querySelectorAll('.opblock')].map((o) =>
		o.querySelector('.opblock-summary-method').textContent.trim() + ' ' + o.querySelector('.opblock-summary-path').dataset.path).sort()`)
	if !slices.Equal(got, want) {
		b.fail("the reference lists\n%v\nthe document has\n%v", got, want)
	}
	if n := eval[int](b, `document.querySelectorAll('.opblock-tag').length`); n < 10 {
		b.fail("only %d tags on the page", n)
	}
	b.shot("api-docs")
	t.Logf("API reference: %d operations rendered", len(got))

	// The agency console: the key the banner printed signs in; create a company
	// (its key shown once), add a number to the pool, create a user of the company.
	b.run("back to the dashboard", 20*time.Second, chromedp.Navigate(g.HTTP+"/"), chromedp.WaitVisible(chromedp.CSS("#api-key")))
	b.signIn(g.AgencyKey, "companies")
	for _, nav := range []string{"live", "companies", "pool", "voices", "trunks"} {
		if eval[int](b, fmt.Sprintf(`document.querySelectorAll('[data-nav=%s]').length`, nav)) != 1 {
			b.fail("no %s page in the agency's menu", nav)
		}
	}
	b.run("create a company", 15*time.Second,
		chromedp.WaitVisible(chromedp.CSS("#co-name")),
		chromedp.SendKeys(chromedp.CSS("#co-name"), "Console Co"),
		chromedp.SetValue(chromedp.CSS("#co-plan"), "growth"),
		chromedp.Click(chromedp.CSS(`[data-testid=create-company]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=new-key]`)))
	compKey := eval[string](b, `document.querySelector('[data-testid=new-key]').value`)
	b.shot("company-created")
	if !strings.HasPrefix(compKey, "cxco_comp_k_") {
		b.fail("the new company's key shown: %q", compKey)
	}
	b.run("close the key", 10*time.Second, chromedp.Click(chromedp.CSS(`[data-testid=modal-close]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-company] a`)))
	co := g.Must(200, "GET", "/api/agency/companies", g.AgencyKey, nil)["items"].([]any)[0].(map[string]any)
	if co["name"] != "Console Co" || co["plan"] != "growth" {
		b.fail("company: %v", co)
	}
	coID := int64(co["id"].(float64))

	const number = "+27215550177"
	b.goTo("#/pool")
	b.run("add a number to the pool", 15*time.Second,
		chromedp.WaitVisible(chromedp.CSS("#pn-number")),
		chromedp.SendKeys(chromedp.CSS("#pn-number"), number),
		chromedp.SendKeys(chromedp.CSS("#pn-country"), "ZA"),
		chromedp.Click(chromedp.CSS(`[data-testid=add-number]`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-number=%q][data-status=available]`, number))))
	b.shot("pool")

	b.goTo(fmt.Sprintf("#/companies/%d", coID))
	b.run("create a user of the company", 15*time.Second,
		chromedp.WaitVisible(chromedp.CSS("#u-email")),
		chromedp.SendKeys(chromedp.CSS("#u-email"), "ops@console.example"),
		chromedp.SendKeys(chromedp.CSS("#u-name"), "Console Ops"),
		chromedp.SetValue(chromedp.CSS("#u-role"), "admin"),
		chromedp.Click(chromedp.CSS(`[data-testid=create-user]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=new-key]`)))
	userKey := eval[string](b, `document.querySelector('[data-testid=new-key]').value`)
	b.shot("user-created")
	b.run("close the key", 10*time.Second, chromedp.Click(chromedp.CSS(`[data-testid=modal-close]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=users] tr[data-user]`)))
	if me := g.Must(200, "GET", "/api/users/me", userKey, nil); me["email"] != "ops@console.example" || me["role"] != "admin" {
		b.fail("the user the console created: %v", me)
	}
	b.goTo("#/voices")
	b.wait("the voice catalogue", `document.querySelectorAll('[data-testid=voices] tr[data-voice]').length > 1`, 10*time.Second)
	b.shot("voices")
	b.goTo("#/trunks")
	b.wait("the trunks", `document.querySelectorAll('[data-testid=trunks] tr[data-trunk]').length >= 1`, 10*time.Second)
	b.shot("trunks")
	b.signOut()

	// The agent page, with the new user's key: create an agent, add a transfer
	// destination with its condition, save, publish.
	b.signIn(userKey, "agents")
	b.run("create an agent", 15*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=new-agent]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=agent-form] #name`)),
		chromedp.SendKeys(chromedp.CSS("#name"), "Console Agent"),
		chromedp.SendKeys(chromedp.CSS("#personality"), "You answer the phone for Console Co."),
		chromedp.SendKeys(chromedp.CSS("#opening_line"), "Console Co, good day."),
		chromedp.Click(chromedp.CSS(`[data-testid=save-agent]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-action=publish]`)))
	b.run("add a transfer destination and save", 15*time.Second,
		chromedp.Click(chromedp.CSS(`[data-action=add-destination]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-dest] [name=dest_number]`), "+27215550100"),
		chromedp.SendKeys(chromedp.CSS(`[data-dest] [name=dest_condition]`), "the caller asks for a human"),
		chromedp.SendKeys(chromedp.CSS(`[data-dest] [name=dest_label]`), "front desk"),
		chromedp.Click(chromedp.CSS(`[data-testid=save-agent]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=banner]`)))
	b.shot("agent-form")
	b.run("publish it", 15*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`[data-action=publish]`)),
		chromedp.Click(chromedp.CSS(`[data-action=publish]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-action=talk]`)))
	if got := eval[string](b, `document.querySelector('[data-testid=agent-number]').textContent`); got != number {
		b.fail("the agent page shows number %q, want %s", got, number)
	}
	b.shot("agent-published")
	agents := g.Must(200, "GET", "/api/agents", userKey, nil)["items"].([]any)
	agent := agents[0].(map[string]any)
	dests := agent["config"].(map[string]any)["transfer"].(map[string]any)["destinations"].([]any)
	if agent["status"] != "active" || len(dests) != 1 || dests[0].(map[string]any)["number"] != "+27215550100" ||
		dests[0].(map[string]any)["condition"] != "the caller asks for a human" || dests[0].(map[string]any)["label"] != "front desk" {
		b.fail("the agent as the API has it: %v", agent)
	}

	// Live calls: a SIPp call shows up (pushed, no reload), is hung up from the
	// page, and goes away.
	b.goTo("#/live")
	b.wait("the live stream", `document.querySelector('[data-testid=live-state]')?.classList.contains('on')`, 10*time.Second)
	wait := cxcotest.StartSIPp(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), "uac_wait_bye.xml", number)
	b.wait("the call in the page", `!!document.querySelector('[data-testid=live-calls] tr[data-call][data-state=talking]')`, 20*time.Second)
	b.wait("its quality figure", `!!document.querySelector('[data-testid=live-calls] tr[data-call] [data-testid=quality]')`, 10*time.Second)
	row := eval[string](b, `document.querySelector('[data-testid=live-calls] tr[data-call]').textContent`)
	if !strings.Contains(row, "Console Agent") || !strings.Contains(row, "PCMA") || !strings.Contains(row, number) {
		b.fail("live call row: %q", row)
	}
	convID := eval[string](b, `document.querySelector('[data-testid=live-calls] tr[data-call]').dataset.call`)
	b.shot("live-call")
	b.run("hang it up", 15*time.Second,
		chromedp.Click(chromedp.CSS(`tr[data-call] [data-action=hangup]`)),
		chromedp.Click(chromedp.CSS(`tr[data-call] [data-action=hangup][data-confirm="1"]`)))
	b.wait("the call to leave the page", `!document.querySelector('[data-testid=live-calls] tr[data-call]') && !document.querySelector('[data-testid=no-live-calls]').hidden`, 15*time.Second)
	b.shot("live-empty")
	if code, out := wait(); code != 0 {
		b.fail("SIPp did not get the gateway's BYE: exit %d\n%s", code, out)
	}

	// The conversation: ended from the page, with its SIP ladder (written once a
	// second: the page is opened once the BYE's 200 is in).
	deadline := time.Now().Add(15 * time.Second)
	for {
		items := asList(g.Must(200, "GET", "/api/conversations/"+convID+"/sip-trace", userKey, nil)["items"])
		if n := len(items); n > 0 && strings.Contains(fmt.Sprint(items[n-1]["cseq"]), "BYE") && strings.HasPrefix(fmt.Sprint(items[n-1]["first_line"]), "SIP/2.0 200") {
			break
		}
		if time.Now().After(deadline) {
			b.fail("the ladder never got the BYE's 200: %v", items)
		}
		time.Sleep(200 * time.Millisecond) // the ladder is written once a second
	}
	b.goTo("#/conversations/" + convID)
	b.wait("the SIP ladder with the BYE", `[...document.querySelectorAll('[data-testid=sip-ladder] tr[data-sip]')].some((r) => r.textContent.includes('BYE'))`, 20*time.Second)
	if got := eval[string](b, `document.querySelector('[data-testid=sip-ladder] tr[data-sip]').textContent`); !strings.Contains(got, "INVITE") {
		b.fail("the ladder starts with %q", got)
	}
	b.shot("sip-ladder")
	c := g.Must(200, "GET", "/api/conversations/"+convID, userKey, nil)
	if c["end_reason"] != "api_hangup" {
		b.fail("conversation: %v", c)
	}

	// A viewer's key: the pages offer no change it may not make (the API would
	// answer 403): no new agent, publish, pause, archive or test call, the agent's
	// form read only, no hang-up on the live page; the header says so.
	viewer := g.Must(201, "POST", fmt.Sprintf("/api/agency/companies/%d/users", coID), g.AgencyKey,
		map[string]any{"email": "viewer@console.example", "name": "Console Viewer", "role": "viewer"})["api_key"].(string)
	b.signOut()
	b.signIn(viewer, "agents")
	b.wait("the agent list", `!!document.querySelector('[data-testid=agents] tr[data-agent]')`, 10*time.Second)
	if n := eval[int](b, `document.querySelectorAll('[data-testid=new-agent], [data-action=talk], [data-action=pause], [data-action=publish], [data-action=archive]').length`); n != 0 {
		b.fail("a viewer is offered %d changes on the agent list", n)
	}
	if who := eval[string](b, `document.querySelector('[data-testid=who]').textContent`); !strings.Contains(who, "viewer") {
		b.fail("the header does not say the key reads only: %q", who)
	}
	b.goTo(fmt.Sprintf("#/agents/%v", agent["id"]))
	b.wait("the agent page, read only", `!!document.querySelector('[data-testid=agent-form]') && !!document.querySelector('[data-testid=agent-number]')`, 10*time.Second)
	if n := eval[int](b, `document.querySelectorAll('[data-testid=save-agent], [data-action=add-destination], [data-action=talk], [data-action=pause], [data-testid=agent-form] input:not([disabled]), [data-testid=agent-form] textarea:not([disabled])').length`); n != 0 {
		b.fail("a viewer is offered %d changes on the agent page", n)
	}
	b.shot("viewer-agent")
	b.goTo("#/live")
	b.wait("the live stream", `document.querySelector('[data-testid=live-state]')?.classList.contains('on')`, 10*time.Second)
	wait = cxcotest.StartSIPp(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), "uac_wait_bye.xml", number)
	b.wait("the call in the viewer's page", `!!document.querySelector('[data-testid=live-calls] tr[data-call][data-state=talking]')`, 20*time.Second)
	if n := eval[int](b, `document.querySelectorAll('[data-testid=live-calls] [data-action=hangup]').length`); n != 0 {
		b.fail("a viewer is offered %d hang-up buttons", n)
	}
	b.shot("viewer-live")
	g.Must(204, "DELETE", "/api/calls/live/"+eval[string](b, `document.querySelector('[data-testid=live-calls] tr[data-call]').dataset.call`), userKey, nil)
	if code, out := wait(); code != 0 {
		b.fail("SIPp did not get the gateway's BYE: exit %d\n%s", code, out)
	}
	t.Logf("console browser test took %s", time.Since(start).Round(time.Millisecond))
}
