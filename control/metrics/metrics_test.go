package metrics

import (
	"strings"
	"sync"
	"testing"
)

func TestExposition(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounterVec("cxco_calls_total", "Calls by end reason.", "reason")
	g := r.NewGaugeVec("cxco_calls_active", "Calls up now.")
	h := r.NewHistogramVec("cxco_setup_seconds", "Setup time.", []float64{0.1, 0.5}, "kind")
	r.NewCounterVec("cxco_redis_errors_total", "Nothing yet.")
	r.NewHistogramVec("cxco_rtt_seconds", "Nothing yet.", []float64{0.1})
	c.With("caller_hangup").Inc()
	c.With("caller_hangup").Add(2)
	c.With(`we"ird`).Inc()
	g.With().Set(5)
	g.With().Add(-1)
	for _, v := range []float64{0.05, 0.2, 0.7} {
		h.With("agent").Observe(v)
	}
	var b strings.Builder
	r.WriteText(&b)
	out := b.String()
	for _, want := range []string{
		"# TYPE cxco_calls_total counter",
		`cxco_calls_total{reason="caller_hangup"} 3`,
		`cxco_calls_total{reason="we\"ird"} 1`,
		"# TYPE cxco_calls_active gauge",
		"cxco_calls_active 4",
		`cxco_setup_seconds_bucket{kind="agent",le="0.1"} 1`,
		`cxco_setup_seconds_bucket{kind="agent",le="0.5"} 2`,
		`cxco_setup_seconds_bucket{kind="agent",le="+Inf"} 3`,
		`cxco_setup_seconds_sum{kind="agent"} 0.95`,
		`cxco_setup_seconds_count{kind="agent"} 3`,
		"\ncxco_redis_errors_total 0\n", // a series without labels is there from the start
		`cxco_rtt_seconds_bucket{le="+Inf"} 0`,
		"\ncxco_rtt_seconds_count 0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestConcurrent(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounterVec("x_total", "x", "k")
	h := r.NewHistogramVec("y", "y", Exp(0.001, 2, 10))
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				c.With("a").Inc()
				h.With().Observe(0.003)
				if j%100 == 0 {
					var b strings.Builder
					r.WriteText(&b)
				}
			}
		}()
	}
	wg.Wait()
	if v := c.With("a").Value(); v != 8000 {
		t.Fatalf("counter %v", v)
	}
	if n := h.With().Count(); n != 8000 {
		t.Fatalf("histogram count %d", n)
	}
}
