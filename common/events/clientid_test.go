package events

import (
	"strings"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
)

func TestNewClientID(t *testing.T) {
	cases := []struct {
		hostname, service, wantPrefix string
	}{
		{"orders-depl-7d9f8c6b5-x2k4q", "orders", "orders-depl-7d9f8c6b5-x2k4q-"},
		{"", "orders", "orders-"},
		{"my.host.local", "tickets", "my-host-local-"},
		{"", "ticket service/1", "ticket-service-1-"},
		{"", "", "client-"},
		{"üñí", "x", "----"},
	}
	for _, c := range cases {
		a := newClientID(c.hostname, c.service)
		b := newClientID(c.hostname, c.service)
		if !strings.HasPrefix(a, c.wantPrefix) {
			t.Errorf("newClientID(%q, %q) = %q, want prefix %q", c.hostname, c.service, a, c.wantPrefix)
		}
		if a == b {
			t.Errorf("two ids for %q are equal: %q", c.service, a)
		}
		if !ValidClientID(a) {
			t.Errorf("newClientID(%q, %q) = %q is not a valid client id", c.hostname, c.service, a)
		}
		if len(a) != len(c.wantPrefix)+8 {
			t.Errorf("suffix of %q is not 8 hex digits", a)
		}
	}
	t.Setenv("HOSTNAME", "pod-1")
	if id := NewClientID("orders"); !strings.HasPrefix(id, "pod-1-") {
		t.Errorf("NewClientID ignores HOSTNAME: %q", id)
	}
}

func TestValidClientID(t *testing.T) {
	for id, want := range map[string]bool{
		"orders-1": true, "a_B-9": true, "": false, "a.b": false, "a b": false, "a:b": false, "a*": false,
	} {
		if got := ValidClientID(id); got != want {
			t.Errorf("ValidClientID(%q) = %v", id, got)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := config.FromMap(map[string]string{"NATS_URL": "nats://nats:4222", "NATS_PING_INTERVAL": "2s"})
	c := ConfigFromEnv(env, "tickets")
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if c.URL != "nats://nats:4222" || c.ClusterID != "ticketing" || !ValidClientID(c.ClientID) || c.PingInterval != 2*time.Second || c.PingMaxOut != DefaultPingMaxOut {
		t.Fatalf("config = %+v", c)
	}

	if c.Bus != BusStan || c.Stream != (StreamConfig{Replicas: 1, MaxBytes: DefaultStreamMaxBytes, DuplicateWindow: DefaultStreamDuplicateWindow}) {
		t.Fatalf("defaults: bus %q, stream %+v", c.Bus, c.Stream)
	}

	env = config.FromMap(map[string]string{"EVENT_BUS": "jetstream", "NATS_JS_REPLICAS": "3", "NATS_JS_MAX_BYTES": "1048576",
		"NATS_JS_MAX_AGE": "72h", "NATS_JS_DUPLICATE_WINDOW": "5m"})
	c = ConfigFromEnv(env, "tickets")
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Bus != BusJetStream || c.Stream != (StreamConfig{Replicas: 3, MaxBytes: 1 << 20, MaxAge: 72 * time.Hour, DuplicateWindow: 5 * time.Minute}) {
		t.Fatalf("jetstream: bus %q, stream %+v", c.Bus, c.Stream)
	}

	env = config.FromMap(map[string]string{"EVENT_BUS": "kafka", "NATS_JS_REPLICAS": "7", "NATS_JS_MAX_BYTES": "0",
		"NATS_JS_MAX_AGE": "1m", "NATS_JS_DUPLICATE_WINDOW": "2m"})
	ConfigFromEnv(env, "tickets")
	err := env.Err()
	for _, name := range []string{"EVENT_BUS", "NATS_JS_REPLICAS", "NATS_JS_MAX_BYTES", "NATS_JS_DUPLICATE_WINDOW"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("env.Err() = %v, want a problem with %s", err, name)
		}
	}

	env = config.FromMap(map[string]string{"NATS_CLIENT_ID": "bad id!", "NATS_PING_MAX_OUT": "1"})
	ConfigFromEnv(env, "tickets")
	if err := env.Err(); err == nil || !strings.Contains(err.Error(), "NATS_CLIENT_ID") || !strings.Contains(err.Error(), "NATS_PING_MAX_OUT") {
		t.Fatalf("env.Err() = %v, want both problems", err)
	}
}
