// Package app is the tickets service's configuration (config.go) and
// wiring (this file): main calls Run, and so do the tests, with servers of
// their own; tests that need to hold a part back call Wire. The start and
// shutdown order is common/lifecycle's.
//
// Where things happen: a ticket event is written with the ticket
// (internal/store, in the ticket's outbox), published by the outbox relay
// started here, received and applied in internal/listeners.
package app

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/tickets/internal/httpapi"
	"github.com/ticketing-go/ticketing/services/tickets/internal/listeners"
	"github.com/ticketing-go/ticketing/services/tickets/internal/store"
)

// Run runs the service until ctx is done, serving HTTP on ln (on cfg.Port
// when ln is nil).
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
	if cfg.JWTKey == "" {
		return lifecycle.Parts{}, errors.New("tickets: empty JWT key")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	relay := outbox.NewRelay(d.DB.Collection(store.Collection), d.Events, d.Log.With("component", "outbox"), cfg.Outbox)
	st := store.New(d.DB, relay)
	if err := st.EnsureIndexes(ctx); err != nil {
		return lifecycle.Parts{}, err
	}
	return lifecycle.Parts{
		Mount:  httpapi.New(st, []byte(cfg.JWTKey), d.Log).Mount,
		Relays: []lifecycle.Relay{relay},
		Subscribe: func(sub events.Subscriber) error {
			return listeners.Start(sub, listeners.Options{
				Tickets: st, Log: d.Log.With("component", "listeners"),
				AckWait: cfg.AckWait, MaxDeliveries: cfg.MaxDeliveries, GapWait: cfg.GapWait, CancelWait: cfg.CancelWait,
			})
		},
	}, nil
}
