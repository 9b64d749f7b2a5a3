package app

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/common/outbox"
)

// Service is the service's name in logs, metrics and the NATS client id.
const Service = "payments"

// Config is the service's environment contract.
type Config struct {
	Port          int    // PORT
	MongoURI      string // MONGO_URI, required
	MongoDB       string // MONGO_DB
	JWTKey        string // JWT_KEY, secret, required
	NATS          events.Config
	StripeKey     string // STRIPE_KEY, secret, required: a secret key (sk_...)
	StripeAPIBase string // STRIPE_API_BASE: "" = Stripe's own API
	// StripeTimeout bounds one Stripe call; the payment claim lease is
	// derived from it (STRIPE_TIMEOUT).
	StripeTimeout time.Duration
	AckWait       time.Duration // ACK_WAIT of the order subscriptions
	GapWait       time.Duration // GAP_WAIT: an order event ahead of a gap waits in-process
	// InProgressWait: how long a payment request waits for a concurrent
	// attempt on the same order before answering 409 (not in the
	// environment).
	InProgressWait time.Duration
	// RefundSweep: how often refunds that failed or were cut off by a crash
	// are retried, also once at start (REFUND_SWEEP).
	RefundSweep   time.Duration
	ShutdownGrace time.Duration  // SHUTDOWN_GRACE: requests in flight at SIGTERM
	Outbox        outbox.Options // OUTBOX_DEAD_AFTER (the rest: defaults)
}

// defaults is the one place of the defaults: LoadConfig reads the
// environment over them, and Run fills a zero field of a Config built in
// code (tests) from them.
var defaults = Config{
	Port:           lifecycle.DefaultPort,
	MongoDB:        Service,
	StripeTimeout:  20 * time.Second,
	AckWait:        events.DefaultAckWait,
	GapWait:        events.DefaultGapWait,
	InProgressWait: 5 * time.Second,
	RefundSweep:    time.Minute,
	ShutdownGrace:  lifecycle.DefaultShutdownGrace,
}

// LoadConfig reads the configuration from env and logs it, secrets masked;
// every problem is reported at once.
func LoadConfig(env *config.Env, log *slog.Logger) (Config, error) {
	d := defaults
	c := Config{
		Port:           env.Int("PORT", d.Port),
		MongoURI:       env.Required("MONGO_URI"),
		MongoDB:        env.String("MONGO_DB", d.MongoDB),
		JWTKey:         env.Secret("JWT_KEY"),
		NATS:           events.ConfigFromEnv(env, Service),
		StripeKey:      env.Secret("STRIPE_KEY"),
		StripeAPIBase:  env.String("STRIPE_API_BASE", ""),
		StripeTimeout:  env.Duration("STRIPE_TIMEOUT", d.StripeTimeout),
		InProgressWait: d.InProgressWait,
		RefundSweep:    env.Duration("REFUND_SWEEP", d.RefundSweep),
		ShutdownGrace:  env.Duration("SHUTDOWN_GRACE", d.ShutdownGrace),
		Outbox:         outbox.OptionsFromEnv(env),
	}
	c.AckWait, c.GapWait = events.WaitsFromEnv(env)
	env.Check(c.Port > 0 && c.Port < 1<<16, "PORT: %d is not a TCP port", c.Port)
	env.Check(!strings.HasPrefix(c.StripeKey, "pk_"), "STRIPE_KEY: a publishable key (pk_...) cannot charge; use a secret key (sk_...)")
	if c.StripeAPIBase != "" {
		u, err := url.Parse(c.StripeAPIBase)
		env.Check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "",
			"STRIPE_API_BASE: %q is not an http(s) URL", c.StripeAPIBase)
	}
	if err := env.Err(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	env.Log(log, "config")
	return c, nil
}

// withDefaults fills the zero fields from defaults.
func (c Config) withDefaults() Config {
	d := defaults
	if c.Port == 0 {
		c.Port = d.Port
	}
	if c.MongoDB == "" {
		c.MongoDB = d.MongoDB
	}
	if c.StripeTimeout <= 0 {
		c.StripeTimeout = d.StripeTimeout
	}
	if c.AckWait <= 0 {
		c.AckWait = d.AckWait
	}
	if c.GapWait <= 0 {
		c.GapWait = d.GapWait
	}
	if c.InProgressWait <= 0 {
		c.InProgressWait = d.InProgressWait
	}
	if c.RefundSweep <= 0 {
		c.RefundSweep = d.RefundSweep
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	return c
}
