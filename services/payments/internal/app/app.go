// Package app is the payments service's configuration (config.go) and
// wiring (this file): main calls Run, and so do the tests, with servers of
// their own. The start and shutdown order is common/lifecycle's.
//
// Where things happen: payment:created is written with the payment
// (internal/store, in the payment's outbox) by domain.Service.Pay, and
// published by the outbox relay started here; order events are received
// and applied to the order replica in internal/listeners.
package app

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/common/metrics"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/payments/internal/domain"
	"github.com/ticketing-go/ticketing/services/payments/internal/httpapi"
	"github.com/ticketing-go/ticketing/services/payments/internal/listeners"
	"github.com/ticketing-go/ticketing/services/payments/internal/store"
	"github.com/ticketing-go/ticketing/services/payments/internal/stripe"
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
	relay := outbox.NewRelay(d.DB.Collection(store.PaymentsCollection), d.Events, d.Log.With("component", "outbox"), cfg.Outbox)
	st, err := store.New(ctx, d.DB, relay)
	if err != nil {
		return lifecycle.Parts{}, err
	}

	// One budget bounds a charge with the SDK's retry and the writes after
	// it; the claim outlives it, so a live attempt is never taken over, and
	// a waiting request plus a charge fit in the server's 30s write timeout.
	chargeTimeout := cfg.StripeTimeout + 5*time.Second
	svc := &domain.Service{
		Orders:         st.Orders,
		Payments:       st.Payments,
		Charger:        stripe.New(cfg.StripeKey, cfg.StripeAPIBase, cfg.StripeTimeout),
		Log:            d.Log,
		Lease:          2 * chargeTimeout,
		WaitInProgress: cfg.InProgressWait,
		ChargeTimeout:  chargeTimeout,
	}
	return lifecycle.Parts{
		Mount:  httpapi.New(svc, []byte(cfg.JWTKey), d.Log).Mount,
		Relays: []lifecycle.Relay{relay},
		Subscribe: func(sub events.Subscriber) error {
			return listeners.Start(sub, listeners.Options{
				Replica: st.Orders, Refunder: svc, Log: d.Log.With("component", "listeners"),
				AckWait: cfg.AckWait, GapWait: cfg.GapWait,
			})
		},
		Workers: []func(context.Context) error{
			func(ctx context.Context) error { sweepRefunds(ctx, svc, cfg.RefundSweep, d.Log); return nil },
		},
	}, nil
}

var refundSweeps = metrics.NewCounter(metrics.CounterOpts{
	Name: "payments_refund_sweeps_total",
	Help: "Refund sweeps run to the end (each retries every refund marked due), failed or not.",
})

// sweepRefunds retries the refunds marked due (see domain.Service.RefundDue)
// at start and every interval until ctx is done.
func sweepRefunds(ctx context.Context, svc *domain.Service, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := svc.RefundDue(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("retrying due refunds", "refunded", n, "err", err)
		}
		refundSweeps.Inc()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
