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
// /api/docs renders every operation of /api/openapi.json. Every page is saved as
// a screenshot (the test prints where).
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
	t.Logf("console browser test took %s", time.Since(start).Round(time.Millisecond))
}
