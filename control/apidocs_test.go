package control_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/cxco/gateway/control"
)

// TestAPIIndexAndDocs: GET /api says where everything is (only what is mounted);
// GET /api/docs is the reference page, whose every file is served from this
// origin (gzip-encoded to browsers, decompressed for clients that do not take
// gzip) under a strict CSP; unknown files under /api/docs are the API's JSON 404.
func TestAPIIndexAndDocs(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	api := control.New(control.Options{Version: "1.2.3", Extra: map[string]http.Handler{"GET /healthz": ok, "GET /readyz": ok}})
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	get := func(path, encoding string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Accept-Encoding", encoding) // set: the client then leaves the body as it came
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, b
	}

	res, b := get("/api", "identity")
	var idx map[string]any
	if err := json.Unmarshal(b, &idx); err != nil || res.StatusCode != 200 {
		t.Fatalf("/api: %d %s", res.StatusCode, b)
	}
	health, _ := idx["health"].(map[string]any)
	if idx["docs"] != "/api/docs" || idx["openapi"] != "/api/openapi.json" || idx["version"] != "1.2.3" ||
		health["liveness"] != "/healthz" || health["readiness"] != "/readyz" {
		t.Fatalf("/api: %s", b)
	}
	if _, has := idx["metrics"]; has {
		t.Fatalf("/api links /metrics, which is not mounted: %s", b)
	}
	if res, _ := get("/api/", "identity"); res.StatusCode != 200 {
		t.Fatalf("/api/: %d", res.StatusCode)
	}

	res, page := get("/api/docs", "gzip")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/api/docs: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("CSP %q", csp)
	}
	ref := regexp.MustCompile(`(?:src|href)="([^"]+)"`)
	var files []string
	for _, m := range ref.FindAllStringSubmatch(string(page), -1) {
		if strings.HasPrefix(m[1], "/api/docs/") {
			files = append(files, m[1])
		} else if strings.Contains(m[1], "//") {
			t.Fatalf("the page loads %s from elsewhere", m[1])
		}
	}
	if len(files) < 4 {
		t.Fatalf("the page loads %v", files)
	}
	for _, f := range files {
		gz, zipped := get(f, "gzip, deflate")
		plain, body := get(f, "identity")
		if gz.StatusCode != 200 || plain.StatusCode != 200 {
			t.Fatalf("%s: %d / %d", f, gz.StatusCode, plain.StatusCode)
		}
		if gz.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(zipped))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			zipped, _ = io.ReadAll(zr)
			if plain.Header.Get("Content-Encoding") != "" || gz.Header.Get("ETag") == plain.Header.Get("ETag") {
				t.Fatalf("%s: identity response %q, ETags %s %s", f, plain.Header.Get("Content-Encoding"), gz.Header.Get("ETag"), plain.Header.Get("ETag"))
			}
		}
		if !bytes.Equal(zipped, body) || len(body) == 0 {
			t.Fatalf("%s: the gzip and identity bodies differ (%d, %d bytes)", f, len(zipped), len(body))
		}
		if strings.HasSuffix(f, ".js") && gz.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
			t.Fatalf("%s: %s", f, gz.Header.Get("Content-Type"))
		}
		if etag := gz.Header.Get("ETag"); etag == "" {
			t.Fatalf("%s: no ETag", f)
		}
	}
	if res, b := get("/api/docs/swagger-ui/LICENSE", "identity"); res.StatusCode != 200 || !strings.Contains(string(b), "Apache License") {
		t.Fatalf("the renderer's licence: %d", res.StatusCode)
	}
	res, b = get("/api/docs/nope.js", "identity")
	if res.StatusCode != 404 || !strings.Contains(string(b), `"error_type":"not_found"`) {
		t.Fatalf("/api/docs/nope.js: %d %s", res.StatusCode, b)
	}

	// Both are in the OpenAPI document, the page as text/html.
	res, b = get("/api/openapi.json", "identity")
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Content map[string]any `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc.Paths["/api"]["get"]; !ok {
		t.Fatal("GET /api is not documented")
	}
	if _, ok := doc.Paths["/api/docs"]["get"].Responses["200"].Content["text/html"]; !ok {
		t.Fatalf("GET /api/docs is not documented as text/html: %+v", doc.Paths["/api/docs"])
	}
}
