package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/event"
)

// Cost is what one HTTP workload cost the system, counted from the start
// of its run (warm-up included) until the system was idle again with every
// replica at the last version: work deferred past the window counts.
type Cost struct {
	// Requests: every request of the run (warm-up, window, failed): the
	// denominator of the per-request figures.
	Requests int `json:"requests"`
	// TailS: from the end of the window (the last response) until the
	// system was idle and consistent (see Bench.finish); the cap when not
	// Idle.
	TailS float64 `json:"tailSeconds"`
	Idle  bool    `json:"idle"`
	// Throughput: the window's successful requests over window + tail.
	Throughput float64 `json:"throughputWithTail"`
	// CPUms: CPU milliseconds per request of each process (Report.Processes).
	CPUms map[string]float64 `json:"cpuMsPerRequest"`
	// SystemCPUms: their sum, the load generator left out.
	SystemCPUms float64 `json:"systemCpuMsPerRequest"`
	// Store: the store's commands (nil when its counts are not available).
	Store          *StoreDelta `json:"store,omitempty"`
	StoreCmdsPerRq float64     `json:"storeCommandsPerRequest"`
	StoreWrPerRq   float64     `json:"storeWritesPerRequest"`
	// Duplicates: deliveries the consumers acknowledged without applying
	// (events_duplicates_total), of Deliveries (events_consumed_total).
	Duplicates float64 `json:"duplicates"`
	Deliveries float64 `json:"deliveries"`
	// Published: events the services published (events_published_total);
	// Redelivered: deliveries the server marked redelivered.
	Published   float64 `json:"published"`
	Redelivered float64 `json:"redelivered"`
	EventsOK    bool    `json:"eventsScraped"`
}

// cmdCounter counts the commands the bench's own MongoDB client sends, so
// that they can be taken out of the store's counts.
type cmdCounter struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *cmdCounter) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		c.mu.Lock()
		if c.n == nil {
			c.n = map[string]int64{}
		}
		c.n[strings.ToLower(e.CommandName)]++
		c.mu.Unlock()
	}}
}

func (c *cmdCounter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

func diffCounts(before, after map[string]int64) map[string]int64 {
	d := map[string]int64{}
	for k, v := range after {
		if n := v - before[k]; n > 0 {
			d[k] = n
		}
	}
	return d
}

// mark is the state of the system's counters at the start of a run.
type mark struct {
	cpu    CPUSample
	store  map[string]int64
	own    map[string]int64
	events EventCounts
	evOK   bool
}

// cpuGroups lists the processes whose CPU is counted: the services (procs),
// the dev stack's own process (which runs NATS Streaming: "devstack+nats"),
// the store's processes, and the load generator (apart).
func (b *Bench) cpuGroups(procs []Proc) ([]CPUGroup, []string) {
	var gs []CPUGroup
	var notes []string
	for _, p := range procs {
		gs = append(gs, CPUGroup{Name: p.Name, PID: p.PID})
	}
	dev := b.cfg.DevstackPID
	if dev == 0 && len(procs) > 0 {
		// The dev stack runs the services as its children.
		if st, err := readStat(procs[0].PID); err == nil {
			dev = st.PPID
		}
	}
	if dev > 1 {
		gs = append(gs, CPUGroup{Name: "devstack+nats", PID: dev})
	} else {
		notes = append(notes, "dev stack process (with NATS Streaming) not found: its CPU is not counted")
	}
	if b.cfg.StorePID > 0 {
		gs = append(gs, CPUGroup{Name: "mongo-standin", PID: b.cfg.StorePID})
	} else {
		notes = append(notes, "store process not given (-store-pid): its CPU is not counted")
	}
	if b.cfg.PostgresPID > 0 {
		gs = append(gs, CPUGroup{Name: "postgres", PID: b.cfg.PostgresPID, Tree: true})
	}
	gs = append(gs, CPUGroup{Name: "loadgen", PID: os.Getpid(), Client: true})
	return gs, notes
}

// begin records the counters before a run.
func (b *Bench) begin(ctx context.Context) mark {
	m := mark{own: b.own.snapshot()}
	if b.cfg.StoreCountsURL != "" {
		if c, err := readStoreCounts(ctx, b.api.HC, b.cfg.StoreCountsURL); err == nil {
			m.store = c
		} else {
			b.log.Warn("store counts", "err", err)
		}
	}
	if len(b.metricsURLs) > 0 {
		ev, err := scrapeEvents(ctx, b.api.HC, b.metricsURLs)
		m.events, m.evOK = ev, err == nil
		if err != nil {
			b.log.Warn("metrics", "err", err)
		}
	}
	m.cpu = b.cpu.Sample() // last: the scrapes above are not the run's work
	return m
}

// finish waits, after a run, until the system is idle and consistent, and
// returns the run's cost from m on.
//
// Idle: the summed CPU of the system's processes stayed under
// cfg.IdleCores (a fraction of one core) over cfg.IdleWindow, sampled
// every 100 ms. Consistent: no pending outbox entries and the orders
// replica at every ticket's version. Consistency is checked only once the
// system is quiet, because the check reads whole collections and its own
// cost would keep the store busy; after a failed check the quiet span has
// to start again after it, and the failed check's CPU is not counted. The
// tail ends at the start of the quiet span that preceded a successful
// check: nothing happened from then on.
func (b *Bench) finish(ctx context.Context, m mark, h Summary) Cost {
	cfg := b.cfg
	windowEnd := time.Now()
	samples := []CPUSample{b.cpu.Sample()}
	since := 0 // where the current quiet span may start
	end, idle := -1, false
	// checks: the CPU of failed consistency checks, per process group. They
	// are the bench's own reads (whole collections), not the workload's
	// work, and run while the system is quiet, so their time is taken out.
	checks := make([]uint64, len(b.cpu.Groups))
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for end < 0 {
		select {
		case <-ctx.Done():
			end = len(samples) - 1
			continue
		case <-t.C:
		}
		samples = append(samples, b.cpu.Sample())
		at, ticks := b.series(samples[since:])
		if i, quiet := QuietStart(at, ticks, cfg.IdleWindow, cfg.IdleCores); quiet {
			if b.consistent(ctx) {
				end, idle = since+i, true
				break
			}
			before := samples[len(samples)-1]
			samples = append(samples, b.cpu.Sample()) // after the check
			since = len(samples) - 1
			for i, t := range samples[since].Ticks {
				checks[i] += t - min(before.Ticks[i], t)
			}
		}
		if time.Since(windowEnd) > cfg.IdleCap {
			end = len(samples) - 1
		}
	}
	last := samples[end]
	c := Cost{Requests: h.AllOps, Idle: idle, TailS: last.At.Sub(windowEnd).Seconds(), CPUms: map[string]float64{}}
	if !idle {
		c.TailS = cfg.IdleCap.Seconds()
	}
	c.TailS = max(c.TailS, 0)
	if d := h.Seconds + c.TailS; d > 0 {
		c.Throughput = float64(h.Ops) / d
	}
	var sys uint64
	for i, g := range b.cpu.Groups {
		used := last.Ticks[i] - min(m.cpu.Ticks[i], last.Ticks[i])
		used -= min(checks[i], used)
		c.CPUms[g.Name] = PerRequest(used, c.Requests)
		if !g.Client {
			sys += used
		}
	}
	c.SystemCPUms = PerRequest(sys, c.Requests)
	if m.store != nil {
		if after, err := readStoreCounts(ctx, b.api.HC, cfg.StoreCountsURL); err == nil {
			d := DiffStoreCounts(m.store, after, diffCounts(m.own, b.own.snapshot()))
			c.Store = &d
			if c.Requests > 0 {
				c.StoreCmdsPerRq = float64(d.Commands) / float64(c.Requests)
				c.StoreWrPerRq = float64(d.Writes) / float64(c.Requests)
			}
		} else {
			b.log.Warn("store counts", "err", err)
		}
	}
	if m.evOK {
		if ev, err := scrapeEvents(ctx, b.api.HC, b.metricsURLs); err == nil {
			c.Duplicates, c.Deliveries, c.EventsOK = ev.Duplicates-m.events.Duplicates, ev.Deliveries-m.events.Deliveries, true
			c.Published, c.Redelivered = ev.Published-m.events.Published, ev.Redelivered-m.events.Redelivered
		}
	}
	return c
}

// series is the time and summed system CPU of samples.
func (b *Bench) series(samples []CPUSample) ([]time.Time, []uint64) {
	at := make([]time.Time, len(samples))
	ticks := make([]uint64, len(samples))
	for i, s := range samples {
		at[i], ticks[i] = s.At, b.cpu.SystemTicks(s)
	}
	return at, ticks
}

// consistent reports whether no outbox entry is pending and the orders
// replica holds every ticket at its version.
func (b *Bench) consistent(ctx context.Context) bool {
	n, err := b.backlog(ctx)
	if err != nil || n > 0 {
		return false
	}
	lag, err := b.replicaLag(ctx)
	return err == nil && lag == 0
}

// waitQuiet waits until the system's CPU stayed under the idle threshold
// over the idle window (at most limit) and reports whether it did.
func (b *Bench) waitQuiet(ctx context.Context, limit time.Duration) bool {
	start := time.Now()
	samples := []CPUSample{b.cpu.Sample()}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for time.Since(start) < limit {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		samples = append(samples, b.cpu.Sample())
		at, ticks := b.series(samples)
		if _, quiet := QuietStart(at, ticks, b.cfg.IdleWindow, b.cfg.IdleCores); quiet {
			return true
		}
	}
	return false
}

// quiesce lets the previous run's backlog drain and the system go idle
// before the next run, so that a run is not charged for another's work.
func (b *Bench) quiesce(ctx context.Context, r *Report) {
	b.settle(ctx, r)
	if !b.waitQuiet(ctx, 60*time.Second) {
		r.Notes = append(r.Notes, fmt.Sprintf("system not idle (under %.0f%% of a core over %v) within 60 s before a run", b.cfg.IdleCores*100, b.cfg.IdleWindow))
	}
}

// idleBaseline measures the CPU the idle system uses (cores, per process
// and in all) over d.
func (b *Bench) idleBaseline(ctx context.Context, d time.Duration) (map[string]float64, float64) {
	s0 := b.cpu.Sample()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	s1 := b.cpu.Sample()
	secs := s1.At.Sub(s0.At).Seconds()
	out := map[string]float64{}
	for i, g := range b.cpu.Groups {
		out[g.Name] = float64(s1.Ticks[i]-min(s0.Ticks[i], s1.Ticks[i])) / clockTicks / secs
	}
	return out, float64(b.cpu.SystemTicks(s1)-min(b.cpu.SystemTicks(s0), b.cpu.SystemTicks(s1))) / clockTicks / secs
}

// FloorCost is what the store spent per floor operation: the lower bound
// of a store command's cost on these servers, which no service code can go
// under.
type FloorCost struct {
	Ops int `json:"ops"`
	// StoreCmds: the store commands per operation on the floor's database.
	StoreCmds float64 `json:"storeCommandsPerOp"`
	// StoreCPUms: CPU ms of the store's processes (mongo-standin and
	// postgres) per operation; BrokerCPUms: the dev stack's (NATS).
	StoreCPUms  float64 `json:"storeCpuMsPerOp"`
	BrokerCPUms float64 `json:"brokerCpuMsPerOp"`
	// ClientCPUms: the load generator's, which makes the floor's driver
	// calls and publishes: what a service spends at least on them.
	ClientCPUms float64 `json:"clientCpuMsPerOp"`
}

// PerCommand is the store's CPU per command at the floor (0 when the
// commands were not counted).
func (f FloorCost) PerCommand() float64 {
	if f.StoreCmds <= 0 {
		return 0
	}
	return f.StoreCPUms / f.StoreCmds
}

// storeGroups are the processes of the store (the stand-in and its
// PostgreSQL).
var storeGroups = []string{"mongo-standin", "postgres"}

// floorCost waits (at most 10 s) until the system is quiet after a floor
// run that started at m, then returns its cost per operation: only the
// floor's database counts among the store's commands.
func (b *Bench) floorCost(ctx context.Context, m mark, fl Summary) FloorCost {
	b.waitQuiet(ctx, 10*time.Second)
	s := b.cpu.Sample()
	fc := FloorCost{Ops: fl.AllOps}
	for i, g := range b.cpu.Groups {
		used := s.Ticks[i] - min(m.cpu.Ticks[i], s.Ticks[i])
		switch {
		case slices.Contains(storeGroups, g.Name):
			fc.StoreCPUms += PerRequest(used, fl.AllOps)
		case g.Name == "devstack+nats":
			fc.BrokerCPUms += PerRequest(used, fl.AllOps)
		case g.Client:
			fc.ClientCPUms += PerRequest(used, fl.AllOps)
		}
	}
	if m.store != nil && fl.AllOps > 0 {
		if after, err := readStoreCounts(ctx, b.api.HC, b.cfg.StoreCountsURL); err == nil {
			var n int64
			for k, v := range diffCounts(m.store, after) {
				if strings.HasPrefix(k, b.cfg.FloorDB+".") && dataCommand(k) {
					n += v
				}
			}
			fc.StoreCmds = float64(n) / float64(fl.AllOps)
		}
	}
	return fc
}

// StoreCPUms is the store's processes' CPU per request of the workload.
func (c Cost) StoreCPUms() float64 {
	var s float64
	for _, g := range storeGroups {
		s += c.CPUms[g]
	}
	return s
}
