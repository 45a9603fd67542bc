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

// TestBannerKeepsTheKeyOffTheCommandLine: the banner's advice on keeping the agency
// key is the environment or a file, not --agency-key, which serve warns about
// (other users of the machine read command lines).
func TestBannerKeepsTheKeyOffTheCommandLine(t *testing.T) {
	var b strings.Builder
	banner(&b, "127.0.0.1:8080", "cxco_agcy_k_0123456789abcdefghijklmnop", true)
	out := b.String()
	if !strings.Contains(out, "CXCO_AGENCY_KEY") || !strings.Contains(out, "--agency-key-file") || strings.Contains(out, "pass --agency-key ") {
		t.Errorf("the banner's advice on keeping the key:\n%s", out)
	}
}
