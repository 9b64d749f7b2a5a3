package app_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/services/client/internal/app"
)

func TestConfigFromEnv(t *testing.T) {
	env := config.FromMap(map[string]string{"API_URL": "http://ingress/", "PAYMENTS_URL": "http://payments-srv:3000"})
	c, err := app.LoadConfig(env, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 3000 || c.APIURL != "http://ingress" || c.AuthURL != "http://ingress" || c.TicketsURL != "http://ingress" ||
		c.OrdersURL != "http://ingress" || c.PaymentsURL != "http://payments-srv:3000" ||
		c.APITimeout != 10*time.Second || c.StripePublishableKey != "" {
		t.Fatalf("config = %+v", c)
	}

	env = config.FromMap(map[string]string{"PORT": "70000", "TICKETS_URL": "ftp://x", "STRIPE_PUBLISHABLE_KEY": "sk_test_oops"})
	_, err = app.LoadConfig(env, slog.New(slog.DiscardHandler))
	for _, want := range []string{"PORT", "AUTH_URL: not set", "TICKETS_URL: \"ftp://x\" is not an http(s) URL", "STRIPE_PUBLISHABLE_KEY: must be a publishable key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("errors = %v, want one about %s", err, want)
		}
	}
}
