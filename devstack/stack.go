package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/testenv/stripemock"
)

// DevJWTKey is the signing key used when JWT_KEY is not set. It is public
// (it is in this file), so it is only ever used by the local stack.
const DevJWTKey = "dev-only-insecure-jwt-key-change-me"

// Service is a service the stack knows how to run.
type Service struct {
	Name   string // directory under services/ and binary name
	Prefix string // path the proxy routes to it, as the ingress does; "" for none; "/" for everything else (the web client)
}

// DefaultServices are the services of the system, in start order.
var DefaultServices = []Service{
	{Name: "auth", Prefix: "/api/users"},
	{Name: "tickets", Prefix: "/api/tickets"},
	{Name: "orders", Prefix: "/api/orders"},
	{Name: "expiration"},
	{Name: "payments", Prefix: "/api/payments"},
	// Last: the web client calls the others through the proxy, as a
	// browser does, and serves every path no API prefix takes.
	{Name: "client", Prefix: "/"},
}

// Options configures Run. The zero value of a port means "any free port".
type Options struct {
	Root     string       // repository root (where go.work is); "" finds it from the working directory
	DataDir  string       // NATS and MongoDB data and binaries; "" is Root/.data
	Addr     string       // the proxy's address
	Listener net.Listener // if set, the proxy serves on it instead of Addr (tests)

	MongoURI  string // external MongoDB; "" runs the stand-in
	MongoPort int    // stand-in port
	Bus       string // EVENT_BUS: "stan" (NATS Streaming, the default) or "jetstream"
	NATSURL   string // external NATS server; "" runs one in-process (of Bus)
	NATSPort  int
	CacheDir  string // where stripe-mock is built once; "": DataDir
	ClusterID string
	JWTKey    string

	Services  []Service     // nil: DefaultServices
	BaseEnv   []string      // environment the children inherit; nil: os.Environ()
	StopGrace time.Duration // SIGTERM to kill; 0: 10s
	Log       *slog.Logger
	Out       io.Writer // the children's prefixed output; nil: os.Stdout
}

// OptionsFromEnv reads the stack's configuration from the environment
// (JWT_KEY aside: the caller reads it, so that it is never logged).
func OptionsFromEnv(env *config.Env, log *slog.Logger) (Options, error) {
	o := Options{
		Addr:      strings.TrimPrefix(env.String("DEV_ADDR", "localhost:8080"), "http://"),
		DataDir:   env.String("DEV_DATA_DIR", ""),
		MongoURI:  env.String("MONGO_URI", ""),
		MongoPort: env.Int("DEV_MONGO_PORT", 27017),
		Bus:       env.String("EVENT_BUS", events.BusStan),
		NATSURL:   env.String("NATS_URL", ""),
		NATSPort:  env.Int("DEV_NATS_PORT", 4222),
		ClusterID: env.String("NATS_CLUSTER_ID", "ticketing"),
	}
	env.Check(o.MongoPort >= 0 && o.MongoPort < 65536, "DEV_MONGO_PORT: not a port")
	env.Check(o.NATSPort >= 0 && o.NATSPort < 65536, "DEV_NATS_PORT: not a port")
	env.Check(o.Bus == events.BusStan || o.Bus == events.BusJetStream, "EVENT_BUS: %q is not %q or %q", o.Bus, events.BusStan, events.BusJetStream)
	if err := env.Err(); err != nil {
		return o, err
	}
	env.Log(log, "dev stack config")
	return o, nil
}

func (o *Options) defaults() error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Root == "" {
		root, err := findRoot()
		if err != nil {
			return err
		}
		o.Root = root
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(o.Root, ".data")
	}
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return err
	}
	o.DataDir = abs
	if o.Services == nil {
		o.Services = DefaultServices
	}
	if o.BaseEnv == nil {
		o.BaseEnv = os.Environ()
	}
	if o.StopGrace == 0 {
		o.StopGrace = 10 * time.Second
	}
	if o.ClusterID == "" {
		o.ClusterID = "ticketing"
	}
	if o.Bus == "" {
		o.Bus = events.BusStan
	}
	if o.JWTKey == "" {
		o.JWTKey = DevJWTKey
		o.Log.Warn("JWT_KEY is not set: using the PUBLIC dev-only default key; set JWT_KEY for anything but local development")
	}
	return nil
}

// findRoot walks up from the working directory to the directory holding go.work.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.work not found above the working directory; run from the repository")
		}
		dir = parent
	}
}

// Run starts the stack and blocks until ctx is done (then stops everything
// and returns nil) or something fails (a child exits, a server cannot
// start): then it stops everything and returns the error. Nothing is
// restarted silently.
func Run(ctx context.Context, o Options) error {
	err := runStack(ctx, o)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil // stopped while starting: what the user asked for
	}
	return err
}

func runStack(ctx context.Context, o Options) (err error) {
	if err := o.defaults(); err != nil {
		return err
	}
	log := o.Log
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return err
	}

	// Infrastructure first; stopped last (deferred in reverse order).
	natsURL := o.NATSURL
	if natsURL == "" && o.Bus == events.BusJetStream {
		js, err := startJetStream(filepath.Join(o.DataDir, "jetstream"), o.NATSPort)
		if err != nil {
			return err
		}
		defer func() { js.Shutdown(); js.WaitForShutdown(); log.Info("nats jetstream stopped") }()
		natsURL = js.ClientURL()
		log.Info("nats jetstream started (in-process)", "url", natsURL, "store", filepath.Join(o.DataDir, "jetstream"))
	} else if natsURL == "" {
		ns, err := startNATS(filepath.Join(o.DataDir, "nats"), o.NATSPort, o.ClusterID)
		if err != nil {
			return err
		}
		defer func() { ns.Shutdown(); log.Info("nats streaming stopped") }()
		natsURL = ns.ClientURL()
		log.Info("nats streaming started (in-process)", "url", natsURL, "cluster", o.ClusterID, "store", filepath.Join(o.DataDir, "nats"))
	} else {
		log.Info("using external nats", "bus", o.Bus, "url", config.MaskURL(natsURL))
	}
	mongoURI := o.MongoURI
	if mongoURI == "" {
		uri, stop, err := startMongo(ctx, filepath.Join(o.DataDir, "mongo"), o.MongoPort, log)
		if err != nil {
			return err
		}
		defer func() {
			if err := stop(); err != nil {
				log.Error("mongodb stand-in stop", "err", err)
			} else {
				log.Info("mongodb stand-in stopped")
			}
		}()
		mongoURI = uri
		log.Info("mongodb stand-in started (in-process)", "uri", uri, "data", filepath.Join(o.DataDir, "mongo"))
	} else {
		log.Info("using external mongodb", "uri", config.MaskURL(mongoURI))
	}

	svcs, err := discover(o.Root, o.Services, log)
	if err != nil {
		return err
	}
	if len(svcs) == 0 {
		log.Warn("no service has a main package yet; serving the proxy only")
	}
	bins, err := build(ctx, o.Root, filepath.Join(o.DataDir, "bin"), svcs, log)
	if err != nil {
		return err
	}

	sup := newSupervisor(o.Out, log)
	defer sup.stopAll(o.StopGrace)
	stripeEnv, err := o.stripe(ctx, svcs, sup)
	if err != nil {
		return err
	}
	// The proxy's address is known before the services start: the web
	// client is told to call the APIs through it (API_URL).
	ln := o.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", o.Addr); err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
	}
	proxyURL := "http://" + ln.Addr().String()
	backends := map[string]string{} // service name -> base URL
	for _, s := range svcs {
		port, err := freePort()
		if err != nil {
			return err
		}
		env := append(append([]string{}, o.BaseEnv...),
			"PORT="+strconv.Itoa(port),
			"MONGO_URI="+withDatabase(mongoURI, s.Name),
			"MONGO_DB="+s.Name,
			"EVENT_BUS="+o.Bus,
			"NATS_URL="+natsURL,
			"NATS_CLUSTER_ID="+o.ClusterID,
			"HOSTNAME="+s.Name, // NATS client ids read "<service>-<random>"
			"JWT_KEY="+o.JWTKey,
			"COOKIE_SECURE=false", // the stack is served over plain http
			"TRUSTED_PROXIES=1",   // the proxy below appends X-Forwarded-For
		)
		if v, ok := lookup(o.BaseEnv, "LOG_FORMAT"); !ok || v == "" {
			env = append(env, "LOG_FORMAT=text")
		}
		switch s.Name {
		case "payments":
			env = append(env, stripeEnv...)
		case "client":
			env = append(env, "API_URL="+proxyURL)
		}
		if err := sup.start(s.Name, o.Root, env, bins[s.Name]); err != nil {
			return err
		}
		backends[s.Name] = "http://127.0.0.1:" + strconv.Itoa(port)
		log.Info("service started", "service", s.Name, "url", backends[s.Name], "pid", sup.pid(s.Name))
	}

	proxy := newProxy(o.Root, o.Services, backends, log)
	pctx, stopProxy := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProxy()
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- serveProxy(pctx, ln, proxy, log) }()
	go func() {
		if err := waitHealthy(ctx, backends, sup); err == nil {
			log.Info("dev stack ready", "url", proxyURL, "services", names(svcs))
		}
	}()

	select {
	case <-ctx.Done():
		log.Info("stopping the dev stack")
	case ex := <-sup.exited:
		err = fmt.Errorf("service %s exited unexpectedly (%v); stopping the stack, nothing is restarted", ex.name, ex.err)
		log.Error(err.Error())
	case perr := <-proxyDone:
		return fmt.Errorf("proxy: %w", perr)
	}
	stopProxy()
	if perr := <-proxyDone; perr != nil && err == nil {
		err = fmt.Errorf("proxy: %w", perr)
	}
	return err
}

// stripe decides how payments reaches Stripe: with STRIPE_KEY set, as the
// environment says (real Stripe test mode, or STRIPE_API_BASE); otherwise
// through stripe-mock, run as one more child process.
func (o *Options) stripe(ctx context.Context, svcs []Service, sup *supervisor) ([]string, error) {
	if !slices.ContainsFunc(svcs, func(s Service) bool { return s.Name == "payments" }) {
		return nil, nil
	}
	if key, _ := lookup(o.BaseEnv, "STRIPE_KEY"); key != "" {
		o.Log.Info("payments uses STRIPE_KEY and STRIPE_API_BASE from the environment")
		return nil, nil
	}
	if base, _ := lookup(o.BaseEnv, "STRIPE_API_BASE"); base != "" {
		o.Log.Info("payments uses STRIPE_API_BASE from the environment with a test key", "base", base)
		return []string{"STRIPE_KEY=" + DevStripeKey}, nil
	}
	cache := o.CacheDir
	if cache == "" {
		cache = o.DataDir
	}
	sm, err := stripemock.Build(ctx, cache, "go", o.Log)
	if err != nil {
		return nil, fmt.Errorf("stripe-mock: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := sup.start("stripe-mock", o.Root, o.BaseEnv, sm.Bin, "-http-addr", addr,
		// Without this stripe-mock also serves HTTPS on :12112 on every interface.
		"-https-addr", "127.0.0.1:", "-fixtures", sm.Fixtures); err != nil {
		return nil, err
	}
	o.Log.Info("stripe-mock started for payments (STRIPE_KEY not set)", "url", "http://"+addr)
	return []string{"STRIPE_KEY=" + DevStripeKey, "STRIPE_API_BASE=http://" + addr}, nil
}

// withDatabase returns uri with its path set to db, so that a service that
// reads only MONGO_URI uses its own database too.
func withDatabase(uri, db string) string {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "mongodb" && u.Scheme != "mongodb+srv") {
		return uri
	}
	u.Path = "/" + db
	u.RawPath = ""
	return u.String()
}

func lookup(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func names(svcs []Service) []string {
	out := make([]string, len(svcs))
	for i, s := range svcs {
		out[i] = s.Name
	}
	return out
}
