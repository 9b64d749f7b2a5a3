// Package service wires the tickets service together: configuration from
// the environment, MongoDB, NATS Streaming, the outbox relay, the event
// listeners and the HTTP API. main calls Run; tests call New with servers of
// their own.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/mongo"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/httpx"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/tickets/internal/httpapi"
	"github.com/ticketing-go/ticketing/services/tickets/internal/listeners"
	"github.com/ticketing-go/ticketing/services/tickets/internal/store"
)

// Name is the service's name in logs, metrics and the NATS client id.
const Name = "tickets"

// shutdownGrace is how long requests in flight get to finish on SIGTERM.
const shutdownGrace = 10 * time.Second

// Config is the service's environment contract.
type Config struct {
	Port     int           // PORT, default 3000
	MongoURI string        // MONGO_URI, required
	MongoDB  string        // MONGO_DB, default "tickets"
	JWTKey   string        // JWT_KEY, secret, required
	NATS     events.Config // NATS_URL, NATS_CLUSTER_ID, NATS_CLIENT_ID (see events.ConfigFromEnv)
}

// ConfigFromEnv reads the Config; problems are recorded in env (env.Err).
func ConfigFromEnv(env *config.Env) Config {
	c := Config{
		Port:     env.Int("PORT", 3000),
		MongoURI: env.Required("MONGO_URI"),
		MongoDB:  env.String("MONGO_DB", "tickets"),
		JWTKey:   env.Secret("JWT_KEY"),
		NATS:     events.ConfigFromEnv(env, Name),
	}
	env.Check(c.Port > 0 && c.Port < 1<<16, "PORT: %d is not a TCP port", c.Port)
	return c
}

// Events is what the service needs of the NATS connection (*events.Conn).
type Events interface {
	listeners.Subscriber
	outbox.Publisher
}

// Deps are the connected dependencies of a Service.
type Deps struct {
	DB     *mongo.Database
	Events Events
	Key    []byte // JWT key
	Log    *slog.Logger
	Ready  []httpx.Check // readiness checks of the connections
	Listen listeners.Options
	Relay  outbox.Options
}

// Service is a running tickets service minus its HTTP listener.
type Service struct {
	Handler http.Handler // the API with health, readiness and metrics
	Relay   *outbox.Relay
	Store   *store.Store
}

// New builds the service on d and subscribes its listeners. The relay does
// not run until Run is called.
func New(d Deps) (*Service, error) {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if len(d.Key) == 0 {
		return nil, errors.New("tickets: empty JWT key")
	}
	relay := outbox.NewRelay(d.DB.Collection(store.Collection), d.Events, d.Log, d.Relay)
	st := store.New(d.DB, relay)
	if err := listeners.New(st, d.Log, d.Listen).Subscribe(d.Events); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	r := httpx.NewRouter(httpx.RouterOptions{Service: Name, Log: d.Log, Ready: d.Ready})
	httpapi.New(st, d.Key, d.Log).Mount(r)
	return &Service{Handler: r, Relay: relay, Store: st}, nil
}

// Run publishes the outbox until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	err := s.Relay.Run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Run runs the service configured by cfg until ctx is done: connects
// MongoDB and NATS, serves HTTP on cfg.Port, relays the outbox, and shuts
// down in the reverse order (HTTP drains, then the relay stops, then the
// NATS connection closes letting handlers in flight finish).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	client, db, err := mongox.Connect(ctx, cfg.MongoURI, cfg.MongoDB)
	if err != nil {
		return fmt.Errorf("mongodb: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = client.Disconnect(dctx)
	}()
	conn, err := events.Connect(ctx, cfg.NATS, log)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer conn.Close()

	svc, err := New(Deps{
		DB: db, Events: conn, Key: []byte(cfg.JWTKey), Log: log,
		Ready: []httpx.Check{{Name: "mongodb", Fn: mongox.Ping(client)}, {Name: "nats", Fn: conn.Ready}},
	})
	if err != nil {
		return err
	}
	if err := svc.Store.EnsureIndexes(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	relayDone := make(chan error, 1)
	go func() { relayDone <- svc.Run(relayCtx) }()

	serveErr := httpx.Serve(ctx, ln, svc.Handler, shutdownGrace, log)
	// The relay outlives the HTTP drain so that the events of the last
	// requests go out now rather than after the next start.
	stopRelay()
	relayErr := <-relayDone
	return errors.Join(serveErr, relayErr)
}
