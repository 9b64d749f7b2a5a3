package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A real line of /proc/<pid>/stat, with a command name holding a space
	// and a parenthesis (only the last ')' ends it).
	line := "4242 (post gres) x) S 4000 4000 4000 0 -1 4194560 1234 0 0 0 731 402 55 21 20 0 1 0 12345 221184000 3000 18446744073709551615 1 1 0 0 0 0 0 16781312 134235463 0 0 0 17 1 0 0 0 0 0\n"
	s, err := ParseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := ProcStat{PID: 4242, PPID: 4000, Comm: "post gres) x", UTime: 731, STime: 402, CUTime: 55, CSTime: 21}
	if s != want {
		t.Fatalf("ParseStat = %+v, want %+v", s, want)
	}
	if s.Own() != 1133 || s.WithChildren() != 1209 {
		t.Fatalf("Own %d WithChildren %d, want 1133 1209", s.Own(), s.WithChildren())
	}
	for _, bad := range []string{"", "12 no comm", "12 (x) S 1 2 3", "x (y) S 1 1 1 0 -1 0 0 0 0 0 1 2 3 4"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) accepted", bad)
		}
	}
}

func TestTreeTicksCountsLiveChildrenAndReapedOnes(t *testing.T) {
	pm := ProcStat{PID: 10, PPID: 1, UTime: 5, STime: 5, CUTime: 100, CSTime: 50} // 150 of exited backends
	all := []ProcStat{
		pm,
		{PID: 11, PPID: 10, UTime: 30, STime: 10},          // a backend
		{PID: 12, PPID: 10, UTime: 1, STime: 1, CUTime: 3}, // a worker with a reaped child
		{PID: 13, PPID: 11, UTime: 1000},                   // not a child of the postmaster
		{PID: 14, PPID: 1, UTime: 1000},                    // another process
	}
	if got, want := TreeTicks(pm, all), uint64(10+150+40+5); got != want {
		t.Fatalf("TreeTicks = %d, want %d", got, want)
	}
	// Backend 11 exits and is reaped: its time moves into the postmaster's
	// cutime/cstime, and the sum stays.
	pm.CUTime, pm.CSTime = 130, 60
	if got, want := TreeTicks(pm, []ProcStat{pm, all[2]}), uint64(10+190+5); got != want {
		t.Fatalf("after a backend exited: TreeTicks = %d, want %d", got, want)
	}
}

func TestQuietStart(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		out := make([]time.Time, len(ms))
		for i, m := range ms {
			out[i] = t0.Add(time.Duration(m) * time.Millisecond)
		}
		return out
	}
	every100 := at(0, 100, 200, 300, 400, 500, 600, 700)
	tests := []struct {
		name  string
		at    []time.Time
		ticks []uint64
		quiet bool
		start int
	}{
		{"too short to tell", at(0, 100, 200), []uint64{0, 0, 0}, false, 0},
		{"busy: a full core", every100, []uint64{0, 10, 20, 30, 40, 50, 60, 70}, false, 2},
		// 500 ms at 5 % of a core is 25 ms: 2 ticks (20 ms) is under it.
		{"quiet since 200 ms", every100, []uint64{0, 10, 20, 20, 21, 21, 22, 22}, true, 2},
		{"3 ticks in the last 500 ms is over 5 %", every100, []uint64{0, 10, 20, 21, 22, 22, 23, 23}, false, 2},
		{"uneven samples: the span is the latest one of at least 500 ms", at(0, 90, 250, 610, 700), []uint64{0, 50, 51, 52, 52}, true, 1},
		{"not cumulative", every100, []uint64{0, 10, 20, 30, 40, 50, 60, 5}, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, quiet := QuietStart(tt.at, tt.ticks, 500*time.Millisecond, 0.05)
			if quiet != tt.quiet || (quiet && start != tt.start) {
				t.Fatalf("QuietStart = %d, %v; want %d, %v", start, quiet, tt.start, tt.quiet)
			}
		})
	}
}

func TestPerRequest(t *testing.T) {
	// 250 ticks (2.5 CPU s) over 1000 requests: 2.5 ms each.
	if got := PerRequest(250, 1000); got != 2.5 {
		t.Fatalf("PerRequest(250, 1000) = %v, want 2.5", got)
	}
	if got := PerRequest(250, 0); got != 0 {
		t.Fatalf("PerRequest without requests = %v, want 0", got)
	}
}

func TestSumMetric(t *testing.T) {
	exp := `# HELP events_duplicates_total Deliveries acknowledged without being applied.
# TYPE events_duplicates_total counter
events_duplicates_total{queue_group="orders-service",subject="ticket:updated"} 7
events_duplicates_total{queue_group="tickets-service",subject="order:created"} 3
events_duplicates_total_extra 100
events_consumed_total{result="ack",subject="a b}c"} 12
events_consumed_total 1e3
`
	for name, want := range map[string]float64{"events_duplicates_total": 10, "events_consumed_total": 1012, "missing": 0} {
		got, err := SumMetric(strings.NewReader(exp), name)
		if err != nil || got != want {
			t.Errorf("SumMetric(%s) = %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := SumMetric(strings.NewReader("x{a=\"b\"} nope\n"), "x"); err == nil {
		t.Error("a value that is not a number was accepted")
	}
}

func TestDiffStoreCounts(t *testing.T) {
	before := map[string]int64{"tickets.tickets insert": 10, "orders.tickets update": 4, "tickets.tickets find": 2}
	after := map[string]int64{"tickets.tickets insert": 110, "orders.tickets update": 104, "tickets.tickets find": 12,
		"orders.tickets findAndModify": 5, "admin.$cmd ping": 1, " ": 3, " hello": 2, " getMore": 4}
	// The bench itself sent 6 finds and a count in the meantime.
	d := DiffStoreCounts(before, after, map[string]int64{"find": 6, "count": 1})
	if want := int64(100 + 100 + 10 + 5 + 1 + 4 - 7); d.Commands != want || d.Writes != 205 || d.Other != 5 {
		t.Fatalf("commands %d writes %d other %d, want %d 205 5 (%v)", d.Commands, d.Writes, d.Other, want, d.ByKey)
	}
	if d.ByKey["orders.tickets update"] != 100 || len(d.ByKey) != 8 {
		t.Fatalf("by key %v", d.ByKey)
	}
}

func TestBoundTableSetsStoreCPUAgainstTheFloors(t *testing.T) {
	r := &Report{Workloads: []Workload{{
		Name: "PUT /api/tickets/:id", Concurrency: 16, FloorName: "cond. update+publish",
		FloorCost: FloorCost{Ops: 1000, StoreCmds: 1, StoreCPUms: 0.9, BrokerCPUms: 0.1, ClientCPUms: 0.2},
		Cost:      Cost{Store: &StoreDelta{}, StoreCmdsPerRq: 2, SystemCPUms: 3, CPUms: map[string]float64{"mongo-standin": 1.2, "postgres": 1.0, "tickets": 0.4}},
	}, {
		Name: "GET /api/tickets/:id", Concurrency: 16, FloorName: "find by id", // no counts
	}}}
	rows := r.boundTable().rows
	want := []string{"PUT /api/tickets/:id", "16", "cond. update+publish", "1.00", "0.90", "0.90", "0.10", "0.20", "2.00", "1.80", "2.20", "1.10", "3.00"}
	if strings.Join(rows[0], "|") != strings.Join(want, "|") {
		t.Fatalf("row = %v\nwant  %v", rows[0], want)
	}
	if rows[1][9] != "-" || rows[1][11] != "-" {
		t.Fatalf("without counts the bound and the per-command figure are unknown: %v", rows[1])
	}
}
