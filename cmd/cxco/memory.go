package main

import (
	"log/slog"
	"runtime/debug"
)

// applyMemory sets Go's GC target and memory limit for the serve process.
//
// A call's memory is mostly the heap (jitter buffer, queues, the provider
// session's buffers) and three goroutine stacks; with Go's default GOGC of 100
// the heap grows to twice what is live before a collection, and the resident
// memory follows that peak. The gateway allocates little per packet, so its GC
// runs seldom: at --gc-percent 25 (our default) its marking is about 1% of the
// gateway's CPU at 500 calls (0.2% at 50), and a 16 kHz PCM call holds 108 KiB
// instead of 124 (50 held 142 KiB per µ-law call where Go's 100 held 169;
// deploy/loadtest/PERFORMANCE.md). A GOGC in the environment wins over
// the default, not over the flag. --memory-limit is Go's GOMEMLIMIT: a soft limit
// near which the GC works harder instead of the process outgrowing its container.
func applyMemory(cfg *Config, getenv func(string) string, log *slog.Logger) {
	gcFrom := "--gc-percent"
	if _, ok := lookup(getenv, "GOGC"); ok && !cfg.GCPercentGiven {
		gcFrom = "GOGC"
	} else {
		debug.SetGCPercent(cfg.GCPercent)
	}
	limitFrom := "none"
	if cfg.MemoryLimitBytes > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimitBytes)
		limitFrom = "--memory-limit"
	} else if _, ok := lookup(getenv, "GOMEMLIMIT"); ok {
		limitFrom = "GOMEMLIMIT"
	}
	gc := debug.SetGCPercent(-1) // read it back: SetGCPercent returns the previous value
	debug.SetGCPercent(gc)
	limit := debug.SetMemoryLimit(-1) // a negative input only reads it
	attrs := []any{"gc_percent", gc, "gc_percent_from", gcFrom, "memory_limit_from", limitFrom}
	if limitFrom != "none" {
		attrs = append(attrs, "memory_limit_bytes", limit)
	}
	log.Info("memory settings", attrs...)
}
