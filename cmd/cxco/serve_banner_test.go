package main

import (
	"strings"
	"testing"
)

// TestBanner: the URLs to open are loopback ones, and a wildcard --http says that
// it listens on every address rather than letting 127.0.0.1 suggest otherwise.
func TestBanner(t *testing.T) {
	for _, tc := range []struct {
		addr, url  string
		everywhere bool
	}{
		{":8080", "http://127.0.0.1:8080/api", true},
		{"0.0.0.0:8080", "http://127.0.0.1:8080/api", true},
		{"[::]:9000", "http://127.0.0.1:9000/api", true},
		{"127.0.0.1:8080", "http://127.0.0.1:8080/api", false},
		{"[::1]:8080", "http://[::1]:8080/api", false},
	} {
		var b strings.Builder
		banner(&b, tc.addr, "", true)
		out := b.String()
		if !strings.Contains(out, tc.url) || !strings.Contains(out, tc.url+"/docs") {
			t.Errorf("%s: no %s or %s/docs in\n%s", tc.addr, tc.url, tc.url, out)
		}
		if got := strings.Contains(out, "listening on every address"); got != tc.everywhere {
			t.Errorf("%s: says every address = %v, want %v\n%s", tc.addr, got, tc.everywhere, out)
		}
	}
}
