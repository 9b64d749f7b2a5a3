package metrics

import (
	"bufio"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func expose(r *Registry) string { return string(r.Append(nil)) }

func TestExposition(t *testing.T) {
	r := NewRegistry()
	plain := r.NewCounter(CounterOpts{Name: "zz_plain_total", Help: "A plain counter."})
	reqs := r.NewCounterVec(CounterOpts{Name: "requests_total", Help: "Requests with a \\ backslash and\na newline."}, []string{"path", "code"})
	temp := r.NewGauge(GaugeOpts{Name: "temperature", Help: "A gauge."})
	backlog := r.NewGaugeVec(GaugeOpts{Name: "backlog", Help: "Backlog."}, []string{"queue"})
	r.NewGaugeVec(GaugeOpts{Name: "unused", Help: "No series yet: left out."}, []string{"x"})
	lat := r.NewHistogram(HistogramOpts{Name: "latency_seconds", Help: "Latency.", Buckets: []float64{0.1, 1, 10}})
	sizes := r.NewHistogramVec(HistogramOpts{Name: "size_bytes", Help: "Sizes.", Buckets: []float64{100, 1e6, math.Inf(1)}}, []string{"kind"})
	r.NewGaugeFunc(GaugeOpts{Name: "answer", Help: "From a func."}, func() float64 { return 42 })

	plain.Add(2.5)
	plain.Inc()
	reqs.WithLabelValues("/b", "200").Inc()
	reqs.WithLabelValues("/a", "500").Add(3)
	reqs.WithLabelValues("/a", "200").Inc()
	reqs.WithLabelValues(`say "hi"\`+"\n", "200").Inc()
	temp.Set(-1.5)
	backlog.WithLabelValues("q").Set(math.Inf(1))
	backlog.WithLabelValues("p").Set(math.NaN())
	for _, v := range []float64{0.05, 0.1, 0.5, 20} {
		lat.Observe(v)
	}
	sizes.WithLabelValues("b").Observe(2e6)
	sizes.WithLabelValues("a").Observe(1e6)
	sizes.WithLabelValues("a").Observe(10)

	want := `# HELP answer From a func.
# TYPE answer gauge
answer 42
# HELP backlog Backlog.
# TYPE backlog gauge
backlog{queue="p"} NaN
backlog{queue="q"} +Inf
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 2
latency_seconds_bucket{le="1"} 3
latency_seconds_bucket{le="10"} 3
latency_seconds_bucket{le="+Inf"} 4
latency_seconds_sum 20.65
latency_seconds_count 4
# HELP requests_total Requests with a \\ backslash and\na newline.
# TYPE requests_total counter
requests_total{code="200",path="/a"} 1
requests_total{code="200",path="/b"} 1
requests_total{code="200",path="say \"hi\"\\\n"} 1
requests_total{code="500",path="/a"} 3
# HELP size_bytes Sizes.
# TYPE size_bytes histogram
size_bytes_bucket{kind="a",le="100"} 1
size_bytes_bucket{kind="a",le="1e+06"} 2
size_bytes_bucket{kind="a",le="+Inf"} 2
size_bytes_sum{kind="a"} 1.00001e+06
size_bytes_count{kind="a"} 2
size_bytes_bucket{kind="b",le="100"} 0
size_bytes_bucket{kind="b",le="1e+06"} 0
size_bytes_bucket{kind="b",le="+Inf"} 1
size_bytes_sum{kind="b"} 2e+06
size_bytes_count{kind="b"} 1
# HELP temperature A gauge.
# TYPE temperature gauge
temperature -1.5
# HELP zz_plain_total A plain counter.
# TYPE zz_plain_total counter
zz_plain_total 3.5
`
	if got := expose(r); got != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", got, want)
	}
}

func TestEmptyMetricsAreExposedAtZero(t *testing.T) {
	r := NewRegistry()
	r.NewCounter(CounterOpts{Name: "c_total", Help: "C."})
	r.NewHistogram(HistogramOpts{Name: "h", Help: "H.", Buckets: []float64{1}})
	want := `# HELP c_total C.
# TYPE c_total counter
c_total 0
# HELP h H.
# TYPE h histogram
h_bucket{le="1"} 0
h_bucket{le="+Inf"} 0
h_sum 0
h_count 0
`
	if got := expose(r); got != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", got, want)
	}
}

func TestFloatFormat(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 1: "1", -1: "-1", 0.25: "0.25", 1e6: "1e+06", 123456: "123456", 1e-5: "1e-05",
		math.Inf(1): "+Inf", math.Inf(-1): "-Inf",
	} {
		if got := string(appendFloat(nil, v)); got != want {
			t.Errorf("appendFloat(%v) = %q, want %q", v, got, want)
		}
	}
	if got := string(appendFloat(nil, math.NaN())); got != "NaN" {
		t.Errorf("appendFloat(NaN) = %q", got)
	}
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.NewCounter(CounterOpts{Name: "hits_total", Help: "Hits."}).Inc()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if !strings.Contains(rec.Body.String(), "\nhits_total 1\n") {
		t.Errorf("body:\n%s", rec.Body.String())
	}
}

// sampleLine is the shape of a sample line: name, optional {labels} with
// quoted, escaped values, a space and a float.
var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})? (\S+)$`)

// TestDefaultParses checks every line of the Default registry's exposition
// (with the runtime metrics and some of each kind): comments are HELP or
// TYPE of the family that follows, sample lines are name{labels} value with
// a parsable value.
func TestDefaultParses(t *testing.T) {
	NewCounterVec(CounterOpts{Name: "parse_test_total", Help: "Test."}, []string{"a", "b"}).WithLabelValues("x\"\n\\", "").Inc()
	NewGaugeVec(GaugeOpts{Name: "parse_test_gauge", Help: "Test."}, []string{"a"}).WithLabelValues("1").Set(-3)
	NewHistogramVec(HistogramOpts{Name: "parse_test_seconds", Help: "Test."}, []string{"a"}).WithLabelValues("1").Observe(0.3)
	NewHistogram(HistogramOpts{Name: "parse_test_plain_seconds", Help: "Test."}).Observe(3)
	NewCounter(CounterOpts{Name: "parse_test_plain_total", Help: "Test."}).Inc()
	NewGauge(GaugeOpts{Name: "parse_test_plain_gauge", Help: "Test."}).Set(1)

	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	if !strings.HasSuffix(text, "\n") {
		t.Fatal("exposition does not end with a newline")
	}
	var family, typ string
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			family, _, _ = strings.Cut(rest, " ")
			if seen[family] {
				t.Errorf("line %d: family %s twice", n, family)
			}
			seen[family] = true
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, kind, _ := strings.Cut(rest, " ")
			if name != family {
				t.Errorf("line %d: TYPE of %s after HELP of %s", n, name, family)
			}
			switch kind {
			case "counter", "gauge", "histogram":
			default:
				t.Errorf("line %d: type %q", n, kind)
			}
			typ = kind
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line %d is not name{labels} value: %q", n, line)
			continue
		}
		name, value := m[1], m[len(m)-1]
		base := name
		if typ == "histogram" {
			base = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		}
		if base != family {
			t.Errorf("line %d: sample %s in family %s", n, name, family)
		}
		if _, err := strconv.ParseFloat(value, 64); err != nil {
			t.Errorf("line %d: value %q: %v", n, value, err)
		}
	}
	for _, want := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "go_gc_cycles_total", "go_info", "parse_test_total", "parse_test_seconds"} {
		if !seen[want] {
			t.Errorf("no %s in the exposition", want)
		}
	}
	if rss, ok := residentMemory(); ok && !seen["process_resident_memory_bytes"] || ok && rss <= 0 {
		t.Errorf("process_resident_memory_bytes: %v, exposed %v", rss, seen["process_resident_memory_bytes"])
	}
	if !strings.Contains(text, `parse_test_total{a="x\"\n\\",b=""} 1`+"\n") {
		t.Errorf("escaped series missing:\n%s", text)
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    5632 kB\nRssAnon:\t 1 kB\n"
	if v, ok := parseVmRSS([]byte(status)); !ok || v != 5632*1024 {
		t.Errorf("parseVmRSS = %v, %v", v, ok)
	}
	if _, ok := parseVmRSS([]byte("Name:\tx\n")); ok {
		t.Error("parseVmRSS without VmRSS reported a value")
	}
}

func TestConcurrentUpdates(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounter(CounterOpts{Name: "c_total", Help: "C."})
	cv := r.NewCounterVec(CounterOpts{Name: "cv_total", Help: "CV."}, []string{"k"})
	g := r.NewGauge(GaugeOpts{Name: "g", Help: "G."})
	h := r.NewHistogramVec(HistogramOpts{Name: "h", Help: "H.", Buckets: []float64{0.5}}, []string{"k"})
	const workers, n = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			k := strconv.Itoa(w % 2)
			for i := range n {
				c.Inc()
				c.Add(0.5)
				cv.WithLabelValues(k).Inc()
				g.Add(1)
				g.Dec()
				g.Inc()
				h.WithLabelValues(k).Observe(float64(i % 2)) // half 0, half 1
				if i%500 == 0 {
					expose(r) // scrapes race with updates
				}
			}
		})
	}
	wg.Wait()
	const total = workers * n
	if got := c.Value(); got != total*1.5 {
		t.Errorf("counter = %v, want %v", got, total*1.5)
	}
	if got := cv.WithLabelValues("0").Value() + cv.WithLabelValues("1").Value(); got != total {
		t.Errorf("counter vec sum = %v, want %v", got, total)
	}
	if got := g.Value(); got != total {
		t.Errorf("gauge = %v, want %v", got, total)
	}
	text := expose(r)
	for _, want := range []string{
		`h_bucket{k="0",le="0.5"} 4000`, `h_bucket{k="0",le="+Inf"} 8000`, `h_sum{k="0"} 4000`, `h_count{k="0"} 8000`,
		`h_count{k="1"} 8000`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("exposition lacks %s:\n%s", want, text)
		}
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	r := NewRegistry()
	cv := r.NewCounterVec(CounterOpts{Name: "cv_total", Help: "CV."}, []string{"a", "b"})
	hv := r.NewHistogramVec(HistogramOpts{Name: "h_seconds", Help: "H."}, []string{"a"})
	gv := r.NewGaugeVec(GaugeOpts{Name: "g", Help: "G."}, []string{"a"})
	a, b := "subject", "ack"
	cv.WithLabelValues(a, b).Inc()
	hv.WithLabelValues(a).Observe(1)
	if n := testing.AllocsPerRun(1000, func() {
		cv.WithLabelValues(a, b).Inc()
		cv.WithLabelValues(a, b).Add(2)
		hv.WithLabelValues(a).Observe(0.042)
		gv.WithLabelValues(a).Set(3)
	}); n != 0 {
		t.Errorf("%v allocations per update", n)
	}
}

func TestMisuse(t *testing.T) {
	r := NewRegistry()
	cv := r.NewCounterVec(CounterOpts{Name: "ok_total", Help: "OK."}, []string{"a"})
	for name, f := range map[string]func(){
		"duplicate":        func() { r.NewCounter(CounterOpts{Name: "ok_total"}) },
		"bad metric name":  func() { r.NewGauge(GaugeOpts{Name: "1bad"}) },
		"bad label name":   func() { r.NewGaugeVec(GaugeOpts{Name: "g1"}, []string{"a-b"}) },
		"reserved label":   func() { r.NewGaugeVec(GaugeOpts{Name: "g2"}, []string{"__a"}) },
		"le on histogram":  func() { r.NewHistogramVec(HistogramOpts{Name: "h1"}, []string{"le"}) },
		"label twice":      func() { r.NewCounterVec(CounterOpts{Name: "c1"}, []string{"a", "a"}) },
		"unsorted buckets": func() { r.NewHistogram(HistogramOpts{Name: "h2", Buckets: []float64{1, 1}}) },
		"value count":      func() { cv.WithLabelValues("x", "y") },
		"negative add":     func() { cv.WithLabelValues("x").Add(-1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func BenchmarkCounterVec(b *testing.B) {
	cv := NewRegistry().NewCounterVec(CounterOpts{Name: "c_total", Help: "C."}, []string{"subject", "result"})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cv.WithLabelValues("ticket:created", "ack").Inc()
		}
	})
}

func BenchmarkHistogramVec(b *testing.B) {
	hv := NewRegistry().NewHistogramVec(HistogramOpts{Name: "h_seconds", Help: "H."}, []string{"service", "method", "route", "status"})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			hv.WithLabelValues("tickets", "GET", "/api/tickets/{id}", "200").Observe(0.003)
		}
	})
}
