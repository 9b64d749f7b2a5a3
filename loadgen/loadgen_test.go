package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func durs(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", durs(7), 50, 7 * time.Millisecond},
		{"single p99", durs(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p90 of 1..100", hundred, 90, 90 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p100 of 1..100", hundred, 100, 100 * time.Millisecond},
		{"p0 is min", hundred, 0, 1 * time.Millisecond},
		{"p50 of 4 is 2nd (nearest rank)", durs(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 4 is max", durs(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{"above 100 clamps", durs(1, 2), 150, 2 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Fatalf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize(durs(5, 1, 3, 2, 4), 2, 2*time.Second)
	if s.Ops != 5 || s.Errors != 2 || s.RPS != 2.5 {
		t.Fatalf("ops/errors/rps = %d/%d/%v", s.Ops, s.Errors, s.RPS)
	}
	if s.P50ms != 3 || s.P99ms != 5 || s.MaxMs != 5 || s.MeanMs != 3 {
		t.Fatalf("p50 %v p99 %v max %v mean %v", s.P50ms, s.P99ms, s.MaxMs, s.MeanMs)
	}
	empty := Summarize(nil, 3, 0)
	if empty.Ops != 0 || empty.RPS != 0 || empty.P50ms != 0 || empty.Errors != 3 {
		t.Fatalf("empty summary %+v", empty)
	}
	if got := Summarize(durs(1), 0, time.Second).P50ms; got != 1 {
		t.Fatalf("sub-ms rounding: %v", got)
	}
	if got := Summarize([]time.Duration{1500 * time.Microsecond}, 0, time.Second).P50ms; got != 1.5 {
		t.Fatalf("fractional ms: %v", got)
	}
}

func TestRatio(t *testing.T) {
	for _, tt := range []struct{ a, b, want float64 }{{80, 100, 0.8}, {100, 0, 0}, {1, 3, 0.33}, {250, 100, 2.5}} {
		if got := Ratio(tt.a, tt.b); got != tt.want {
			t.Errorf("Ratio(%v,%v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestRunClosedCountsOpsAndErrorsPerWorker(t *testing.T) {
	var calls, seen [4]atomic.Int64
	s := RunClosed(context.Background(), 4, 0, 100*time.Millisecond, func(ctx context.Context, w int) error {
		n := calls[w].Add(1)
		seen[w].Store(1)
		time.Sleep(time.Millisecond)
		if n%2 == 0 {
			return errors.New("even call fails")
		}
		return nil
	})
	var total int64
	for w := range calls {
		if seen[w].Load() != 1 {
			t.Fatalf("worker %d never ran", w)
		}
		total += calls[w].Load()
	}
	if int64(s.Ops+s.Errors) != total {
		t.Fatalf("ops %d + errors %d != calls %d", s.Ops, s.Errors, total)
	}
	if s.Errors == 0 || s.Ops == 0 || s.ErrorMsg != "even call fails" {
		t.Fatalf("summary %+v", s)
	}
}

func TestRunClosedWarmupNotCounted(t *testing.T) {
	var calls atomic.Int64
	s := RunClosed(context.Background(), 1, 60*time.Millisecond, 30*time.Millisecond, func(ctx context.Context, w int) error {
		calls.Add(1)
		time.Sleep(5 * time.Millisecond)
		return nil
	})
	if int64(s.Ops) >= calls.Load() {
		t.Fatalf("ops %d should exclude warm-up calls (total %d)", s.Ops, calls.Load())
	}
}

func TestStatusKB(t *testing.T) {
	status := "Name:\tservice\nVmPeak:\t  800000 kB\nVmHWM:\t   23456 kB\nVmRSS:\t   21000 kB\nThreads:\t7\n"
	m, err := StatusKB(strings.NewReader(status), "VmRSS", "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	if m["VmRSS"] != 21000 || m["VmHWM"] != 23456 || len(m) != 2 {
		t.Fatalf("got %v", m)
	}
	if _, err := StatusKB(strings.NewReader("VmRSS:\tlots kB\n"), "VmRSS"); err == nil {
		t.Fatal("want error for a non-numeric value")
	}
}

func TestParseProcs(t *testing.T) {
	ps, err := ParseProcs("tickets=12, orders=34,")
	if err != nil || len(ps) != 2 || ps[0] != (Proc{"tickets", 12}) || ps[1] != (Proc{"orders", 34}) {
		t.Fatalf("got %v %v", ps, err)
	}
	for _, bad := range []string{"tickets", "tickets=x", "=3", "a=-1"} {
		if _, err := ParseProcs(bad); err == nil {
			t.Errorf("ParseProcs(%q): want error", bad)
		}
	}
}

func TestParseConcurrency(t *testing.T) {
	c, err := ParseConcurrency("1, 16,64")
	if err != nil || len(c) != 3 || c[0] != 1 || c[1] != 16 || c[2] != 64 {
		t.Fatalf("got %v %v", c, err)
	}
	for _, bad := range []string{"", "0", "a", "5000"} {
		if _, err := ParseConcurrency(bad); err == nil {
			t.Errorf("ParseConcurrency(%q): want error", bad)
		}
	}
}

func TestLoopback(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8080", "http://localhost:3000", "mongodb://127.0.0.1:27017,localhost:27018/db", "nats://[::1]:4222"} {
		if err := Loopback(ok); err != nil {
			t.Errorf("Loopback(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:8080", "https://example.com", "mongodb://127.0.0.1:1,db.example.com:2"} {
		if err := Loopback(bad); err == nil {
			t.Errorf("Loopback(%q): want error", bad)
		}
	}
}

func TestPendingObserve(t *testing.T) {
	p := NewPending()
	t0 := time.Unix(100, 0)
	p.Add("a", 1, t0)
	p.Add("a", 2, t0.Add(10*time.Millisecond))
	p.Add("a", 3, t0.Add(20*time.Millisecond))
	p.Add("b", 5, t0)
	p.Observe(map[string]int64{"a": 2, "b": 4}, t0.Add(25*time.Millisecond))
	if p.Left() != 2 {
		t.Fatalf("left %d, want 2 (a@3 and b@5)", p.Left())
	}
	lat := p.Latencies()
	if len(lat) != 2 || lat[0] != 25*time.Millisecond || lat[1] != 15*time.Millisecond {
		t.Fatalf("latencies %v", lat)
	}
	p.Observe(map[string]int64{"a": 9, "b": 5}, t0.Add(30*time.Millisecond))
	if p.Left() != 0 || len(p.IDs()) != 0 || len(p.Latencies()) != 4 {
		t.Fatalf("left %d ids %v", p.Left(), p.IDs())
	}
}

func sampleReport() *Report {
	r := &Report{
		StartedAt: time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC),
		Store:     Store{Label: "FerretDB/PostgreSQL", Version: "7.0.77"},
		Host:      Host{CPUs: 2, OS: "linux/amd64", Go: "go1.26"},
		Settings:  Settings{Concurrency: []int{1, 16}, RunSeconds: 4},
		Workloads: []Workload{
			{Name: "GET /api/tickets/:id", Concurrency: 1, HTTP: Summary{Ops: 100, RPS: 900, P50ms: 1, P90ms: 1.5, P99ms: 3}, FloorName: "find by id", Floor: Summary{Ops: 100, RPS: 1000, P50ms: 0.9, P99ms: 2}, Ratio: 0.9},
			{Name: "PUT /api/tickets/:id", Concurrency: 16, HTTP: Summary{Ops: 100, RPS: 300, P50ms: 40, P99ms: 120, Errors: 1}, FloorName: "cond. update+publish", Floor: Summary{Ops: 100, RPS: 500, P50ms: 30, P99ms: 90}, Ratio: 0.6},
		},
		Propagation: []Propagation{{TargetRate: 20, Updates: 200, P50ms: 1, P99ms: 30}, {TargetRate: 200, Updates: 2000, P50ms: 3, P99ms: 8}},
		Convergence: &Convergence{Updates: 30, Rounds: 5, P50ms: 4, MaxMs: 20},
		RSS:         []ProcessRSS{{Name: "tickets", PID: 10, StartKB: 10000, PeakKB: 24000, EndKB: 20000}, {Name: "orders", PID: 11, EndKB: 30000}},
		Counts:      []CollCount{{Database: "tickets", Collection: "tickets", Docs: 1234}},
	}
	r.Evaluate()
	return r
}

func TestEvaluate(t *testing.T) {
	r := sampleReport()
	tg := r.Targets
	if tg.MinRatio != 0.6 || tg.RatioOK {
		t.Errorf("ratio target %+v", tg)
	}
	if !tg.PropagationP99OK || !tg.ConvergenceOK {
		t.Errorf("propagation/convergence targets %+v", tg)
	}
	if tg.RSSOK || tg.MaxServiceEndRSSB != 30000 {
		t.Errorf("rss target %+v (orders ends at 29.3 MB)", tg)
	}
	r.Propagation[1].Unconverged = 1
	r.Convergence.Failed = 1
	r.Evaluate()
	if r.Targets.PropagationP99OK || r.Targets.ConvergenceOK {
		t.Errorf("unconverged updates must fail the targets: %+v", r.Targets)
	}
	empty := &Report{}
	empty.Evaluate()
	if empty.Targets.RatioOK || empty.Targets.RSSOK || empty.Targets.PropagationP99OK {
		t.Errorf("nothing measured must meet no target: %+v", empty.Targets)
	}
}

func TestRenderings(t *testing.T) {
	r := sampleReport()
	var txt, md, js, svg bytes.Buffer
	r.WriteText(&txt)
	r.WriteMarkdown(&md)
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PUT /api/tickets/:id", "cond. update+publish", "0.60", "FerretDB/PostgreSQL", "1234", "29.3", "NO", "Targets"} {
		if !strings.Contains(txt.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, txt.String())
		}
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	// Markdown tables: every row of a table has the header's column count.
	lines := strings.Split(md.String(), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "|---") {
			cols := strings.Count(lines[i-1], "|")
			for j := i + 1; j < len(lines) && strings.HasPrefix(lines[j], "| "); j++ {
				if strings.Count(lines[j], "|") != cols {
					t.Errorf("markdown row %q has %d separators, header %d", lines[j], strings.Count(lines[j], "|"), cols)
				}
			}
		}
	}
	// Text columns are aligned: the header and the rows of the workload table start each column at the same offset.
	if !strings.Contains(txt.String(), "workload              conc") {
		t.Errorf("text table not aligned:\n%s", txt.String())
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Workloads) != 2 || back.Workloads[1].HTTP.Errors != 1 || len(back.Propagation) != 2 || back.Propagation[1].P99ms != 8 || back.Targets.MinRatio != 0.6 {
		t.Fatalf("JSON round trip: %+v", back)
	}
	dec := xml.NewDecoder(&svg)
	rects := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	// background + 2 workloads x (HTTP, floor) + 2 legend boxes
	if rects != 7 {
		t.Errorf("SVG has %d rects, want 7", rects)
	}
}

func TestLookupEnviron(t *testing.T) {
	block := []byte("PATH=/bin\x00PORT=3000\x00EMPTY=\x00PORT=41234\x00")
	if v, ok := LookupEnviron(block, "PORT"); !ok || v != "41234" {
		t.Fatalf("PORT = %q %v, want the last assignment", v, ok)
	}
	if v, ok := LookupEnviron(block, "EMPTY"); !ok || v != "" {
		t.Fatalf("EMPTY = %q %v", v, ok)
	}
	if _, ok := LookupEnviron(block, "PO"); ok {
		t.Fatal("prefix must not match")
	}
}
