// Package app is the expiration service's configuration (config.go) and
// wiring (this file): main calls Run, and so do the tests, with servers of
// their own. The start and shutdown order is common/lifecycle's.
//
// Where things happen: order events are received and applied in
// internal/listeners (an expiration scheduled or dropped); the scheduler
// (internal/scheduler) fires a due expiration, which writes
// expiration:complete in the expiration's outbox (internal/store); the
// outbox relay started here publishes it.
package app

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/expiration/internal/listeners"
	"github.com/ticketing-go/ticketing/services/expiration/internal/scheduler"
	"github.com/ticketing-go/ticketing/services/expiration/internal/store"
)

// Run runs the service until ctx is done, serving HTTP (health, readiness,
// metrics) on ln (on cfg.Port when ln is nil).
func Run(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger) error {
	cfg = cfg.withDefaults()
	return lifecycle.Run(ctx, lifecycle.Config{
		Service: Service, Port: cfg.Port, MongoURI: cfg.MongoURI, MongoDB: cfg.MongoDB,
		NATS: &cfg.NATS, ShutdownGrace: cfg.ShutdownGrace,
	}, ln, log, func(ctx context.Context, d lifecycle.Deps) (lifecycle.Parts, error) {
		return Wire(ctx, cfg, d)
	})
}

// Wire builds the service's parts on d.
func Wire(ctx context.Context, cfg Config, d lifecycle.Deps) (lifecycle.Parts, error) {
	cfg = cfg.withDefaults()
	relay := outbox.NewRelay(d.DB.Collection(store.Collection), d.Events, d.Log.With("component", "outbox"), cfg.Outbox)
	st, err := store.New(ctx, d.DB, relay)
	if err != nil {
		return lifecycle.Parts{}, err
	}
	sched := scheduler.New(st, cfg.Poll, d.Log)
	return lifecycle.Parts{
		Relays: []lifecycle.Relay{relay},
		Subscribe: func(sub events.Subscriber) error {
			return listeners.Start(sub, listeners.Options{
				Store: st, Wake: sched.WakeFor, Log: d.Log.With("component", "listeners"), AckWait: cfg.AckWait,
			})
		},
		Workers: []func(context.Context) error{
			sched.Run,
			func(ctx context.Context) error { purge(ctx, st, cfg.Retention, d.Log); return nil },
		},
	}, nil
}

// purge removes old done expirations every hour until ctx is done.
func purge(ctx context.Context, st *store.Store, retention time.Duration, log *slog.Logger) {
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
