package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Report is everything one bench run measured; it is written as JSON and
// rendered as a text table and as markdown.
type Report struct {
	StartedAt time.Time  `json:"startedAt"`
	DurationS float64    `json:"durationSeconds"`
	Store     Store      `json:"store"`
	Host      Host       `json:"host"`
	Settings  Settings   `json:"settings"`
	Workloads []Workload `json:"workloads"`
	// Processes are the processes whose CPU is counted, in table order;
	// "loadgen" (the load generator) is not in the system's total.
	Processes []string `json:"processes"`
	// IdleBaseline is the CPU (cores) each process used while the system
	// was idle, before the workloads; IdleBaselineCores the system's sum.
	IdleBaseline      map[string]float64 `json:"idleBaselineCores"`
	IdleBaselineCores float64            `json:"idleBaselineSystemCores"`
	Propagation       []Propagation      `json:"propagation,omitempty"`
	Convergence       *Convergence       `json:"convergence,omitempty"`
	RSS               []ProcessRSS       `json:"rss"`
	Counts            []CollCount        `json:"documentCounts"`
	Notes             []string           `json:"notes,omitempty"`
	Targets           TargetsResult      `json:"targets"`
}

// Store names the database server the services and the floor used.
type Store struct {
	Label   string `json:"label"`
	Version string `json:"version"`
}

// Host describes the machine.
type Host struct {
	CPUs int    `json:"cpus"`
	OS   string `json:"os"`
	Go   string `json:"go"`
}

// Settings are the knobs of the run.
type Settings struct {
	Concurrency []int   `json:"concurrency"`
	RunSeconds  float64 `json:"runSeconds"`
	Target      string  `json:"target"`
	// Idle: the system's processes use under IdleCores of one core over
	// IdleWindowS seconds; a run's tail is cut at IdleCapS.
	IdleCores   float64 `json:"idleCores"`
	IdleWindowS float64 `json:"idleWindowSeconds"`
	IdleCapS    float64 `json:"idleCapSeconds"`
}

// Workload is one HTTP workload at one concurrency next to its floor.
type Workload struct {
	Name        string  `json:"name"`
	Concurrency int     `json:"concurrency"`
	HTTP        Summary `json:"http"`
	FloorName   string  `json:"floorName"`
	Floor       Summary `json:"floor"`
	// FloorCost is what the floor run cost the store and the broker.
	FloorCost FloorCost `json:"floorCost"`
	// Ratio is HTTP requests/s over floor operations/s.
	Ratio float64 `json:"ratio"`
	// Cost is what the HTTP run cost until the system was idle again.
	Cost Cost `json:"cost"`
}

// Propagation is the time from a PUT's 200 until the orders replica holds
// the version it returned.
type Propagation struct {
	TargetRate   int     `json:"targetUpdatesPerSecond"`
	AchievedRate float64 `json:"achievedUpdatesPerSecond"`
	Tickets      int     `json:"tickets"`
	Updates      int     `json:"updates"`
	Errors       int     `json:"errors"`
	Unconverged  int     `json:"unconverged"`
	P50ms        float64 `json:"p50Ms"`
	P90ms        float64 `json:"p90Ms"`
	P99ms        float64 `json:"p99Ms"`
	MaxMs        float64 `json:"maxMs"`
	PollMeanMs   float64 `json:"pollIntervalMeanMs"`
}

// Convergence is how long the replica takes to hold the last of N rapid
// updates to one ticket, counted from the last PUT's 200.
type Convergence struct {
	Updates     int       `json:"updatesPerRound"`
	Rounds      int       `json:"rounds"`
	AfterLastMs []float64 `json:"afterLastMs"`
	P50ms       float64   `json:"p50Ms"`
	MaxMs       float64   `json:"maxMs"`
	FromFirstMs float64   `json:"medianFromFirstPutMs"`
	Failed      int       `json:"failed"`
}

// ProcessRSS is the memory of one service process.
type ProcessRSS struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	StartKB int64  `json:"startKB"`
	PeakKB  int64  `json:"peakKB"`
	EndKB   int64  `json:"endKB"`
}

// CollCount is the number of documents in one collection after the run.
type CollCount struct {
	Database   string `json:"database"`
	Collection string `json:"collection"`
	Docs       int64  `json:"docs"`
}

// TargetsResult compares the run to the targets.
type TargetsResult struct {
	MinRatio          float64 `json:"minRatio"`
	RatioOK           bool    `json:"ratioAtLeast0.8"`
	PropagationP99OK  bool    `json:"propagationP99Under10ms"`
	ConvergenceOK     bool    `json:"convergenceUnder100ms"`
	RSSOK             bool    `json:"rssUnder25MB"`
	MaxServiceEndRSSB int64   `json:"maxServiceEndRSSKB"`
}

// Evaluate fills r.Targets from the measurements.
func (r *Report) Evaluate() {
	t := TargetsResult{MinRatio: -1}
	for _, w := range r.Workloads {
		if w.Ratio > 0 && (t.MinRatio < 0 || w.Ratio < t.MinRatio) {
			t.MinRatio = w.Ratio
		}
	}
	t.RatioOK = t.MinRatio >= 0.8
	if t.MinRatio < 0 {
		t.MinRatio = 0
	}
	if p := r.targetPropagation(); p != nil {
		t.PropagationP99OK = p.Updates > 0 && p.Unconverged == 0 && p.P99ms < 10
	}
	if c := r.Convergence; c != nil {
		t.ConvergenceOK = c.Rounds > 0 && c.Failed == 0 && c.MaxMs < 100
	}
	t.RSSOK = len(r.RSS) > 0
	for _, p := range r.RSS {
		if p.EndKB > t.MaxServiceEndRSSB {
			t.MaxServiceEndRSSB = p.EndKB
		}
		if p.EndKB >= 25*1024 {
			t.RSSOK = false
		}
	}
	r.Targets = t
}

// WriteJSON writes r indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
func mb(kb int64) string  { return fmt.Sprintf("%.1f", float64(kb)/1024) }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// tables returns the report as titled tables (header + rows), shared by
// the text and the markdown renderings.
func (r *Report) tables() []table {
	var ts []table
	wl := table{title: "HTTP workloads vs floor (same servers, same concurrency)",
		head: []string{"workload", "conc", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "floor", "floor op/s", "floor p50", "floor p99", "ratio"}}
	for _, w := range r.Workloads {
		wl.rows = append(wl.rows, []string{w.Name, fmt.Sprint(w.Concurrency), f1(w.HTTP.RPS), f2(w.HTTP.P50ms), f2(w.HTTP.P90ms), f2(w.HTTP.P99ms),
			fmt.Sprint(w.HTTP.Errors), w.FloorName, f1(w.Floor.RPS), f2(w.Floor.P50ms), f2(w.Floor.P99ms), f2(w.Ratio)})
	}
	ts = append(ts, wl)
	ts = append(ts, r.costTables()...)
	if len(r.Propagation) > 0 {
		pt := table{title: "Event propagation: PUT 200 -> orders replica holds that version",
			head: []string{"target/s", "achieved/s", "tickets", "updates", "errors", "unconverged", "p50 ms", "p90 ms", "p99 ms", "max ms", "poll ms"}}
		for _, p := range r.Propagation {
			pt.rows = append(pt.rows, []string{fmt.Sprint(p.TargetRate), f1(p.AchievedRate), fmt.Sprint(p.Tickets), fmt.Sprint(p.Updates), fmt.Sprint(p.Errors),
				fmt.Sprint(p.Unconverged), f2(p.P50ms), f2(p.P90ms), f2(p.P99ms), f2(p.MaxMs), f2(p.PollMeanMs)})
		}
		ts = append(ts, pt)
	}
	if c := r.Convergence; c != nil {
		ts = append(ts, table{title: fmt.Sprintf("Convergence of %d rapid updates to one ticket", c.Updates),
			head: []string{"rounds", "failed", "p50 ms after last 200", "max ms after last 200", "median ms from first PUT"},
			rows: [][]string{{fmt.Sprint(c.Rounds), fmt.Sprint(c.Failed), f2(c.P50ms), f2(c.MaxMs), f2(c.FromFirstMs)}}})
	}
	rss := table{title: "Service memory (RSS, MB)", head: []string{"service", "pid", "start", "peak (VmHWM)", "end"}}
	for _, p := range r.RSS {
		rss.rows = append(rss.rows, []string{p.Name, fmt.Sprint(p.PID), mb(p.StartKB), mb(p.PeakKB), mb(p.EndKB)})
	}
	ts = append(ts, rss)
	cnt := table{title: "Store: " + r.Store.Label + " " + r.Store.Version + " — documents after the run", head: []string{"database", "collection", "documents"}}
	for _, c := range r.Counts {
		cnt.rows = append(cnt.rows, []string{c.Database, c.Collection, fmt.Sprint(c.Docs)})
	}
	ts = append(ts, cnt)
	t := r.Targets
	ts = append(ts, table{title: "Targets", head: []string{"target", "measured", "met"}, rows: [][]string{
		{"every HTTP workload >= 0.8x its floor", "min " + f2(t.MinRatio) + "x", yes(t.RatioOK)},
		{"propagation p99 < 10 ms at 200 updates/s", propP99(r.targetPropagation()), yes(t.PropagationP99OK)},
		{"30-update convergence < 100 ms", convMax(r.Convergence), yes(t.ConvergenceOK)},
		{"each service < 25 MB RSS after the run", "max " + mb(t.MaxServiceEndRSSB) + " MB", yes(t.RSSOK)},
	}})
	return ts
}

// costTables are the cost of each HTTP run, counted until the system was
// idle again with every replica at the last version.
func (r *Report) costTables() []table {
	st := r.Settings
	ct := table{title: fmt.Sprintf("Until idle: the window, then the tail until every replica holds the last version and the system uses under %.0f%% of a core over %.1f s (cap %.0f s)",
		st.IdleCores*100, st.IdleWindowS, st.IdleCapS),
		head: []string{"workload", "conc", "req/s", "p50 ms", "p99 ms", "tail s", "req/s incl. tail", "CPU ms/req", "store cmds/req", "store writes/req", "store other/req", "published", "deliveries", "redelivered", "duplicates", "dup %"}}
	cpu := table{title: "CPU ms per request, window + tail (system = every process but loadgen)",
		head: append(append([]string{"workload", "conc"}, r.systemProcs()...), "system", "loadgen")}
	for _, w := range r.Workloads {
		c := w.Cost
		tail := f1(c.TailS)
		if !c.Idle {
			tail = "not idle (>" + fmt.Sprintf("%.0f", c.TailS) + ")"
		}
		cmds, writes, other := "-", "-", "-"
		if c.Store != nil {
			cmds, writes = f2(c.StoreCmdsPerRq), f2(c.StoreWrPerRq)
			if c.Requests > 0 {
				other = f2(float64(c.Store.Other) / float64(c.Requests))
			}
		}
		dups, dels, pct, pubs, redel := "-", "-", "-", "-", "-"
		if c.EventsOK {
			dups, dels = fmt.Sprintf("%.0f", c.Duplicates), fmt.Sprintf("%.0f", c.Deliveries)
			pubs, redel = fmt.Sprintf("%.0f", c.Published), fmt.Sprintf("%.0f", c.Redelivered)
			if c.Deliveries > 0 {
				pct = f2(100 * c.Duplicates / c.Deliveries)
			}
		}
		ct.rows = append(ct.rows, []string{w.Name, fmt.Sprint(w.Concurrency), f1(w.HTTP.RPS), f2(w.HTTP.P50ms), f2(w.HTTP.P99ms),
			tail, f1(c.Throughput), f2(c.SystemCPUms), cmds, writes, other, pubs, dels, redel, dups, pct})
		row := []string{w.Name, fmt.Sprint(w.Concurrency)}
		for _, p := range r.systemProcs() {
			row = append(row, f2(c.CPUms[p]))
		}
		cpu.rows = append(cpu.rows, append(row, f2(c.SystemCPUms), f2(c.CPUms["loadgen"])))
	}
	idle := table{title: "Idle baseline before the workloads (CPU, % of one core)", head: append(append([]string{}, r.systemProcs()...), "system")}
	if r.IdleBaseline != nil {
		var row []string
		for _, p := range r.systemProcs() {
			row = append(row, f2(100*r.IdleBaseline[p]))
		}
		idle.rows = append(idle.rows, append(row, f2(100*r.IdleBaselineCores)))
	}
	return []table{ct, cpu, r.boundTable(), idle}
}

// boundTable sets each workload's store CPU against the floor's: a request
// that makes n store commands costs the store about n times the floor's CPU
// per command, whatever the services do.
func (r *Report) boundTable() table {
	t := table{title: "Store CPU against the floor's: a request making n store commands costs the store about n x the floor's CPU per command (store = mongo-standin + postgres)",
		head: []string{"workload", "conc", "floor", "floor cmds/op", "floor store CPU ms/op", "floor store CPU ms/cmd", "floor broker CPU ms/op", "floor client CPU ms/op", "store cmds/req", "bound: cmds x floor ms/cmd", "store CPU ms/req", "store CPU ms/cmd", "CPU ms/req"}}
	for _, w := range r.Workloads {
		fc, c := w.FloorCost, w.Cost
		bound, perCmd := "-", "-"
		if fc.PerCommand() > 0 && c.Store != nil {
			bound = f2(c.StoreCmdsPerRq * fc.PerCommand())
		}
		if c.StoreCmdsPerRq > 0 {
			perCmd = f2(c.StoreCPUms() / c.StoreCmdsPerRq)
		}
		t.rows = append(t.rows, []string{w.Name, fmt.Sprint(w.Concurrency), w.FloorName, f2(fc.StoreCmds), f2(fc.StoreCPUms), f2(fc.PerCommand()), f2(fc.BrokerCPUms), f2(fc.ClientCPUms),
			f2(c.StoreCmdsPerRq), bound, f2(c.StoreCPUms()), perCmd, f2(c.SystemCPUms)})
	}
	return t
}

// systemProcs are the processes counted in the system's CPU.
func (r *Report) systemProcs() []string {
	var ps []string
	for _, p := range r.Processes {
		if p != "loadgen" {
			ps = append(ps, p)
		}
	}
	return ps
}

// PropagationTargetRate is the rate the propagation target is set at.
const PropagationTargetRate = 200

// targetPropagation is the run at PropagationTargetRate, else the first.
func (r *Report) targetPropagation() *Propagation {
	for i := range r.Propagation {
		if r.Propagation[i].TargetRate == PropagationTargetRate {
			return &r.Propagation[i]
		}
	}
	if len(r.Propagation) > 0 {
		return &r.Propagation[0]
	}
	return nil
}

func propP99(p *Propagation) string {
	if p == nil {
		return "not run"
	}
	return f2(p.P99ms) + " ms"
}

func convMax(c *Convergence) string {
	if c == nil {
		return "not run"
	}
	return "max " + f2(c.MaxMs) + " ms"
}

type table struct {
	title string
	head  []string
	rows  [][]string
}

// WriteText writes the report as aligned plain-text tables.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "bench %s  store: %s %s  host: %d CPUs %s  %s\n",
		r.StartedAt.UTC().Format(time.RFC3339), r.Store.Label, r.Store.Version, r.Host.CPUs, r.Host.OS, r.Host.Go)
	for _, t := range r.tables() {
		fmt.Fprintf(w, "\n%s\n", t.title)
		widths := make([]int, len(t.head))
		for i, h := range t.head {
			widths[i] = len([]rune(h))
		}
		for _, row := range t.rows {
			for i, c := range row {
				if n := len([]rune(c)); n > widths[i] {
					widths[i] = n
				}
			}
		}
		line := func(cells []string) {
			var b strings.Builder
			for i, c := range cells {
				if i > 0 {
					b.WriteString("  ")
				}
				b.WriteString(c)
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))))
			}
			fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		}
		line(t.head)
		for _, row := range t.rows {
			line(row)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// WriteMarkdown writes the report as markdown tables.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "Run %s, %.0f s; store: %s %s; host: %d CPUs, %s, %s; concurrency %v, %.1f s per run; tickets at %s.\n",
		r.StartedAt.UTC().Format(time.RFC3339), r.DurationS, r.Store.Label, r.Store.Version, r.Host.CPUs, r.Host.OS, r.Host.Go,
		r.Settings.Concurrency, r.Settings.RunSeconds, r.Settings.Target)
	for _, t := range r.tables() {
		fmt.Fprintf(w, "\n**%s**\n\n", t.title)
		fmt.Fprintf(w, "| %s |\n", strings.Join(t.head, " | "))
		seps := make([]string, len(t.head))
		for i := range seps {
			seps[i] = "---"
		}
		fmt.Fprintf(w, "|%s|\n", strings.Join(seps, "|"))
		for _, row := range t.rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}
