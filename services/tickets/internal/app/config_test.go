package app_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/services/tickets/internal/app"
)

func TestConfigFromEnv(t *testing.T) {
	env := config.FromMap(map[string]string{"MONGO_URI": "mongodb://m:27017", "JWT_KEY": "k", "NATS_CLIENT_ID": "tickets-1"})
	c, err := app.LoadConfig(env, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 3000 || c.MongoDB != "tickets" || c.MongoURI != "mongodb://m:27017" || c.JWTKey != "k" ||
		c.NATS.ClientID != "tickets-1" || c.NATS.ClusterID != "ticketing" || c.NATS.URL == "" {
		t.Fatalf("config = %+v", c)
	}

	env = config.FromMap(map[string]string{"PORT": "70000"})
	_, err = app.LoadConfig(env, slog.New(slog.DiscardHandler))
	for _, want := range []string{"MONGO_URI is required", "JWT_KEY is required", "PORT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("errors = %v, want one about %s", err, want)
		}
	}
}
