// Package app is the web client's configuration (config.go) and wiring
// (this file): main calls Run, and so do the tests. The client has no
// database and no events: it is an HTTP service in front of the public API,
// started and stopped by common/lifecycle like every other service
// (lifecycle.Config.NoDatabase).
package app

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/services/client/internal/api"
	"github.com/ticketing-go/ticketing/services/client/internal/web"
)

// Run runs the service until ctx is done, serving HTTP on ln (on cfg.Port
// when ln is nil).
func Run(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger) error {
	cfg = cfg.withDefaults()
	return lifecycle.Run(ctx, lifecycle.Config{
		Service: Service, Port: cfg.Port, NoDatabase: true, ShutdownGrace: cfg.ShutdownGrace,
	}, ln, log, func(ctx context.Context, d lifecycle.Deps) (lifecycle.Parts, error) {
		return Wire(cfg, d)
	})
}

// Wire builds the service's parts.
func Wire(cfg Config, d lifecycle.Deps) (lifecycle.Parts, error) {
	cfg = cfg.withDefaults()
	if cfg.AuthURL == "" || cfg.TicketsURL == "" || cfg.OrdersURL == "" || cfg.PaymentsURL == "" {
		return lifecycle.Parts{}, errors.New("client: no API URL")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	client := api.New(api.Bases{
		Auth: cfg.AuthURL, Tickets: cfg.TicketsURL, Orders: cfg.OrdersURL, Payments: cfg.PaymentsURL,
	}, cfg.APITimeout)
	site, err := web.New(client, web.Options{StripePublishableKey: cfg.StripePublishableKey, Log: d.Log})
	if err != nil {
		return lifecycle.Parts{}, err
	}
	return lifecycle.Parts{Mount: site.Mount}, nil
}
