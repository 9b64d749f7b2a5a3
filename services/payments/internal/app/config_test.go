package app

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/ticketing-go/ticketing/common/config"
)

func TestConfigFromEnv(t *testing.T) {
	valid := map[string]string{"MONGO_URI": "mongodb://m:27017", "JWT_KEY": "k", "STRIPE_KEY": "sk_test_1"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range valid {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name string
		env  map[string]string
		want string // substring of the error; "" = valid
	}{
		{"valid", valid, ""},
		{"stripe-mock base", with("STRIPE_API_BASE", "http://localhost:12111"), ""},
		{"no stripe key", with("STRIPE_KEY", ""), "STRIPE_KEY is required"},
		{"publishable key", with("STRIPE_KEY", "pk_test_1"), "publishable key"},
		{"bad base", with("STRIPE_API_BASE", "localhost:12111"), "STRIPE_API_BASE"},
		{"no jwt key", with("JWT_KEY", ""), "JWT_KEY is required"},
		{"no mongo", with("MONGO_URI", ""), "MONGO_URI is required"},
		{"gap wait past ack wait", with("GAP_WAIT", "10s"), "must be less than ACK_WAIT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := LoadConfig(config.FromMap(c.env), slog.New(slog.DiscardHandler))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one about %q", err, c.want)
			}
			if c.want == "" && (cfg.MongoDB != "payments" || cfg.Port != 3000) {
				t.Fatalf("defaults: %+v", cfg)
			}
		})
	}
}
