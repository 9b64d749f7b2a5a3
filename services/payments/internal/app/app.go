// Package app wires the payments service: configuration, MongoDB, NATS
// Streaming, Stripe, the outbox relay, the listener, the refund sweep and
// the HTTP server.
// main and the tests run the service through Run.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/httpx"
	"github.com/ticketing-go/ticketing/common/metrics"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/payments/internal/api"
	"github.com/ticketing-go/ticketing/services/payments/internal/domain"
	"github.com/ticketing-go/ticketing/services/payments/internal/listener"
	"github.com/ticketing-go/ticketing/services/payments/internal/store"
	"github.com/ticketing-go/ticketing/services/payments/internal/stripe"
)

// Service is the service's name in logs, metrics and client ids.
const Service = "payments"

// Config is the service's configuration.
type Config struct {
	Port          string
	MongoURI      string
	MongoDB       string
	JWTKey        []byte
	NATS          events.Config
	StripeKey     string
	StripeAPIBase string // "" = Stripe's own API
	// StripeTimeout bounds one Stripe call; the payment claim lease is
	// derived from it.
	StripeTimeout time.Duration
	// AckWait of the order subscriptions.
	AckWait time.Duration
	// GapWait: how long an order event ahead of a gap waits in-process.
	GapWait time.Duration
	// InProgressWait: how long a payment request waits for a concurrent
	// attempt on the same order before answering 409 (default 5s).
	InProgressWait time.Duration
	// RefundSweep: how often refunds that failed or were cut off by a crash
	// are retried (default 1m; also once at start).
	RefundSweep time.Duration
}

// ConfigFromEnv reads the configuration; every problem is in env.Err().
func ConfigFromEnv(env *config.Env) Config {
	c := Config{
		Port:          env.String("PORT", "3000"),
		MongoURI:      env.Required("MONGO_URI"),
		MongoDB:       env.String("MONGO_DB", "payments"),
		JWTKey:        []byte(env.Secret("JWT_KEY")),
		NATS:          events.ConfigFromEnv(env, Service),
		StripeKey:     env.Secret("STRIPE_KEY"),
		StripeAPIBase: env.String("STRIPE_API_BASE", ""),
		StripeTimeout: env.Duration("STRIPE_TIMEOUT", 20*time.Second),
		AckWait:       env.Duration("ACK_WAIT", events.DefaultAckWait),
		GapWait:       env.Duration("GAP_WAIT", 5*time.Second),
		RefundSweep:   env.Duration("REFUND_SWEEP", time.Minute),
	}
	env.Check(c.GapWait < c.AckWait, "GAP_WAIT (%s) must be less than ACK_WAIT (%s): an event waiting for its predecessor would be redelivered while it waits", c.GapWait, c.AckWait)
	env.Check(!strings.HasPrefix(c.StripeKey, "pk_"), "STRIPE_KEY: a publishable key (pk_...) cannot charge; use a secret key (sk_...)")
	if c.StripeAPIBase != "" {
		u, err := url.Parse(c.StripeAPIBase)
		env.Check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "",
			"STRIPE_API_BASE: %q is not an http(s) URL", c.StripeAPIBase)
	}
	return c
}

// Run serves on ln until ctx is done. A nil ln listens on cfg.Port.
func Run(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger) error {
	if cfg.StripeTimeout <= 0 {
		cfg.StripeTimeout = 20 * time.Second
	}
	if cfg.GapWait <= 0 {
		cfg.GapWait = 5 * time.Second
	}
	if cfg.InProgressWait <= 0 {
		cfg.InProgressWait = 5 * time.Second
	}
	if cfg.RefundSweep <= 0 {
		cfg.RefundSweep = time.Minute
	}
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

	relay := outbox.NewRelay(st.Payments.Coll(), conn, log, outbox.Options{})
	st.Payments.Notify = relay.NotifyPending

	// One budget bounds a charge with the SDK's retry and the writes after
	// it; the claim outlives it, so a live attempt is never taken over, and
	// a waiting request plus a charge fit in the server's 30s write timeout.
	chargeTimeout := cfg.StripeTimeout + 5*time.Second
	svc := &domain.Service{
		Orders:         st.Orders,
		Payments:       st.Payments,
		Charger:        stripe.New(cfg.StripeKey, cfg.StripeAPIBase, cfg.StripeTimeout),
		Log:            log,
		Lease:          2 * chargeTimeout,
		WaitInProgress: cfg.InProgressWait,
		ChargeTimeout:  chargeTimeout,
	}
	lst := listener.New(st.Orders, svc, cfg.GapWait, log)
	if err := lst.Subscribe(conn, cfg.AckWait, events.Logging(log)); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}

	r := httpx.NewRouter(httpx.RouterOptions{Service: Service, Log: log, Ready: []httpx.Check{
		{Name: "mongodb", Fn: mongox.Ping(client)},
		{Name: "nats", Fn: conn.Ready},
	}})
	api.Mount(r, svc, cfg.JWTKey, log)

	if ln == nil {
		if ln, err = net.Listen("tcp", ":"+cfg.Port); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return relay.Run(gctx) })
	g.Go(func() error { return httpx.Serve(gctx, ln, r, 10*time.Second, log) })
	g.Go(func() error { sweepRefunds(gctx, svc, cfg.RefundSweep, log); return nil })
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
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
