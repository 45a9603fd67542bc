package main

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/sdp"
)

// TestJSONLogsReadable: JSON logs give durations and named values as the text
// format does, not as bare numbers; errors and addresses keep their form.
func TestJSONLogsReadable(t *testing.T) {
	var b strings.Builder
	newLogger(&b, "json", "info").Info("x", "drain_timeout", 10*time.Minute, "jitter", 431966*time.Nanosecond,
		"format", media.FormatPCM16k, "direction", sdp.SendOnly, "err", errors.New("boom"),
		"remote", netip.MustParseAddrPort("127.0.0.1:4000"), "n", 3)
	out := b.String()
	for _, want := range []string{`"drain_timeout":"10m0s"`, `"jitter":"431.966µs"`, `"format":"pcm_16000"`,
		`"direction":"sendonly"`, `"err":"boom"`, `"remote":"127.0.0.1:4000"`, `"n":3`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s in %s", want, out)
		}
	}
}
