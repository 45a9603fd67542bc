package main

import (
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

// TestApplyMemory: --gc-percent's default applies unless GOGC is in the
// environment, the flag (or CXCO_GC_PERCENT) beats GOGC, and --memory-limit
// sets Go's memory limit.
func TestApplyMemory(t *testing.T) {
	gc0, limit0 := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(gc0); debug.SetMemoryLimit(limit0) })
	log := slog.New(slog.DiscardHandler)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	read := func() (int, int64) {
		gc := debug.SetGCPercent(-1)
		debug.SetGCPercent(gc)
		return gc, debug.SetMemoryLimit(-1)
	}

	cfg, err := parseServe(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	applyMemory(cfg, env(nil), log)
	if gc, limit := read(); gc != 25 || limit != math.MaxInt64 {
		t.Fatalf("defaults: gc %d, limit %d; want 25 and none", gc, limit)
	}

	debug.SetGCPercent(80) // as GOGC=80 in the environment would have
	applyMemory(cfg, env(map[string]string{"GOGC": "80"}), log)
	if gc, _ := read(); gc != 80 {
		t.Fatalf("GOGC=80 and no --gc-percent: gc %d, want GOGC's 80", gc)
	}

	cfg, err = parseServe([]string{"--gc-percent", "30", "--memory-limit", "900MiB"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.GCPercentGiven = true // as serveCmd records it
	applyMemory(cfg, env(map[string]string{"GOGC": "80"}), log)
	if gc, limit := read(); gc != 30 || limit != 900<<20 {
		t.Fatalf("--gc-percent 30 --memory-limit 900MiB over GOGC=80: gc %d, limit %d", gc, limit)
	}
}
