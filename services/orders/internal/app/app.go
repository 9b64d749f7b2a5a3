// Package app is the orders service's configuration (config.go) and wiring
// (this file): main calls Run, and so do the tests, with servers of their
// own. The start and shutdown order is common/lifecycle's.
//
// Where things happen: an order event is written with the order
// (internal/store, in the order's outbox), published by the outbox relay
// started here, received and applied in internal/listeners.
package app

import (
	"context"
	"log/slog"
	"net"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/orders/internal/httpapi"
	"github.com/ticketing-go/ticketing/services/orders/internal/listeners"
	"github.com/ticketing-go/ticketing/services/orders/internal/store"
)

// Run runs the service until ctx is done, serving HTTP on ln (on cfg.Port
// when ln is nil).
func Run(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger) error {
	cfg = cfg.withDefaults()
	return lifecycle.Run(ctx, lifecycle.Config{
		Service: Service, Port: cfg.Port, MongoURI: cfg.MongoURI, MongoDB: cfg.MongoDB,
		NATS: &cfg.NATS, ShutdownGrace: cfg.ShutdownGrace,
	}, ln, log, func(ctx context.Context, d lifecycle.Deps) (lifecycle.Parts, error) {
		return wire(ctx, cfg, d)
	})
}

func wire(ctx context.Context, cfg Config, d lifecycle.Deps) (lifecycle.Parts, error) {
	relay := outbox.NewRelay(d.DB.Collection(store.OrdersCollection), d.Events, d.Log.With("component", "outbox"), cfg.Outbox)
	st := store.New(d.DB, relay)
	if err := st.EnsureIndexes(ctx); err != nil {
		return lifecycle.Parts{}, err
	}
	api := httpapi.New(httpapi.Options{Store: st, JWTKey: []byte(cfg.JWTKey), ExpirationWindow: cfg.ExpirationWindow, Log: d.Log})
	return lifecycle.Parts{
		Mount:  api.Mount,
		Relays: []lifecycle.Relay{relay},
		Subscribe: func(sub events.Subscriber) error {
			return listeners.Start(sub, listeners.Options{
				Store: st, Log: d.Log.With("component", "listeners"), AckWait: cfg.AckWait, MaxWait: cfg.GapWait,
			})
		},
	}, nil
}
