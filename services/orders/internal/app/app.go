// Package app wires the orders service together: configuration from the
// environment, MongoDB, NATS Streaming, the outbox relay, the listeners and
// the HTTP API. main calls it; tests start it in-process.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/httpx"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/orders/internal/httpapi"
	"github.com/ticketing-go/ticketing/services/orders/internal/listeners"
	"github.com/ticketing-go/ticketing/services/orders/internal/store"
)

// Service is the service's name (logs, NATS client id).
const Service = "orders"

// Config is the service's configuration.
type Config struct {
	Port             int
	MongoURI         string
	MongoDB          string
	JWTKey           string
	NATS             events.Config
	ExpirationWindow time.Duration
}

// LoadConfig reads the configuration from env and logs it, secrets masked;
// every problem is reported at once.
func LoadConfig(env *config.Env, log *slog.Logger) (Config, error) {
	c := Config{
		Port:             env.Int("PORT", 3000),
		MongoURI:         env.Required("MONGO_URI"),
		MongoDB:          env.String("MONGO_DB", "orders"),
		JWTKey:           env.Secret("JWT_KEY"),
		NATS:             events.ConfigFromEnv(env, Service),
		ExpirationWindow: env.Duration("EXPIRATION_WINDOW", 15*time.Minute),
	}
	env.Check(c.Port > 0 && c.Port < 65536, "PORT: %d is not a port", c.Port)
	if err := env.Err(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	env.Log(log, "orders config")
	return c, nil
}

// Run runs the service until ctx is done, serving HTTP on ln (when nil, on
// Config.Port).
func Run(ctx context.Context, cfg Config, log *slog.Logger, ln net.Listener) error {
	_, db, err := mongox.Connect(ctx, cfg.MongoURI, cfg.MongoDB)
	if err != nil {
		return fmt.Errorf("mongo: %w", err)
	}
	client := db.Client()
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = client.Disconnect(dctx)
	}()

	conn, err := events.Connect(ctx, cfg.NATS, log)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	// Close, never Unsubscribe: the durable queue groups survive a restart.
	defer conn.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var relay *outbox.Relay
	// A closure: relay is assigned below (it needs the store's collection).
	st := store.New(db, func(id any, pending ...outbox.Entry) { relay.NotifyPending(id, pending...) })
	relay = outbox.NewRelay(st.Orders(), conn, log.With("component", "outbox"), outbox.Options{})
	st.SetTrimmer(relay)
	if err := st.EnsureIndexes(ctx); err != nil {
		return err
	}

	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()

	if err := listeners.Start(conn, listeners.Options{Store: st, Log: log.With("component", "listeners")}); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}

	if ln == nil {
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
		if err != nil {
			return err
		}
	}
	h := httpapi.Handler(httpapi.Options{
		Store: st, JWTKey: []byte(cfg.JWTKey), ExpirationWindow: cfg.ExpirationWindow, Log: log,
		Ready: []httpx.Check{{Name: "mongo", Fn: mongox.Ping(client)}, {Name: "nats", Fn: conn.Ready}},
	})
	err = httpx.Serve(ctx, ln, h, 10*time.Second, log)
	cancel()
	if rerr := <-relayDone; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
		err = rerr
	}
	return err
}
