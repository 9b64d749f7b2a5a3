package app

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/common/outbox"
)

// Service is the service's name in logs, metrics and the NATS client id.
const Service = "expiration"

// Config is the service's environment contract.
type Config struct {
	Port     int    // PORT
	MongoURI string // MONGO_URI, required
	MongoDB  string // MONGO_DB
	NATS     events.Config
	// Poll is the longest the scheduler sleeps without looking at the
	// store (it also wakes at the next known expiry and on new schedules)
	// (EXPIRATION_POLL).
	Poll time.Duration
	// AckWait of the order subscriptions (ACK_WAIT).
	AckWait time.Duration
	// Retention: how long fired and dropped expirations are kept (as
	// duplicate guards) before they are purged (EXPIRATION_RETENTION).
	Retention     time.Duration
	ShutdownGrace time.Duration  // SHUTDOWN_GRACE: requests in flight at SIGTERM
	Outbox        outbox.Options // OUTBOX_DEAD_AFTER (the rest: defaults)
}

// defaults is the one place of the defaults: LoadConfig reads the
// environment over them, and Run fills a zero field of a Config built in
// code (tests) from them.
var defaults = Config{
	Port:          lifecycle.DefaultPort,
	MongoDB:       Service,
	Poll:          time.Second,
	AckWait:       events.DefaultAckWait,
	Retention:     7 * 24 * time.Hour,
	ShutdownGrace: lifecycle.DefaultShutdownGrace,
}

// LoadConfig reads the configuration from env and logs it, secrets masked;
// every problem is reported at once.
func LoadConfig(env *config.Env, log *slog.Logger) (Config, error) {
	d := defaults
	c := Config{
		Port:          env.Int("PORT", d.Port),
		MongoURI:      env.Required("MONGO_URI"),
		MongoDB:       env.String("MONGO_DB", d.MongoDB),
		NATS:          events.ConfigFromEnv(env, Service),
		Poll:          env.Duration("EXPIRATION_POLL", d.Poll),
		AckWait:       env.Duration("ACK_WAIT", d.AckWait),
		Retention:     env.Duration("EXPIRATION_RETENTION", d.Retention),
		ShutdownGrace: env.Duration("SHUTDOWN_GRACE", d.ShutdownGrace),
		Outbox:        outbox.OptionsFromEnv(env),
	}
	env.Check(c.Port > 0 && c.Port < 1<<16, "PORT: %d is not a TCP port", c.Port)
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
	if c.Poll <= 0 {
		c.Poll = d.Poll
	}
	if c.AckWait <= 0 {
		c.AckWait = d.AckWait
	}
	if c.Retention <= 0 {
		c.Retention = d.Retention
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	return c
}
