// Package app wires the expiration service: configuration, MongoDB, NATS
// Streaming, the listener, the scheduler, the outbox relay and the health
// endpoints. main and the tests run the service through Run.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/httpx"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/expiration/internal/listener"
	"github.com/ticketing-go/ticketing/services/expiration/internal/scheduler"
	"github.com/ticketing-go/ticketing/services/expiration/internal/store"
)

// Service is the service's name in logs, metrics and client ids.
const Service = "expiration"

// Config is the service's configuration.
type Config struct {
	Port     string
	MongoURI string
	MongoDB  string
	NATS     events.Config
	// Poll is the longest the scheduler sleeps without looking at the
	// store (it also wakes at the next known expiry and on new schedules).
	Poll time.Duration
	// AckWait of the order subscriptions.
	AckWait time.Duration
	// Retention: how long fired and dropped expirations are kept (as
	// duplicate guards) before they are purged (default 7 days).
	Retention time.Duration
}

// ConfigFromEnv reads the configuration; every problem is in env.Err().
func ConfigFromEnv(env *config.Env) Config {
	return Config{
		Port:      env.String("PORT", "3000"),
		MongoURI:  env.Required("MONGO_URI"),
		MongoDB:   env.String("MONGO_DB", "expiration"),
		NATS:      events.ConfigFromEnv(env, Service),
		Poll:      env.Duration("EXPIRATION_POLL", time.Second),
		AckWait:   env.Duration("ACK_WAIT", events.DefaultAckWait),
		Retention: env.Duration("EXPIRATION_RETENTION", 7*24*time.Hour),
	}
}

// Run serves until ctx is done. A nil ln listens on cfg.Port.
func Run(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger) error {
	client, db, err := mongox.Connect(ctx, cfg.MongoURI, cfg.MongoDB)
	if err != nil {
		return fmt.Errorf("mongodb: %w", err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	st, err := store.New(ctx, db)
	if err != nil {
		return err
	}
	conn, err := events.Connect(ctx, cfg.NATS, log)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer func() { _ = conn.Close() }()

	relay := outbox.NewRelay(st.Coll(), conn, log, outbox.Options{})
	sched := scheduler.New(st, relay.NotifyPending, cfg.Poll, log)
	lst := listener.New(st, sched.WakeFor, log)
	if err := lst.Subscribe(conn, cfg.AckWait, events.Logging(log)); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}

	r := httpx.NewRouter(httpx.RouterOptions{Service: Service, Log: log, Ready: []httpx.Check{
		{Name: "mongodb", Fn: mongox.Ping(client)},
		{Name: "nats", Fn: conn.Ready},
	}})
	if ln == nil {
		if ln, err = net.Listen("tcp", ":"+cfg.Port); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return relay.Run(gctx) })
	g.Go(func() error { return sched.Run(gctx) })
	g.Go(func() error { purge(gctx, st, cfg.Retention, log); return nil })
	g.Go(func() error { return httpx.Serve(gctx, ln, r, 10*time.Second, log) })
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// purge removes old done expirations every hour until ctx is done.
func purge(ctx context.Context, st *store.Store, retention time.Duration, log *slog.Logger) {
	if retention <= 0 {
		retention = 7 * 24 * time.Hour
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := st.Purge(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("purging done expirations", "err", err)
		case n > 0:
			log.Info("purged done expirations", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
