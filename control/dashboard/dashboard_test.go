package dashboard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/cxco/gateway/control"
	"github.com/cxco/gateway/control/dashboard"
)

// TestDashboardServed: mounted on the control plane, the page is at exactly "/",
// every module it loads (and every module those import) is served with its type
// and a strict CSP, and the API's unknown routes keep their JSON errors.
func TestDashboardServed(t *testing.T) {
	api := control.New(control.Options{Extra: dashboard.Routes()})
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	get := func(path string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	body := func(res *http.Response) string {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return string(b)
	}

	res := get("/")
	page := body(res)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(page, `src="/assets/app.js"`) {
		t.Fatalf("/: %d %s\n%s", res.StatusCode, res.Header.Get("Content-Type"), page)
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("CSP %q", csp)
	}
	if etag := res.Header.Get("ETag"); etag == "" || get("/", "If-None-Match", etag).StatusCode != http.StatusNotModified {
		t.Fatal("no revalidation with the ETag")
	}

	// Walk the module graph from index.html: every file is there, nothing from elsewhere.
	ref := regexp.MustCompile(`(?:src|href)="([^"]+)"|from '(\.{1,2}/[^']+)'|import\('(\.{1,2}/[^']+)'\)`)
	seen := map[string]bool{}
	queue := []string{"/"}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		res := get(p)
		text := body(res)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", p, res.StatusCode)
		}
		ct := res.Header.Get("Content-Type")
		switch {
		case strings.HasSuffix(p, ".js") && ct != "text/javascript; charset=utf-8",
			strings.HasSuffix(p, ".css") && ct != "text/css; charset=utf-8",
			strings.HasSuffix(p, ".svg") && ct != "image/svg+xml":
			t.Fatalf("%s: Content-Type %q", p, ct)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: no nosniff", p)
		}
		for _, m := range ref.FindAllStringSubmatch(text, -1) {
			target := m[1] + m[2] + m[3]
			if strings.HasPrefix(target, "#") || strings.HasPrefix(target, "data:") || strings.HasPrefix(target, "http://www.w3.org/") {
				continue
			}
			if strings.Contains(target, "//") {
				t.Fatalf("%s loads %s from elsewhere: the dashboard must work offline", p, target)
			}
			if !strings.HasPrefix(target, "/") {
				dir := p[:strings.LastIndex(p, "/")+1]
				target = resolve(dir + target)
			}
			queue = append(queue, target)
		}
	}
	for _, want := range []string{"/assets/app.js", "/assets/call.js", "/assets/pages/agents.js", "/assets/pages/usage.js", "/assets/style.css"} {
		if !seen[want] {
			t.Errorf("%s is not reached from the page", want)
		}
	}

	for _, tc := range []struct {
		path   string
		status int
		json   bool
	}{
		{"/api/nope", 404, true},
		{"/assets/nope.js", 404, false},
		{"/assets/", 404, false},
		{"/index.html", 404, true}, // only "/" serves the page
	} {
		res := get(tc.path)
		b := body(res)
		if res.StatusCode != tc.status || tc.json != strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s %s", tc.path, res.StatusCode, res.Header.Get("Content-Type"), b)
		}
	}
}

// resolve removes "./" and "dir/../" from a path.
func resolve(p string) string {
	var out []string
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case ".":
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	return strings.Join(out, "/")
}
