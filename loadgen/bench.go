package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/outbox"
)

// Bench holds the connections of one run.
type Bench struct {
	cfg     Config
	log     *slog.Logger
	api     *API
	mc      *mongo.Client
	bus     *events.Conn
	floor   *Floor
	replica Replica
	tickets *mongo.Collection
	seller  *Session
	buyer   *Session
	// cpu reads the CPU of the system's processes and the load generator.
	cpu *CPUWatch
	// own counts the store commands the bench sends itself (taken out of
	// the store's counts).
	own cmdCounter
	// metricsURLs are the services' /metrics (for the event counters).
	metricsURLs []string
}

// NewBench connects to the services, the store and NATS Streaming.
func NewBench(ctx context.Context, cfg Config, log *slog.Logger) (*Bench, error) {
	maxC := 1
	for _, c := range cfg.Concurrency {
		maxC = max(maxC, c)
	}
	b := &Bench{cfg: cfg, log: log, api: &API{Auth: cfg.AuthURL, Tickets: cfg.TicketsURL, Orders: cfg.OrdersURL, HC: NewHTTPClient(maxC)}}
	if cfg.Direct && cfg.Procs == "" {
		b.direct()
	}
	rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for _, u := range []string{cfg.AuthURL + "/api/users/currentuser", cfg.TicketsURL + "/api/tickets?limit=1"} {
		if err := Ready(rctx, b.api.HC, u); err != nil {
			return nil, err
		}
	}
	// The floor's client pools connections as the services' do
	// (common/mongox.MaxPoolSize): the same client configuration, so that
	// the ratio compares the work, not the pool (on the FerretDB stand-in
	// a pool of 32 serves 64 workers faster than one of 80).
	mc, err := mongo.Connect(ctx, options.Client().ApplyURI(cfg.MongoURI).SetMaxPoolSize(servicePoolSize).SetTimeout(15*time.Second).SetMonitor(b.own.monitor()))
	if err != nil {
		return nil, fmt.Errorf("mongo: %w", err)
	}
	b.mc = mc
	if err := mc.Ping(rctx, nil); err != nil {
		mc.Disconnect(context.Background())
		return nil, fmt.Errorf("mongo ping: %w", err)
	}
	// The floor's publishes go to a stream of their own (on JetStream)
	// under their own prefix, on the bus the services use.
	bus, err := events.Connect(rctx, events.Config{Bus: cfg.EventBus, URL: cfg.NATSURL, ClusterID: cfg.NATSCluster,
		ClientID: fmt.Sprintf("loadgen-%d", rand.Uint32()), SubjectPrefix: "loadgen-floor."}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		mc.Disconnect(context.Background())
		return nil, fmt.Errorf("nats (%s): %w", cfg.EventBus, err)
	}
	b.bus = bus
	b.floor = NewFloor(mc.Database(cfg.FloorDB).Collection("docs"), mc.Database(cfg.FloorDB).Collection("inserts"), bus, string(events.SubjectTicketUpdated))
	b.replica = Replica{Coll: mc.Database(cfg.OrdersDB).Collection(cfg.ReplicaColl)}
	b.tickets = mc.Database(cfg.TicketsDB).Collection(cfg.TicketsColl)
	return b, nil
}

// servicePoolSize is common/mongox.MaxPoolSize (the load generator does
// not import the services' module).
const servicePoolSize = 32

// Close releases the connections.
func (b *Bench) Close() {
	if b.bus != nil {
		b.bus.Close()
	}
	if b.mc != nil {
		b.mc.Disconnect(context.Background())
	}
}

// direct points the client straight at the service processes (their PORT),
// skipping the dev stack's proxy, when they can be found.
func (b *Bench) direct() {
	procs, err := FindProcs(b.cfg.BinDir)
	if err != nil {
		return
	}
	for _, p := range procs {
		port, ok := EnvOf(p.PID, "PORT")
		if !ok {
			continue
		}
		u := "http://127.0.0.1:" + port
		switch p.Name {
		case "auth":
			b.api.Auth = u
		case "tickets":
			b.api.Tickets = u
		case "orders":
			b.api.Orders = u
		default:
			continue
		}
		b.log.Info("direct", "service", p.Name, "url", u)
	}
}

func (b *Bench) signUp(ctx context.Context, who string) (*Session, error) {
	email := fmt.Sprintf("bench-%s-%d@example.com", who, rand.Uint64())
	return b.api.SignUp(ctx, email, "bench-password")
}

// newTickets creates n tickets and, when replicated, waits until the
// orders replica holds them.
func (b *Bench) newTickets(ctx context.Context, n int, replicated bool) ([]Ticket, error) {
	ts := make([]Ticket, n)
	for i := range ts {
		t, err := b.api.CreateTicket(ctx, b.seller, fmt.Sprintf("bench ticket %d", i), 20)
		if err != nil {
			return nil, err
		}
		ts[i] = t
	}
	if replicated {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for _, t := range ts {
			if _, err := b.replica.WaitVersion(wctx, t.ID, t.Version); err != nil {
				return nil, err
			}
		}
	}
	return ts, nil
}

func (b *Bench) run(ctx context.Context, name string, c int, op Op) Summary {
	s := RunClosed(ctx, c, b.cfg.Warmup, b.cfg.Run, op)
	b.log.Info("run", "workload", name, "c", c, "ops/s", fmt.Sprintf("%.1f", s.RPS), "p50ms", s.P50ms, "p99ms", s.P99ms, "errors", s.Errors, "firstError", s.ErrorMsg)
	return s
}

// Run measures everything and returns the report.
func (b *Bench) Run(ctx context.Context) (*Report, error) {
	cfg := b.cfg
	r := &Report{StartedAt: time.Now(), Host: hostInfo(), Store: b.store(ctx),
		Settings: Settings{Concurrency: cfg.Concurrency, RunSeconds: cfg.Run.Seconds(), Target: b.api.Tickets,
			IdleCores: cfg.IdleCores, IdleWindowS: cfg.IdleWindow.Seconds(), IdleCapS: cfg.IdleCap.Seconds()}}
	procs, err := b.procs()
	if err != nil {
		return nil, err
	}
	if len(procs) == 0 {
		r.Notes = append(r.Notes, "no service processes found: RSS not measured (give -procs or -bin-dir)")
	}
	groups, notes := b.cpuGroups(procs)
	r.Notes = append(r.Notes, notes...)
	b.cpu = &CPUWatch{Groups: groups}
	for _, g := range groups {
		r.Processes = append(r.Processes, g.Name)
	}
	for _, p := range procs {
		if port, ok := EnvOf(p.PID, "PORT"); ok {
			b.metricsURLs = append(b.metricsURLs, "http://127.0.0.1:"+port+"/metrics")
		}
	}
	if len(b.metricsURLs) == 0 {
		r.Notes = append(r.Notes, "no service /metrics found: duplicates not measured")
	}
	if cfg.StoreCountsURL == "" {
		r.Notes = append(r.Notes, "store command counts not available (-store-counts): store commands not measured")
	}
	mon := StartRSSMonitor(procs)
	if b.seller, err = b.signUp(ctx, "seller"); err != nil {
		return nil, err
	}
	if b.buyer, err = b.signUp(ctx, "buyer"); err != nil {
		return nil, err
	}
	for _, c := range cfg.Concurrency {
		own, err := b.newTickets(ctx, c, false)
		if err != nil {
			return nil, err
		}
		orderTickets, err := b.newTickets(ctx, c, true)
		if err != nil {
			return nil, err
		}
		size, err := b.tickets.CountDocuments(ctx, bson.M{})
		if err != nil {
			return nil, err
		}
		if err := b.floor.Prepare(ctx, c, size); err != nil {
			return nil, err
		}
		if r.IdleBaseline == nil {
			b.quiesce(ctx, r)
			r.IdleBaseline, r.IdleBaselineCores = b.idleBaseline(ctx, 2*time.Second)
		}
		add := func(name, floorName string, op, fop Op) {
			if !cfg.selected(name) {
				return
			}
			b.quiesce(ctx, r)
			// The floor's lookups scan as many documents as the service's.
			if n, err := b.tickets.CountDocuments(ctx, bson.M{}); err == nil {
				if err := b.floor.Pad(ctx, n); err != nil {
					r.Notes = append(r.Notes, "floor padding: "+err.Error())
				}
			}
			fm := b.begin(ctx)
			fl := b.run(ctx, floorName, c, fop)
			fc := b.floorCost(ctx, fm, fl)
			b.quiesce(ctx, r)
			m := b.begin(ctx)
			h := b.run(ctx, name, c, op)
			cost := b.finish(ctx, m, h)
			b.log.Info("cost", "workload", name, "c", c, "tailS", fmt.Sprintf("%.1f", cost.TailS), "idle", cost.Idle,
				"cpuMsPerRequest", fmt.Sprintf("%.2f", cost.SystemCPUms), "storeCmdsPerRequest", fmt.Sprintf("%.2f", cost.StoreCmdsPerRq), "duplicates", cost.Duplicates)
			r.Workloads = append(r.Workloads, Workload{Name: name, Concurrency: c, HTTP: h, FloorName: floorName, Floor: fl, FloorCost: fc, Ratio: Ratio(h.RPS, fl.RPS), Cost: cost})
		}
		add("POST /api/tickets", "insert+publish", func(ctx context.Context, w int) error {
			_, err := b.api.CreateTicket(ctx, b.seller, "bench ticket", 20)
			return err
		}, b.floor.InsertPublish)
		add("GET /api/tickets/:id", "find by id", func(ctx context.Context, w int) error {
			_, err := b.api.GetTicket(ctx, own[w].ID)
			return err
		}, b.floor.Find)
		var n [1024]int
		add("PUT /api/tickets/:id", "cond. update+publish", func(ctx context.Context, w int) error {
			n[w]++
			_, err := b.api.UpdateTicket(ctx, b.seller, own[w].ID, fmt.Sprintf("bench %d", n[w]), float64(10+n[w]%90))
			return err
		}, b.floor.UpdatePublish)
		add("POST+DELETE /api/orders", "2x write+publish", func(ctx context.Context, w int) error {
			o, err := b.api.CreateOrder(ctx, b.buyer, orderTickets[w].ID)
			if err != nil {
				return err
			}
			return b.api.CancelOrder(ctx, b.buyer, o.ID)
		}, b.floor.OrderCycle)
	}
	// Convergence and the lower rates first: a rate the system cannot keep
	// up with leaves a backlog behind.
	if !cfg.selected("propagation") {
		cfg.Rates, cfg.ConvRounds = nil, 0
	}
	if cfg.ConvRounds > 0 {
		b.settle(ctx, r)
		ct, err := b.newTickets(ctx, cfg.ConvRounds, true)
		if err != nil {
			return nil, err
		}
		r.Convergence = RunConvergence(ctx, b.api, b.seller, b.replica, ct, cfg.ConvUpdates)
	}
	rates := append([]int(nil), cfg.Rates...)
	sort.Ints(rates)
	for _, rate := range rates {
		b.settle(ctx, r)
		pt, err := b.newTickets(ctx, 20, true)
		if err != nil {
			return nil, err
		}
		p, err := RunPropagation(ctx, b.api, b.seller, b.replica, pt, rate, cfg.PropDuration)
		if err != nil {
			return nil, err
		}
		b.log.Info("propagation", "rate", rate, "p50ms", p.P50ms, "p99ms", p.P99ms, "unconverged", p.Unconverged)
		r.Propagation = append(r.Propagation, *p)
	}
	r.RSS = mon.Stop()
	for name := range b.cpu.Missing {
		r.Notes = append(r.Notes, "process "+name+" could not be read at some point (exited?): its CPU stopped being counted")
	}
	if r.Counts, err = b.counts(ctx); err != nil {
		return nil, err
	}
	r.DurationS = time.Since(r.StartedAt).Round(time.Second).Seconds()
	r.Evaluate()
	return r, nil
}

// selected tells whether the workload name is to run (Config.Only).
func (c Config) selected(name string) bool {
	if len(c.Only) == 0 {
		return true
	}
	name = strings.ToLower(name)
	for _, o := range c.Only {
		if strings.Contains(name, o) {
			return true
		}
	}
	return false
}

// settle waits (at most 45 s) until no document of the service databases
// has pending outbox entries and the orders replica holds every ticket at
// its version, so that one run's event backlog does not slow the next.
func (b *Bench) settle(ctx context.Context, r *Report) {
	start := time.Now()
	deadline := start.Add(45 * time.Second)
	for {
		n, err := b.backlog(ctx)
		if err == nil && n == 0 {
			var lag int
			if lag, err = b.replicaLag(ctx); err == nil && lag > 0 {
				n, err = int64(lag), fmt.Errorf("%d tickets behind in the orders replica", lag)
			}
		}
		if err == nil && n == 0 {
			if d := time.Since(start); d > time.Second {
				b.log.Info("settled", "after", d.Round(time.Millisecond))
			}
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			why := "documents with pending outbox entries"
			if err != nil {
				why = err.Error()
			}
			r.Notes = append(r.Notes, fmt.Sprintf("system not settled after %s: %d %s", time.Since(start).Round(time.Second), n, why))
			return
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// replicaLag counts the tickets whose orders replica is missing or behind.
func (b *Bench) replicaLag(ctx context.Context) (int, error) {
	read := func(c *mongo.Collection) (map[any]int64, error) {
		cur, err := c.Find(ctx, bson.M{}, options.Find().SetProjection(bson.M{"version": 1}))
		if err != nil {
			return nil, err
		}
		var docs []struct {
			ID      any   `bson:"_id"`
			Version int64 `bson:"version"`
		}
		if err := cur.All(ctx, &docs); err != nil {
			return nil, err
		}
		m := make(map[any]int64, len(docs))
		for _, d := range docs {
			m[idString(d.ID)] = d.Version
		}
		return m, nil
	}
	src, err := read(b.tickets)
	if err != nil {
		return 0, err
	}
	rep, err := read(b.replica.Coll)
	if err != nil {
		return 0, err
	}
	lag := 0
	for id, v := range src {
		if rv, ok := rep[id]; !ok || rv < v {
			lag++
		}
	}
	return lag, nil
}

// backlog counts the outbox entries not published in the collections the
// services relay events from, as the relays' stored checkpoints tell
// (outbox.Backlog: it reads every document with entries).
func (b *Bench) backlog(ctx context.Context) (int64, error) {
	relayed := []struct{ db, coll string }{
		{b.cfg.TicketsDB, "tickets"}, {b.cfg.OrdersDB, "orders"}, {"expiration", "expirations"}, {"payments", "payments"},
	}
	var total int64
	for _, r := range relayed {
		n, err := outbox.Backlog(ctx, b.mc.Database(r.db).Collection(r.coll))
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

func (b *Bench) procs() ([]Proc, error) {
	if b.cfg.Procs != "" {
		return ParseProcs(b.cfg.Procs)
	}
	return FindProcs(b.cfg.BinDir)
}

func (b *Bench) store(ctx context.Context) Store {
	s := Store{Label: b.cfg.StoreLabel}
	var info bson.M
	if err := b.mc.Database("admin").RunCommand(ctx, bson.M{"buildInfo": 1}).Decode(&info); err == nil {
		s.Version = fmt.Sprint(info["version"])
		if fv, ok := info["ferretdbVersion"]; ok && fmt.Sprint(fv) != "unknown" {
			s.Version += " (FerretDB " + fmt.Sprint(fv) + ")"
		}
	}
	return s
}

func (b *Bench) counts(ctx context.Context) ([]CollCount, error) {
	dbs, err := b.mc.ListDatabaseNames(ctx, bson.M{})
	if err != nil {
		return nil, err
	}
	sort.Strings(dbs)
	var out []CollCount
	for _, db := range dbs {
		if db == "admin" || db == "local" || db == "config" {
			continue
		}
		colls, err := b.mc.Database(db).ListCollectionNames(ctx, bson.M{})
		if err != nil {
			return nil, err
		}
		sort.Strings(colls)
		for _, c := range colls {
			n, err := b.mc.Database(db).Collection(c).CountDocuments(ctx, bson.M{})
			if err != nil {
				return nil, err
			}
			out = append(out, CollCount{Database: db, Collection: c, Docs: n})
		}
	}
	return out, nil
}

// RSSMonitor samples the RSS of the service processes.
type RSSMonitor struct {
	procs []Proc
	mu    sync.Mutex
	res   []ProcessRSS
	stop  chan struct{}
	done  chan struct{}
}

// StartRSSMonitor records each process's RSS now and its peak until Stop.
func StartRSSMonitor(procs []Proc) *RSSMonitor {
	m := &RSSMonitor{procs: procs, stop: make(chan struct{}), done: make(chan struct{})}
	for _, p := range procs {
		rss, _, _ := procKB(p.PID)
		m.res = append(m.res, ProcessRSS{Name: p.Name, PID: p.PID, StartKB: rss, PeakKB: rss})
	}
	go func() {
		defer close(m.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.sample()
			}
		}
	}()
	return m
}

func (m *RSSMonitor) sample() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.res {
		rss, hwm, err := procKB(m.res[i].PID)
		if err != nil {
			continue
		}
		m.res[i].EndKB = rss
		m.res[i].PeakKB = max(m.res[i].PeakKB, rss, hwm)
	}
}

// Stop takes the last sample (VmHWM covers the peaks between samples).
func (m *RSSMonitor) Stop() []ProcessRSS {
	close(m.stop)
	<-m.done
	m.sample()
	return m.res
}
