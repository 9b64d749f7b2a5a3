package app

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/lifecycle"
)

// Service is the service's name in logs and metrics.
const Service = "client"

// Config is the service's environment contract.
type Config struct {
	Port int // PORT
	// APIURL is where the public API is, as a browser reaches it (API_URL,
	// required unless the four below are all set): the ingress or the
	// local stack's proxy. The client calls <APIURL>/api/users/... and so
	// on, exactly the routes a browser would.
	APIURL string
	// Per-service bases (AUTH_URL, TICKETS_URL, ORDERS_URL, PAYMENTS_URL),
	// each defaulting to APIURL: in Kubernetes the client calls the
	// Services directly rather than going out to the ingress and back.
	AuthURL     string
	TicketsURL  string
	OrdersURL   string
	PaymentsURL string

	APITimeout time.Duration // API_TIMEOUT: bound of one API call
	// StripePublishableKey (STRIPE_PUBLISHABLE_KEY, pk_...): when set, the
	// order page collects the card with Stripe.js (Payment Element); when
	// empty, it offers Stripe's test payment methods (pm_card_visa, ...),
	// which is what stripe-mock and a Stripe test-mode secret key accept.
	// A publishable key is public by design (it is in every page), so it
	// is logged like any other value.
	StripePublishableKey string
	ShutdownGrace        time.Duration // SHUTDOWN_GRACE: requests in flight at SIGTERM
}

// defaults is the one place of the defaults: LoadConfig reads the
// environment over them, and Run fills a zero field of a Config built in
// code (tests) from them.
var defaults = Config{
	Port:          lifecycle.DefaultPort,
	APITimeout:    10 * time.Second,
	ShutdownGrace: lifecycle.DefaultShutdownGrace,
}

// LoadConfig reads the configuration from env and logs it; every problem is
// reported at once.
func LoadConfig(env *config.Env, log *slog.Logger) (Config, error) {
	d := defaults
	c := Config{
		Port:                 env.Int("PORT", d.Port),
		APIURL:               strings.TrimRight(env.String("API_URL", ""), "/"),
		APITimeout:           env.Duration("API_TIMEOUT", d.APITimeout),
		StripePublishableKey: env.String("STRIPE_PUBLISHABLE_KEY", ""),
		ShutdownGrace:        env.Duration("SHUTDOWN_GRACE", d.ShutdownGrace),
	}
	c.AuthURL = strings.TrimRight(env.String("AUTH_URL", c.APIURL), "/")
	c.TicketsURL = strings.TrimRight(env.String("TICKETS_URL", c.APIURL), "/")
	c.OrdersURL = strings.TrimRight(env.String("ORDERS_URL", c.APIURL), "/")
	c.PaymentsURL = strings.TrimRight(env.String("PAYMENTS_URL", c.APIURL), "/")
	env.Check(c.Port > 0 && c.Port < 1<<16, "PORT: %d is not a TCP port", c.Port)
	for name, v := range map[string]string{"AUTH_URL": c.AuthURL, "TICKETS_URL": c.TicketsURL, "ORDERS_URL": c.OrdersURL, "PAYMENTS_URL": c.PaymentsURL} {
		env.Check(v != "", "%s: not set, and API_URL (its default) is not set either", name)
		if v != "" {
			env.Check(isHTTPURL(v), "%s: %q is not an http(s) URL", name, v)
		}
	}
	env.Check(c.APITimeout > 0, "API_TIMEOUT: must be positive")
	env.Check(c.StripePublishableKey == "" || strings.HasPrefix(c.StripePublishableKey, "pk_"),
		"STRIPE_PUBLISHABLE_KEY: must be a publishable key (pk_...); never put a secret key in a page")
	if err := env.Err(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	env.Log(log, "config")
	return c, nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// withDefaults fills the zero fields from defaults (and the per-service
// bases from APIURL).
func (c Config) withDefaults() Config {
	d := defaults
	if c.Port == 0 {
		c.Port = d.Port
	}
	if c.APITimeout <= 0 {
		c.APITimeout = d.APITimeout
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	for _, p := range []*string{&c.AuthURL, &c.TicketsURL, &c.OrdersURL, &c.PaymentsURL} {
		if *p == "" {
			*p = c.APIURL
		}
	}
	return c
}
