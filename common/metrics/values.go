package metrics

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Counter is a value that only goes up. Its methods are safe for
// concurrent use.
type Counter struct {
	n    atomic.Uint64 // whole increments (Inc, integral Add)
	bits atomic.Uint64 // float64 bits of the fractional additions
}

// maxExact is the largest float64 below which every integer is exact.
const maxExact = 1 << 53

// Inc adds 1.
func (c *Counter) Inc() { c.n.Add(1) }

// Add adds v, which must not be negative (Add panics then, as the
// Prometheus client does).
func (c *Counter) Add(v float64) {
	if v < 0 {
		panic("metrics: counter cannot decrease")
	}
	if v < maxExact && v == math.Trunc(v) {
		c.n.Add(uint64(v))
		return
	}
	addFloat(&c.bits, v)
}

// Value returns the current count.
func (c *Counter) Value() float64 {
	return float64(c.n.Load()) + math.Float64frombits(c.bits.Load())
}

// Gauge is a value that goes up and down. Its methods are safe for
// concurrent use.
type Gauge struct {
	bits atomic.Uint64 // float64 bits
}

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Inc adds 1.
func (g *Gauge) Inc() { addFloat(&g.bits, 1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { addFloat(&g.bits, -1) }

// Add adds v (which may be negative).
func (g *Gauge) Add(v float64) { addFloat(&g.bits, v) }

// Sub subtracts v.
func (g *Gauge) Sub(v float64) { addFloat(&g.bits, -v) }

// Value returns the current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// addFloat adds v to the float64 whose bits p holds.
func addFloat(p *atomic.Uint64, v float64) {
	for {
		old := p.Load()
		if p.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Histogram counts observations in buckets and keeps their sum. Its
// methods are safe for concurrent use.
type Histogram struct {
	upper  []float64       // bucket upper bounds, strictly increasing, without +Inf (shared)
	counts []atomic.Uint64 // per bucket, not cumulative; the last one is +Inf
	sum    atomic.Uint64   // float64 bits
}

func newHistogram(upper []float64) *Histogram {
	return &Histogram{upper: upper, counts: make([]atomic.Uint64, len(upper)+1)}
}

// Observe records v: in the first bucket whose upper bound is >= v, and in
// the sum.
func (h *Histogram) Observe(v float64) {
	lo, hi := 0, len(h.upper)
	for lo < hi { // first i with v <= upper[i]; len(upper) (+Inf) if none (or NaN)
		m := int(uint(lo+hi) >> 1)
		if v <= h.upper[m] {
			hi = m
		} else {
			lo = m + 1
		}
	}
	h.counts[lo].Add(1)
	addFloat(&h.sum, v)
}

// appendSamples appends the cumulative _bucket lines (le last among the
// labels, as Prometheus writes it), then _sum and _count. The count is the
// +Inf bucket's, so the two always agree within one scrape.
func (h *Histogram) appendSamples(b []byte, name, labels string) []byte {
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		b = append(b, name...)
		b = append(b, "_bucket{"...)
		if labels != "" {
			b = append(b, labels...)
			b = append(b, ',')
		}
		b = append(b, `le="`...)
		if i < len(h.upper) {
			b = appendFloat(b, h.upper[i])
		} else {
			b = append(b, "+Inf"...)
		}
		b = append(b, `"} `...)
		b = appendFloat(b, float64(cum))
		b = append(b, '\n')
	}
	b = appendSample(b, name, "_sum", labels, math.Float64frombits(h.sum.Load()))
	return appendSample(b, name, "_count", labels, float64(cum))
}

// checkBuckets validates a histogram's buckets (DefBuckets when nil) and
// returns a copy without a trailing +Inf.
func checkBuckets(name string, buckets []float64) []float64 {
	if buckets == nil {
		buckets = DefBuckets
	}
	upper := slices.Clone(buckets)
	if n := len(upper); n > 0 && math.IsInf(upper[n-1], 1) {
		upper = upper[:n-1]
	}
	for i, u := range upper {
		if math.IsNaN(u) || (i > 0 && u <= upper[i-1]) {
			panic(fmt.Sprintf("metrics: %s: buckets must be strictly increasing: %v", name, buckets))
		}
	}
	return upper
}

// CounterVec is a set of counters with the same name and label names,
// one per combination of label values.
type CounterVec struct{ v *vec[Counter] }

// WithLabelValues returns the counter for the label values, in the order
// of the vector's label names (creating it at zero on first use). It
// panics when the number of values is wrong.
func (v *CounterVec) WithLabelValues(values ...string) *Counter { return v.v.get(values) }

// GaugeVec is a set of gauges with the same name and label names, one per
// combination of label values.
type GaugeVec struct{ v *vec[Gauge] }

// WithLabelValues returns the gauge for the label values, in the order of
// the vector's label names (creating it at zero on first use). It panics
// when the number of values is wrong.
func (v *GaugeVec) WithLabelValues(values ...string) *Gauge { return v.v.get(values) }

// HistogramVec is a set of histograms with the same name, buckets and
// label names, one per combination of label values.
type HistogramVec struct{ v *vec[Histogram] }

// WithLabelValues returns the histogram for the label values, in the
// order of the vector's label names (creating it empty on first use). It
// panics when the number of values is wrong.
func (v *HistogramVec) WithLabelValues(values ...string) *Histogram { return v.v.get(values) }

// vec maps label values to the series of one family.
type vec[T any] struct {
	name   string
	labels []string // as declared
	order  []int    // indices into labels, sorted by label name
	newT   func() *T

	mu     sync.RWMutex
	byKey  map[string]*series[T] // by key(values)
	sorted []*series[T]          // by values in label-name order, as exposed
}

type series[T any] struct {
	values []string // in order (sorted label names)
	labels string   // rendered: a="x",b="y" (sorted by name, escaped)
	m      *T
}

func newVec[T any](name string, labels []string, histogram bool, newT func() *T) *vec[T] {
	v := &vec[T]{name: name, labels: slices.Clone(labels), newT: newT, byKey: map[string]*series[T]{}}
	for i, l := range labels {
		if !validLabelName(l) || (histogram && l == "le") {
			panic(fmt.Sprintf("metrics: %s: invalid label name %q", name, l))
		}
		if slices.Index(labels, l) != i {
			panic(fmt.Sprintf("metrics: %s: label %q given twice", name, l))
		}
		v.order = append(v.order, i)
	}
	slices.SortFunc(v.order, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	return v
}

// get returns the series for the values, creating it on first use. The
// lookup builds its key in a stack buffer, so it does not allocate.
func (v *vec[T]) get(values []string) *T {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %s: %d label values for %d labels %v", v.name, len(values), len(v.labels), v.labels))
	}
	var buf [128]byte
	key := appendKey(buf[:0], values)
	v.mu.RLock()
	s := v.byKey[string(key)]
	v.mu.RUnlock()
	if s != nil {
		return s.m
	}
	return v.create(string(key), values)
}

// appendKey encodes the values unambiguously: each as its length and bytes.
func appendKey(b []byte, values []string) []byte {
	for _, s := range values {
		n := uint64(len(s))
		for n >= 0x80 {
			b = append(b, byte(n)|0x80)
			n >>= 7
		}
		b = append(b, byte(n))
		b = append(b, s...)
	}
	return b
}

func (v *vec[T]) create(key string, values []string) *T {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s := v.byKey[key]; s != nil {
		return s.m
	}
	s := &series[T]{m: v.newT()}
	var b []byte
	for j, i := range v.order {
		val := strings.Clone(values[i])
		s.values = append(s.values, val)
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, v.labels[i]...)
		b = append(b, `="`...)
		b = appendEscaped(b, val, true)
		b = append(b, '"')
	}
	s.labels = string(b)
	v.byKey[key] = s
	i, _ := slices.BinarySearchFunc(v.sorted, s.values, func(t *series[T], values []string) int {
		return slices.Compare(t.values, values)
	})
	v.sorted = slices.Insert(v.sorted, i, s)
	return s.m
}

// each appends what f appends for every series, in exposition order.
func (v *vec[T]) each(b []byte, f func(b []byte, labels string, m *T) []byte) []byte {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, s := range v.sorted {
		b = f(b, s.labels, s.m)
	}
	return b
}
