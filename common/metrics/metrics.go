// Package metrics is a small, dependency-free replacement for the parts of
// the Prometheus Go client the services use: counters, gauges and
// histograms, plain or with a fixed set of labels, registered in a default
// registry and served in the Prometheus text exposition format (version
// 0.0.4) on /metrics.
//
// It exists because of memory. Each service must stay under 25 MB resident,
// and linking github.com/prometheus/client_golang (with its protobuf,
// procfs and expfmt dependencies) was measured to cost about 6.7 MB of
// binary and 4.3 MB of RSS per process: a minimal net/http program used
// 5.6 MB RSS, the same program with promhttp and one counter 9.9 MB. The
// services need a handful of metrics, not the client's generality, so this
// package writes the text format itself using the standard library only.
//
// Usage mirrors promauto, so call sites read as before:
//
//	var handled = metrics.NewCounterVec(metrics.CounterOpts{
//		Name: "things_handled_total",
//		Help: "Things handled, by result.",
//	}, []string{"result"})
//
//	handled.WithLabelValues("ok").Inc()
//
// and Handler serves the default registry. Updating a metric is a few
// atomic operations (plus, for a vector, a map lookup under a read lock);
// it does not allocate once the labelled series exists. Constructors panic
// on invalid or duplicate names, as promauto does: metrics are defined in
// package variables, so such a mistake shows at start-up.
//
// The default registry also serves a few Go runtime and process metrics,
// read at scrape time: go_goroutines, go_gc_cycles_total,
// go_memstats_heap_alloc_bytes, go_memstats_heap_inuse_bytes,
// go_memstats_sys_bytes, go_info and, on Linux,
// process_resident_memory_bytes (VmRSS from /proc/self/status).
package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ContentType is the media type of the text exposition format Handler
// writes.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// CounterOpts name and describe a counter or counter vector.
type CounterOpts struct {
	Name string // metric name, [a-zA-Z_:][a-zA-Z0-9_:]*; by convention ending in _total
	Help string // one-line description (HELP)
}

// GaugeOpts name and describe a gauge or gauge vector.
type GaugeOpts struct {
	Name string // metric name, [a-zA-Z_:][a-zA-Z0-9_:]*
	Help string // one-line description (HELP)
}

// HistogramOpts name and describe a histogram or histogram vector.
type HistogramOpts struct {
	Name string // metric name, [a-zA-Z_:][a-zA-Z0-9_:]*
	Help string // one-line description (HELP)
	// Buckets are the upper bounds (inclusive) of the buckets, strictly
	// increasing; a +Inf bucket is always added. Nil means DefBuckets.
	Buckets []float64
}

// DefBuckets are the default histogram buckets (the Prometheus client's),
// suited to request latencies in seconds.
var DefBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// family is one registered metric name with its HELP and TYPE, able to
// append its sample lines.
type family struct {
	name, help, typ string
	// samples appends the family's sample lines; it appends nothing when
	// the family has no series (a vector no label values were used with yet).
	samples func(b []byte, name string) []byte
}

// Registry holds metric families and writes them in the text exposition
// format. The zero value is not usable; use NewRegistry or Default.
type Registry struct {
	mu       sync.RWMutex
	families []*family    // sorted by name
	lastLen  atomic.Int64 // size of the last exposition, to size the next buffer
}

// NewRegistry returns an empty registry (without the runtime and process
// metrics Default carries). Tests use it for exact expositions.
func NewRegistry() *Registry { return &Registry{} }

// Default is the registry the package-level constructors register in and
// Handler serves. It includes the Go runtime and process metrics.
var Default = newDefault()

func newDefault() *Registry {
	r := NewRegistry()
	registerRuntime(r)
	return r
}

// register adds f, keeping the families sorted by name. It panics on an
// invalid or already registered name.
func (r *Registry) register(f *family) {
	if !validMetricName(f.name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", f.name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	i, found := slices.BinarySearchFunc(r.families, f.name, func(g *family, name string) int { return strings.Compare(g.name, name) })
	if found {
		panic(fmt.Sprintf("metrics: %s registered twice", f.name))
	}
	r.families = slices.Insert(r.families, i, f)
}

// Append appends the exposition of every family (sorted by name) to b.
func (r *Registry) Append(b []byte) []byte {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, f := range r.families {
		start := len(b)
		b = append(b, "# HELP "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = appendEscaped(b, f.help, false)
		b = append(b, "\n# TYPE "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.typ...)
		b = append(b, '\n')
		header := len(b)
		if b = f.samples(b, f.name); len(b) == header {
			b = b[:start] // no series: leave the family out, as Prometheus does
		}
	}
	return b
}

// WriteTo writes the exposition of every family to w.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	size := r.lastLen.Load()
	b := r.Append(make([]byte, 0, size+size/8+512))
	r.lastLen.Store(int64(len(b)))
	n, err := w.Write(b)
	return int64(n), err
}

// Handler serves the registry's exposition (for GET /metrics).
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", ContentType)
		_, _ = r.WriteTo(w) // an error means the scraper went away
	})
}

// Handler serves the Default registry (for GET /metrics).
func Handler() http.Handler { return Default.Handler() }

// NewCounter registers a counter in the Default registry.
func NewCounter(o CounterOpts) *Counter { return Default.NewCounter(o) }

// NewCounterVec registers a counter vector with the given label names in
// the Default registry.
func NewCounterVec(o CounterOpts, labels []string) *CounterVec {
	return Default.NewCounterVec(o, labels)
}

// NewGauge registers a gauge in the Default registry.
func NewGauge(o GaugeOpts) *Gauge { return Default.NewGauge(o) }

// NewGaugeVec registers a gauge vector with the given label names in the
// Default registry.
func NewGaugeVec(o GaugeOpts, labels []string) *GaugeVec { return Default.NewGaugeVec(o, labels) }

// NewGaugeFunc registers in the Default registry a gauge whose value f
// returns at scrape time. f must be safe for concurrent use and must not
// register metrics (it runs while the registry is read).
func NewGaugeFunc(o GaugeOpts, f func() float64) { Default.NewGaugeFunc(o, f) }

// NewHistogram registers a histogram in the Default registry.
func NewHistogram(o HistogramOpts) *Histogram { return Default.NewHistogram(o) }

// NewHistogramVec registers a histogram vector with the given label names
// in the Default registry.
func NewHistogramVec(o HistogramOpts, labels []string) *HistogramVec {
	return Default.NewHistogramVec(o, labels)
}

// NewCounter registers a counter in r.
func (r *Registry) NewCounter(o CounterOpts) *Counter {
	c := new(Counter)
	r.register(&family{name: o.Name, help: o.Help, typ: "counter", samples: func(b []byte, name string) []byte {
		return appendSample(b, name, "", "", c.Value())
	}})
	return c
}

// NewCounterVec registers a counter vector with the given label names in r.
func (r *Registry) NewCounterVec(o CounterOpts, labels []string) *CounterVec {
	v := &CounterVec{newVec[Counter](o.Name, labels, false, func() *Counter { return new(Counter) })}
	r.register(&family{name: o.Name, help: o.Help, typ: "counter", samples: func(b []byte, name string) []byte {
		return v.v.each(b, func(b []byte, labels string, c *Counter) []byte {
			return appendSample(b, name, "", labels, c.Value())
		})
	}})
	return v
}

// NewGauge registers a gauge in r.
func (r *Registry) NewGauge(o GaugeOpts) *Gauge {
	g := new(Gauge)
	r.register(&family{name: o.Name, help: o.Help, typ: "gauge", samples: func(b []byte, name string) []byte {
		return appendSample(b, name, "", "", g.Value())
	}})
	return g
}

// NewGaugeVec registers a gauge vector with the given label names in r.
func (r *Registry) NewGaugeVec(o GaugeOpts, labels []string) *GaugeVec {
	v := &GaugeVec{newVec[Gauge](o.Name, labels, false, func() *Gauge { return new(Gauge) })}
	r.register(&family{name: o.Name, help: o.Help, typ: "gauge", samples: func(b []byte, name string) []byte {
		return v.v.each(b, func(b []byte, labels string, g *Gauge) []byte {
			return appendSample(b, name, "", labels, g.Value())
		})
	}})
	return v
}

// NewGaugeFunc registers in r a gauge whose value f returns at scrape
// time. f must be safe for concurrent use and must not register metrics
// (it runs while the registry is read).
func (r *Registry) NewGaugeFunc(o GaugeOpts, f func() float64) {
	r.newFunc(o.Name, o.Help, "gauge", "", func() (float64, bool) { return f(), true })
}

// newFunc registers a family of one series (with the rendered labels)
// whose value f reads at scrape time; when f reports false the family is
// left out of that scrape.
func (r *Registry) newFunc(name, help, typ, labels string, f func() (float64, bool)) {
	r.register(&family{name: name, help: help, typ: typ, samples: func(b []byte, name string) []byte {
		v, ok := f()
		if !ok {
			return b
		}
		return appendSample(b, name, "", labels, v)
	}})
}

// NewHistogram registers a histogram in r.
func (r *Registry) NewHistogram(o HistogramOpts) *Histogram {
	upper := checkBuckets(o.Name, o.Buckets)
	h := newHistogram(upper)
	r.register(&family{name: o.Name, help: o.Help, typ: "histogram", samples: func(b []byte, name string) []byte {
		return h.appendSamples(b, name, "")
	}})
	return h
}

// NewHistogramVec registers a histogram vector with the given label names
// in r.
func (r *Registry) NewHistogramVec(o HistogramOpts, labels []string) *HistogramVec {
	upper := checkBuckets(o.Name, o.Buckets)
	v := &HistogramVec{newVec[Histogram](o.Name, labels, true, func() *Histogram { return newHistogram(upper) })}
	r.register(&family{name: o.Name, help: o.Help, typ: "histogram", samples: func(b []byte, name string) []byte {
		return v.v.each(b, func(b []byte, labels string, h *Histogram) []byte {
			return h.appendSamples(b, name, labels)
		})
	}})
	return v
}

// appendSample appends one sample line: name+suffix{labels} value.
func appendSample(b []byte, name, suffix, labels string, v float64) []byte {
	b = append(b, name...)
	b = append(b, suffix...)
	if labels != "" {
		b = append(b, '{')
		b = append(b, labels...)
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	return append(b, '\n')
}

// appendFloat formats v as Prometheus does: shortest 'g' representation,
// +Inf, -Inf and NaN.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendEscaped appends s escaped for the exposition format: backslash and
// newline always (HELP text), double quote too in a label value.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// validMetricName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(s string) bool {
	return validName(s, true)
}

// validLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]* and is
// not reserved (a leading "__").
func validLabelName(s string) bool {
	return validName(s, false) && !strings.HasPrefix(s, "__")
}

func validName(s string, colon bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c == ':' && colon:
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
