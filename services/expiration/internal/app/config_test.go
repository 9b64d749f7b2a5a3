package app

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
)

func TestConfigFromEnv(t *testing.T) {
	env := config.FromMap(map[string]string{"MONGO_URI": "mongodb://m:27017"})
	cfg, err := LoadConfig(env, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MongoDB != "expiration" || cfg.Port != 3000 || cfg.Poll != time.Second {
		t.Fatalf("defaults: %+v", cfg)
	}
	env = config.FromMap(map[string]string{"EXPIRATION_POLL": "soon"})
	_, err = LoadConfig(env, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "MONGO_URI is required") || !strings.Contains(err.Error(), "EXPIRATION_POLL") {
		t.Fatalf("error %v, want MONGO_URI and EXPIRATION_POLL reported together", err)
	}
}
