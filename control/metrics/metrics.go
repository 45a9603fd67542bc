// Package metrics is a small Prometheus-compatible metrics registry: counters,
// gauges and histograms with labels, exposed in the text format (version 0.0.4).
// It is what /metrics serves; the rest of the gateway reports into it through the
// observer interfaces its packages declare.
package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds metric families in registration order.
type Registry struct {
	mu       sync.Mutex
	families []family
	collect  []func(w io.Writer)
}

type family interface {
	write(w io.Writer)
}

// NewRegistry makes an empty registry.
func NewRegistry() *Registry { return &Registry{} }

func (r *Registry) add(f family) {
	r.mu.Lock()
	r.families = append(r.families, f)
	r.mu.Unlock()
}

// OnScrape adds a function that writes metrics computed at scrape time.
func (r *Registry) OnScrape(f func(w io.Writer)) {
	r.mu.Lock()
	r.collect = append(r.collect, f)
	r.mu.Unlock()
}

// WriteText writes every metric in the Prometheus text format.
func (r *Registry) WriteText(w io.Writer) {
	r.mu.Lock()
	fams := append([]family(nil), r.families...)
	col := append([]func(io.Writer){}, r.collect...)
	r.mu.Unlock()
	for _, f := range fams {
		f.write(w)
	}
	for _, f := range col {
		f(w)
	}
}

// Handler serves the registry.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		r.WriteText(w)
	})
}

func header(w io.Writer, name, help, typ string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func labelString(names, values []string) string {
	if len(names) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(values[i]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// vec keeps one child per label-value combination.
type vec[T any] struct {
	name, help string
	labels     []string
	mu         sync.RWMutex
	children   map[string]*T
	keys       map[string][]string
	make       func() *T
}

func (v *vec[T]) with(values ...string) *T {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %s wants %d label values, got %d", v.name, len(v.labels), len(values)))
	}
	k := strings.Join(values, "\xff")
	v.mu.RLock()
	c := v.children[k]
	v.mu.RUnlock()
	if c != nil {
		return c
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c = v.children[k]; c == nil {
		c = v.make()
		v.children[k] = c
		v.keys[k] = append([]string(nil), values...)
	}
	return c
}

func (v *vec[T]) each(f func(labels string, c *T)) {
	v.mu.RLock()
	keys := make([]string, 0, len(v.children))
	for k := range v.children {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type kc struct {
		l string
		c *T
	}
	out := make([]kc, len(keys))
	for i, k := range keys {
		out[i] = kc{labelString(v.labels, v.keys[k]), v.children[k]}
	}
	v.mu.RUnlock()
	for _, x := range out {
		f(x.l, x.c)
	}
}

// newVec makes a vector; one without labels is a single series, made now, so it
// is exported (as 0) before anything happens: alerts and rate() need the zero.
func newVec[T any](name, help string, labels []string, mk func() *T) *vec[T] {
	v := &vec[T]{name: name, help: help, labels: labels, children: map[string]*T{}, keys: map[string][]string{}, make: mk}
	if len(labels) == 0 {
		v.with()
	}
	return v
}

// Counter only goes up.
type Counter struct{ bits atomic.Uint64 }

// Add adds v (≥ 0).
func (c *Counter) Add(v float64) { addFloat(&c.bits, v) }

// addFloat adds v to the float64 whose bits b holds.
func addFloat(b *atomic.Uint64, v float64) {
	for {
		old := b.Load()
		if b.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Inc adds one.
func (c *Counter) Inc() { c.Add(1) }

// Value reads it.
func (c *Counter) Value() float64 { return math.Float64frombits(c.bits.Load()) }

// CounterVec is a counter per label values.
type CounterVec struct{ v *vec[Counter] }

// NewCounterVec registers a counter family.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *CounterVec {
	cv := &CounterVec{newVec(name, help, labels, func() *Counter { return &Counter{} })}
	r.add(cv)
	return cv
}

// With returns the counter of the label values.
func (c *CounterVec) With(values ...string) *Counter { return c.v.with(values...) }

func (c *CounterVec) write(w io.Writer) {
	header(w, c.v.name, c.v.help, "counter")
	c.v.each(func(l string, x *Counter) { fmt.Fprintf(w, "%s%s %s\n", c.v.name, l, formatFloat(x.Value())) })
}

// Gauge goes up and down.
type Gauge struct{ bits atomic.Uint64 }

// Set sets it.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds v (may be negative).
func (g *Gauge) Add(v float64) { addFloat(&g.bits, v) }

// Value reads it.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// GaugeVec is a gauge per label values.
type GaugeVec struct{ v *vec[Gauge] }

// NewGaugeVec registers a gauge family.
func (r *Registry) NewGaugeVec(name, help string, labels ...string) *GaugeVec {
	gv := &GaugeVec{newVec(name, help, labels, func() *Gauge { return &Gauge{} })}
	r.add(gv)
	return gv
}

// With returns the gauge of the label values.
func (g *GaugeVec) With(values ...string) *Gauge { return g.v.with(values...) }

func (g *GaugeVec) write(w io.Writer) {
	header(w, g.v.name, g.v.help, "gauge")
	g.v.each(func(l string, x *Gauge) { fmt.Fprintf(w, "%s%s %s\n", g.v.name, l, formatFloat(x.Value())) })
}

// Histogram counts observations into cumulative buckets.
type Histogram struct {
	bounds []float64
	counts []atomic.Uint64
	sum    Counter
	count  atomic.Uint64
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	if i < len(h.counts) {
		h.counts[i].Add(1)
	}
	h.sum.Add(v)
	h.count.Add(1)
}

// Count is how many observations there were.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// HistogramVec is a histogram per label values.
type HistogramVec struct {
	v      *vec[Histogram]
	bounds []float64
}

// NewHistogramVec registers a histogram family with upper bounds (sorted; +Inf is implied).
func (r *Registry) NewHistogramVec(name, help string, bounds []float64, labels ...string) *HistogramVec {
	b := append([]float64(nil), bounds...)
	sort.Float64s(b)
	hv := &HistogramVec{bounds: b}
	hv.v = newVec(name, help, labels, func() *Histogram {
		return &Histogram{bounds: b, counts: make([]atomic.Uint64, len(b))}
	})
	r.add(hv)
	return hv
}

// With returns the histogram of the label values.
func (h *HistogramVec) With(values ...string) *Histogram { return h.v.with(values...) }

func (h *HistogramVec) write(w io.Writer) {
	header(w, h.v.name, h.v.help, "histogram")
	h.v.each(func(l string, x *Histogram) {
		inner := strings.TrimSuffix(strings.TrimPrefix(l, "{"), "}")
		sep := ""
		if inner != "" {
			sep = ","
		}
		var cum uint64
		for i, b := range x.bounds {
			cum += x.counts[i].Load()
			fmt.Fprintf(w, "%s_bucket{%s%sle=\"%s\"} %d\n", h.v.name, inner, sep, formatFloat(b), cum)
		}
		fmt.Fprintf(w, "%s_bucket{%s%sle=\"+Inf\"} %d\n", h.v.name, inner, sep, x.count.Load())
		fmt.Fprintf(w, "%s_sum%s %s\n", h.v.name, l, formatFloat(x.sum.Value()))
		fmt.Fprintf(w, "%s_count%s %d\n", h.v.name, l, x.count.Load())
	})
}

// Exp returns n bucket bounds start, start*factor, ...
func Exp(start, factor float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = start
		start *= factor
	}
	return out
}
