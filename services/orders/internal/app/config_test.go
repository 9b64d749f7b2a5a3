package app_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/services/orders/internal/app"
)

func TestLoadConfig(t *testing.T) {
	base := func() map[string]string {
		return map[string]string{"MONGO_URI": "mongodb://u:pw@db:27017", "JWT_KEY": "s3cret"}
	}
	t.Run("defaults", func(t *testing.T) {
		var out bytes.Buffer
		c, err := app.LoadConfig(config.FromMap(base()), slog.New(slog.NewTextHandler(&out, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if c.Port != 3000 || c.MongoDB != "orders" || c.ExpirationWindow != 15*time.Minute || c.JWTKey != "s3cret" ||
			c.NATS.ClusterID != "ticketing" || c.NATS.ClientID == "" {
			t.Fatalf("config = %+v", c)
		}
		if strings.Contains(out.String(), "s3cret") || strings.Contains(out.String(), ":pw@") {
			t.Fatalf("secret logged: %s", out.String())
		}
	})
	t.Run("window", func(t *testing.T) {
		env := base()
		env["EXPIRATION_WINDOW"] = "90s"
		c, err := app.LoadConfig(config.FromMap(env), slog.New(slog.DiscardHandler))
		if err != nil || c.ExpirationWindow != 90*time.Second {
			t.Fatalf("%+v %v", c, err)
		}
	})
	for _, bad := range []struct{ name, key, value, want string }{
		{"no mongo", "MONGO_URI", "", "MONGO_URI is required"},
		{"no jwt key", "JWT_KEY", "", "JWT_KEY is required"},
		{"bad window", "EXPIRATION_WINDOW", "soon", "EXPIRATION_WINDOW"},
		{"negative window", "EXPIRATION_WINDOW", "-1m", "EXPIRATION_WINDOW"},
		{"bad port", "PORT", "70000", "PORT"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			env := base()
			env[bad.key] = bad.value
			_, err := app.LoadConfig(config.FromMap(env), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Fatalf("err = %v, want it to mention %q", err, bad.want)
			}
		})
	}
}
