// Package lifecycle starts and stops a service, the same way in every
// service: a service's internal/app package reads its Config and hands Run
// a Wire function that builds the service's parts on the connections.
//
// Start, in this order: connect MongoDB, connect NATS Streaming, wire the
// service, start its relays and workers, serve HTTP, subscribe its
// listeners. A listener that applies an event may write a new one at once,
// so the relays run before the first message comes in.
//
// Shutdown (ctx done, or a part failed), in this order:
//  1. stop accepting: the listener closes and the workers (schedulers,
//     sweeps) stop;
//  2. drain HTTP: requests in flight get Config.ShutdownGrace;
//  3. close the subscriptions: no new message is handled, handlings in
//     flight finish (events.Conn.CloseSubscriptions);
//  4. let the relays publish what 2 and 3 wrote (up to FlushTimeout, while
//     NATS is connected), then stop them; what is left is published by the
//     next process, the outbox keeps it;
//  5. close NATS;
//  6. close MongoDB.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"go.mongodb.org/mongo-driver/mongo"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/httpx"
	"github.com/ticketing-go/ticketing/common/mongox"
)

// Defaults of Config.
const (
	DefaultPort          = 3000
	DefaultShutdownGrace = 10 * time.Second
	// FlushTimeout bounds step 4 of the shutdown.
	FlushTimeout = 5 * time.Second
)

// The names of the readiness checks (/readyz) Run serves, the same in
// every service.
const (
	CheckMongoDB = "mongodb"
	CheckNATS    = "nats"
)

// Config is what Run needs of a service's configuration.
type Config struct {
	Service  string // name in logs, metrics and the NATS client id
	Port     int    // when Run is given no listener
	MongoURI string
	MongoDB  string
	// NoDatabase: a service without a database (the web client); no
	// MongoDB is connected and Deps.DB is nil. Explicit, so that a service
	// with a database and an empty MongoURI still fails at start.
	NoDatabase bool
	// NATS is nil for a service without events (auth).
	NATS          *events.Config
	ShutdownGrace time.Duration
}

// Deps are the connections a service is wired on.
type Deps struct {
	DB     *mongo.Database // nil when Config.NoDatabase
	Events *events.Conn    // nil when Config.NATS is nil
	Log    *slog.Logger
}

// Relay publishes a service's outbox (*outbox.Relay).
type Relay interface {
	Run(ctx context.Context) error
	// Backlog counts the entries written but not yet published.
	Backlog(ctx context.Context) (int64, error)
}

// Parts is what a service's wiring hands to Run.
type Parts struct {
	// Mount adds the service's routes to the base router (httpx.NewRouter:
	// health, readiness, metrics).
	Mount func(chi.Router)
	// Relays publish the service's outboxes.
	Relays []Relay
	// Subscribe subscribes the service's listeners (usually their Start).
	Subscribe func(events.Subscriber) error
	// Workers run until their context is done (schedulers, sweeps); an
	// error other than the context's stops the service.
	Workers []func(context.Context) error
}

// Wire builds a service's parts on its connections. It may do setup work
// (indexes) with ctx.
type Wire func(ctx context.Context, d Deps) (Parts, error)

// Run runs a service until ctx is done or one of its parts fails: see the
// package comment for the order of start and shutdown. It serves HTTP on
// ln, or on cfg.Port when ln is nil. It returns nil after a shutdown asked
// for by ctx.
func Run(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger, wire Wire) error {
	if log == nil {
		log = slog.Default()
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}

	var (
		db    *mongo.Database
		ready []httpx.Check
		err   error
	)
	if !cfg.NoDatabase {
		client, cdb, err := mongox.Connect(ctx, cfg.MongoURI, cfg.MongoDB)
		if err != nil {
			return fmt.Errorf("mongodb: %w", err)
		}
		defer func() { // 6
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = client.Disconnect(dctx)
		}()
		db = cdb
		ready = append(ready, httpx.Check{Name: CheckMongoDB, Fn: mongox.Ping(client)})
	}

	var conn *events.Conn
	if cfg.NATS != nil {
		if conn, err = events.Connect(ctx, *cfg.NATS, log); err != nil {
			return fmt.Errorf("nats: %w", err)
		}
		defer func() { _ = conn.Close() }() // 5
		ready = append(ready, httpx.Check{Name: CheckNATS, Fn: conn.Ready})
	}

	parts, err := wire(ctx, Deps{DB: db, Events: conn, Log: log})
	if err != nil {
		return err
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", ":"+strconv.Itoa(cfg.Port)); err != nil {
			return err
		}
	}

	// stop is called by the first part that fails, and when ctx is done.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		failMu sync.Mutex
		failed error
	)
	fail := func(what string, err error) {
		if err == nil || runCtx.Err() != nil && errors.Is(err, context.Canceled) {
			return
		}
		failMu.Lock()
		if failed == nil {
			failed = fmt.Errorf("%s: %w", what, err)
		}
		failMu.Unlock()
		stop()
	}

	// The relays outlive runCtx: they stop at step 4.
	relayCtx, stopRelays := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelays()
	var relays sync.WaitGroup
	for _, r := range parts.Relays {
		relays.Add(1)
		go func() { defer relays.Done(); fail("outbox relay", r.Run(relayCtx)) }()
	}
	var workers sync.WaitGroup
	for _, w := range parts.Workers {
		workers.Add(1)
		go func() { defer workers.Done(); fail("worker", w(runCtx)) }()
	}

	r := httpx.NewRouter(httpx.RouterOptions{Service: cfg.Service, Log: log, Ready: ready})
	if parts.Mount != nil {
		parts.Mount(r)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		fail("http", httpx.Serve(runCtx, ln, r, cfg.ShutdownGrace, log)) // 1, 2
	}()

	if parts.Subscribe != nil && conn != nil {
		if err := parts.Subscribe(conn); err != nil {
			fail("subscribe", err)
		}
	}

	<-runCtx.Done()
	log.Info("shutting down")
	<-served         // 1, 2
	workers.Wait()   // 1
	if conn != nil { // 3
		conn.CloseSubscriptions()
		if conn.Ready(context.Background()) == nil {
			flush(parts.Relays, log)
		}
	}
	stopRelays() // 4
	relays.Wait()

	failMu.Lock()
	defer failMu.Unlock()
	return failed
}

// flush waits until the relays have published every pending entry, up to
// FlushTimeout.
func flush(relays []Relay, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), FlushTimeout)
	defer cancel()
	for _, r := range relays {
		for {
			n, err := r.Backlog(ctx)
			if err == nil && n == 0 {
				break
			}
			select {
			case <-ctx.Done():
				log.Warn("outbox not empty at shutdown; the next start publishes the rest", "pending", n, "err", err)
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// Handler is the HTTP handler Run serves, for tests that build parts with
// Wire themselves: the base router with ready as readiness checks and the
// service's routes.
func Handler(service string, log *slog.Logger, parts Parts, ready ...httpx.Check) http.Handler {
	r := httpx.NewRouter(httpx.RouterOptions{Service: service, Log: log, Ready: ready})
	if parts.Mount != nil {
		parts.Mount(r)
	}
	return r
}
