// Command loadgen is the benchmark of the ticketing services (make bench):
// HTTP workloads next to their floor (the raw driver operations and
// acknowledged publishes they stand on, measured in the same run against
// the same servers), what each workload cost until the system was idle
// again (CPU per request of every process from /proc, store commands,
// duplicate deliveries, the tail after the window), event propagation to the orders
// replica, convergence of rapid updates, peak RSS of each service and the
// document counts of the store. It only talks to loopback addresses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config is the bench's configuration: flags, defaulted from BENCH_* env.
type Config struct {
	BaseURL, AuthURL, TicketsURL, OrdersURL string
	MongoURI                                string
	TicketsDB, TicketsColl                  string
	OrdersDB, ReplicaColl                   string
	FloorDB                                 string
	NATSURL, NATSCluster                    string
	EventBus                                string // events.Config.Bus: "stan" or "jetstream"
	Concurrency                             []int
	Run, Warmup                             time.Duration
	PropDuration                            time.Duration
	ConvRounds, ConvUpdates                 int
	// Only, when not empty, limits the run to the HTTP workloads whose name
	// contains one of these (case-insensitive), and skips convergence and
	// propagation unless "propagation" is one of them: for profiling one
	// workload.
	Only       []string
	Procs      string
	BinDir     string
	OutDir     string
	StoreLabel string
	Direct     bool
	Rates      []int
	// The processes whose CPU is counted besides the services (found in
	// BinDir): the dev stack (default: the services' parent), the store
	// (mongo-standin) and PostgreSQL's postmaster (with its backends).
	DevstackPID, StorePID, PostgresPID int
	// StoreCountsURL: the stand-in's cumulative command counts
	// (mongo-standin -counts-listen .../counts); "" when not available.
	StoreCountsURL string
	// Idle: the system's processes use under IdleCores (of one core) over
	// IdleWindow; IdleCap bounds the wait after a run ("not idle").
	IdleCores  float64
	IdleWindow time.Duration
	IdleCap    time.Duration
}

func env(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

// ParseConcurrency parses "1,16,64".
func ParseConcurrency(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("bad concurrency %q", p)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no concurrency given")
	}
	return out, nil
}

func parseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&c.BaseURL, "base", env("BENCH_BASE_URL", "http://127.0.0.1:8080"), "base URL of the stack's proxy (BENCH_BASE_URL)")
	fs.StringVar(&c.AuthURL, "auth-url", env("BENCH_AUTH_URL", ""), "auth service base URL (default: -base)")
	fs.StringVar(&c.TicketsURL, "tickets-url", env("BENCH_TICKETS_URL", ""), "tickets service base URL (default: -base)")
	fs.StringVar(&c.OrdersURL, "orders-url", env("BENCH_ORDERS_URL", ""), "orders service base URL (default: -base)")
	fs.StringVar(&c.MongoURI, "mongo", env("BENCH_MONGO_URI", env("MONGO_URI", "mongodb://127.0.0.1:27017")), "MongoDB URI of the services' server (BENCH_MONGO_URI, MONGO_URI)")
	fs.StringVar(&c.TicketsDB, "tickets-db", env("BENCH_TICKETS_DB", "tickets"), "tickets service database")
	fs.StringVar(&c.TicketsColl, "tickets-coll", env("BENCH_TICKETS_COLL", "tickets"), "tickets collection")
	fs.StringVar(&c.OrdersDB, "orders-db", env("BENCH_ORDERS_DB", "orders"), "orders service database")
	fs.StringVar(&c.ReplicaColl, "replica-coll", env("BENCH_REPLICA_COLL", "tickets"), "orders' ticket replica collection")
	fs.StringVar(&c.FloorDB, "floor-db", env("BENCH_FLOOR_DB", "loadgen_floor"), "database for the floor measurements")
	fs.StringVar(&c.NATSURL, "nats", env("BENCH_NATS_URL", env("NATS_URL", "nats://127.0.0.1:4222")), "NATS Streaming URL (BENCH_NATS_URL, NATS_URL)")
	fs.StringVar(&c.NATSCluster, "cluster", env("BENCH_NATS_CLUSTER_ID", env("NATS_CLUSTER_ID", "ticketing")), "NATS Streaming cluster id")
	fs.StringVar(&c.EventBus, "bus", env("EVENT_BUS", "stan"), "the services' event bus: stan or jetstream (EVENT_BUS)")
	conc := fs.String("c", env("BENCH_CONCURRENCY", "16"), "concurrency levels (e.g. 1,16,64)")
	fs.DurationVar(&c.Run, "d", durEnv("BENCH_RUN", 10*time.Second), "measured duration of each run (the window)")
	fs.DurationVar(&c.Warmup, "warmup", durEnv("BENCH_WARMUP", 300*time.Millisecond), "unmeasured warm-up of each run")
	rates := fs.String("rates", env("BENCH_RATES", "200,20"), "steady update rates of the propagation runs (updates/s)")
	fs.DurationVar(&c.PropDuration, "prop-d", durEnv("BENCH_PROP", 5*time.Second), "duration of the propagation run")
	fs.IntVar(&c.ConvRounds, "conv-rounds", 5, "convergence rounds")
	fs.IntVar(&c.ConvUpdates, "conv-updates", 30, "rapid updates per convergence round")
	fs.StringVar(&c.Procs, "procs", env("BENCH_PROCS", ""), "service processes to watch, name=pid,... (default: the processes running binaries of -bin-dir)")
	fs.StringVar(&c.BinDir, "bin-dir", env("BENCH_BIN_DIR", ".data/bin"), "directory of the devstack's service binaries")
	fs.StringVar(&c.OutDir, "out", env("BENCH_OUT", "bench/out"), "output directory")
	fs.StringVar(&c.StoreLabel, "store", env("BENCH_STORE", "MongoDB-protocol server"), "label of the store in the report")
	fs.BoolVar(&c.Direct, "direct", env("BENCH_VIA_PROXY", "") == "", "send requests straight to the service processes found in -bin-dir (their PORT), not through -base (BENCH_VIA_PROXY=1 turns it off)")
	fs.IntVar(&c.DevstackPID, "devstack-pid", intEnv("BENCH_DEVSTACK_PID", 0), "pid of the dev stack, which runs NATS Streaming (default: the parent of the service processes)")
	fs.IntVar(&c.StorePID, "store-pid", intEnv("BENCH_STORE_PID", 0), "pid of the store's server (mongo-standin)")
	fs.IntVar(&c.PostgresPID, "pg-pid", intEnv("BENCH_PG_PID", 0), "pid of the PostgreSQL postmaster behind the store (its backends are counted with it)")
	fs.StringVar(&c.StoreCountsURL, "store-counts", env("BENCH_STORE_COUNTS_URL", ""), "URL of the stand-in's command counts (mongo-standin -counts-listen, path /counts)")
	fs.Float64Var(&c.IdleCores, "idle-cpu", floatEnv("BENCH_IDLE_CPU", 0.05), "idle: the system's processes use less than this much of one core ...")
	fs.DurationVar(&c.IdleWindow, "idle-window", durEnv("BENCH_IDLE_WINDOW", 500*time.Millisecond), "... over this long")
	fs.DurationVar(&c.IdleCap, "idle-cap", durEnv("BENCH_IDLE_CAP", 120*time.Second), "longest wait for idle after a run (then reported as not idle)")
	only := fs.String("only", env("BENCH_ONLY", ""), "comma-separated parts of workload names to run (\"PUT\", \"orders\", \"propagation\"); default all (BENCH_ONLY)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, o := range strings.Split(*only, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.Only = append(c.Only, strings.ToLower(o))
		}
	}
	var err error
	if c.Concurrency, err = ParseConcurrency(*conc); err != nil {
		return c, err
	}
	if c.Rates, err = ParseConcurrency(*rates); err != nil {
		return c, fmt.Errorf("rates: %w", err)
	}
	for _, p := range []*string{&c.AuthURL, &c.TicketsURL, &c.OrdersURL} {
		if *p == "" {
			*p = c.BaseURL
		}
		*p = strings.TrimRight(*p, "/")
	}
	if c.IdleWindow <= 0 || c.IdleCap <= 0 || c.IdleCores <= 0 {
		return c, errors.New("idle settings must be positive")
	}
	if c.StoreCountsURL != "" {
		if err := Loopback(c.StoreCountsURL); err != nil {
			return c, err
		}
	}
	if c.Run <= 0 || c.PropDuration <= 0 {
		return c, errors.New("durations and rate must be positive")
	}
	for _, u := range []string{c.AuthURL, c.TicketsURL, c.OrdersURL, c.MongoURI, c.NATSURL} {
		if err := Loopback(u); err != nil {
			return c, err
		}
	}
	return c, nil
}

func intEnv(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

func floatEnv(name string, def float64) float64 {
	if f, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && f > 0 {
		return f
	}
	return def
}

func durEnv(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// Loopback refuses a URL whose hosts are not loopback addresses: the
// bench generates real load and must never be pointed at another machine.
func Loopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL %q: %w", raw, err)
	}
	// mongodb:// URIs may list several hosts.
	for _, hp := range strings.Split(u.Host, ",") {
		host := hp
		if h, _, err := net.SplitHostPort(hp); err == nil {
			host = h
		}
		if host == "localhost" {
			continue
		}
		ip := net.ParseIP(strings.Trim(host, "[]"))
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%q is not a loopback address: the bench runs only against this machine", hp)
		}
	}
	return nil
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], log); err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	if len(args) > 0 {
		switch args[0] {
		case "reset":
			return reset(ctx, args[1:])
		}
	}
	cfg, err := parseConfig(args)
	if err != nil {
		return err
	}
	b, err := NewBench(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer b.Close()
	rep, err := b.Run(ctx)
	if err != nil {
		return err
	}
	rep.WriteText(os.Stdout)
	return writeOutputs(cfg.OutDir, rep)
}

func writeOutputs(dir string, rep *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	write := func(name string, fn func(f *os.File) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := write("bench.json", func(f *os.File) error { return rep.WriteJSON(f) }); err != nil {
		return err
	}
	if err := write("bench.md", func(f *os.File) error { rep.WriteMarkdown(f); return nil }); err != nil {
		return err
	}
	if err := write("latency.svg", func(f *os.File) error { return rep.WriteSVG(f) }); err != nil {
		return err
	}
	fmt.Printf("\nwritten: %s/{bench.json,bench.md,latency.svg}\n", dir)
	return nil
}

func hostInfo() Host {
	return Host{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
}
