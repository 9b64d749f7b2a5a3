package config_test

import (
	"bytes"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
)

func TestValuesAndDefaults(t *testing.T) {
	env := config.FromMap(map[string]string{
		"PORT": " 3000 ", "WINDOW": "15m", "DEBUG": "true", "NAME": "orders", "BLANK": "   ",
	})
	if got := env.Int("PORT", 80); got != 3000 {
		t.Errorf("Int = %d", got)
	}
	if got := env.Int("MISSING_INT", 7); got != 7 {
		t.Errorf("Int default = %d", got)
	}
	if got := env.Duration("WINDOW", time.Minute); got != 15*time.Minute {
		t.Errorf("Duration = %v", got)
	}
	if got := env.Duration("MISSING_D", time.Minute); got != time.Minute {
		t.Errorf("Duration default = %v", got)
	}
	if got := env.Bool("DEBUG", false); !got {
		t.Error("Bool = false")
	}
	if got := env.String("NAME", "x"); got != "orders" {
		t.Errorf("String = %q", got)
	}
	if got := env.String("BLANK", "def"); got != "def" {
		t.Errorf("a blank value must count as unset: %q", got)
	}
	if err := env.Err(); err != nil {
		t.Fatalf("Err = %v", err)
	}
}

func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	env := config.FromMap(map[string]string{"PORT": "eighty", "WINDOW": "-5s", "DEBUG": "maybe", "TIMEOUT": "soon"})
	env.Int("PORT", 80)
	env.Duration("WINDOW", time.Minute)
	env.Duration("TIMEOUT", time.Minute)
	env.Bool("DEBUG", false)
	env.Required("MONGO_URI")
	env.Secret("JWT_KEY")
	env.Check(false, "EXPIRATION_WINDOW must be below %s", "1h")
	err := env.Err()
	if err == nil {
		t.Fatal("Err = nil")
	}
	for _, want := range []string{"PORT", "WINDOW", "TIMEOUT", "DEBUG", "MONGO_URI is required", "JWT_KEY is required", "EXPIRATION_WINDOW must be below 1h"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %q lacks %q", err, want)
		}
	}
}

func TestLogMasksSecrets(t *testing.T) {
	env := config.FromMap(map[string]string{
		"JWT_KEY": "super-secret", "MONGO_URI": "mongodb://app:hunter2@mongo:27017/orders", "NATS_URL": "nats://nats:4222",
	})
	env.Secret("JWT_KEY")
	env.Required("MONGO_URI")
	env.String("NATS_URL", "")
	var buf bytes.Buffer
	env.Log(slog.New(slog.NewTextHandler(&buf, nil)), "config")
	out := buf.String()
	if strings.Contains(out, "super-secret") || strings.Contains(out, "hunter2") {
		t.Fatalf("secret in log: %s", out)
	}
	for _, want := range []string{"JWT_KEY=***", "mongodb://app:***@mongo:27017/orders", "nats://nats:4222"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}

func TestMaskURL(t *testing.T) {
	cases := map[string]string{
		"mongodb://u:p@h:1/db":      "mongodb://u:***@h:1/db",
		"mongodb://u@h/db":          "mongodb://u@h/db",
		"mongodb://h/db":            "mongodb://h/db",
		"not a url":                 "not a url",
		"nats://a:b@c:4222":         "nats://a:***@c:4222",
		"mongodb://u:p@ss@h/db":     "mongodb://u:***@h/db",
		"postgres://u:p@h/db?x=y@z": "postgres://u:***@h/db?x=y@z",
	}
	for in, want := range cases {
		if got := config.MaskURL(in); got != want {
			t.Errorf("MaskURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Without GOGC in the environment the services collect at ServiceGOGC;
// with it, Go's own setting stands.
func TestSetServiceGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	if v, ok := os.LookupEnv("GOGC"); ok {
		defer os.Setenv("GOGC", v)
	}
	os.Unsetenv("GOGC")
	config.SetServiceGC()
	if got := debug.SetGCPercent(100); got != config.ServiceGOGC {
		t.Fatalf("GC percent %d without GOGC, want %d", got, config.ServiceGOGC)
	}
	t.Setenv("GOGC", "100")
	config.SetServiceGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC percent %d with GOGC=100, want it left alone", got)
	}
}
