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
const Service = "orders"

// Config is the service's environment contract.
type Config struct {
	Port     int    // PORT
	MongoURI string // MONGO_URI, required
	MongoDB  string // MONGO_DB
	JWTKey   string // JWT_KEY, secret, required
	NATS     events.Config
	// ExpirationWindow is how long an order holds its ticket
	// (EXPIRATION_WINDOW).
	ExpirationWindow time.Duration
	AckWait          time.Duration  // ACK_WAIT of the subscriptions
	GapWait          time.Duration  // GAP_WAIT: an early ticket update waits in-process for its predecessor
	ShutdownGrace    time.Duration  // SHUTDOWN_GRACE: requests in flight at SIGTERM
	Outbox           outbox.Options // OUTBOX_DEAD_AFTER (the rest: defaults)
}

// defaults is the one place of the defaults: LoadConfig reads the
// environment over them, and Run fills a zero field of a Config built in
// code (tests) from them.
var defaults = Config{
	Port:             lifecycle.DefaultPort,
	MongoDB:          Service,
	ExpirationWindow: 15 * time.Minute,
	AckWait:          events.DefaultAckWait,
	GapWait:          events.DefaultGapWait,
	ShutdownGrace:    lifecycle.DefaultShutdownGrace,
}

// LoadConfig reads the configuration from env and logs it, secrets masked;
// every problem is reported at once.
func LoadConfig(env *config.Env, log *slog.Logger) (Config, error) {
	d := defaults
	c := Config{
		Port:             env.Int("PORT", d.Port),
		MongoURI:         env.Required("MONGO_URI"),
		MongoDB:          env.String("MONGO_DB", d.MongoDB),
		JWTKey:           env.Secret("JWT_KEY"),
		NATS:             events.ConfigFromEnv(env, Service),
		ExpirationWindow: env.Duration("EXPIRATION_WINDOW", d.ExpirationWindow),
		ShutdownGrace:    env.Duration("SHUTDOWN_GRACE", d.ShutdownGrace),
		Outbox:           outbox.OptionsFromEnv(env),
	}
	c.AckWait, c.GapWait = events.WaitsFromEnv(env)
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
	if c.ExpirationWindow <= 0 {
		c.ExpirationWindow = d.ExpirationWindow
	}
	if c.AckWait <= 0 {
		c.AckWait = d.AckWait
	}
	if c.GapWait <= 0 {
		c.GapWait = d.GapWait
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	return c
}
