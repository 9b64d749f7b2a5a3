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
const Service = "tickets"

// Config is the service's environment contract.
type Config struct {
	Port     int    // PORT
	MongoURI string // MONGO_URI, required
	MongoDB  string // MONGO_DB
	JWTKey   string // JWT_KEY, secret, required
	NATS     events.Config
	AckWait  time.Duration // ACK_WAIT of the subscriptions
	GapWait  time.Duration // GAP_WAIT: a reservation waits in-process for the ticket to be free
	// CancelWait: a cancellation waits in-process for its order's creation
	// (CANCEL_WAIT; at most GapWait), see listeners.Listeners.OrderCancelled.
	CancelWait    time.Duration
	MaxDeliveries int            // MAX_DELIVERIES: failed deliveries before the dead letter
	ShutdownGrace time.Duration  // SHUTDOWN_GRACE: requests in flight at SIGTERM
	Outbox        outbox.Options // OUTBOX_DEAD_AFTER (the rest: defaults)
}

// defaults is the one place of the defaults: LoadConfig reads the
// environment over them, and Run fills a zero field of a Config built in
// code (tests) from them.
var defaults = Config{
	Port:          lifecycle.DefaultPort,
	MongoDB:       Service,
	AckWait:       events.DefaultAckWait,
	GapWait:       events.DefaultGapWait,
	CancelWait:    250 * time.Millisecond,
	MaxDeliveries: events.DefaultMaxDeliveries,
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
		JWTKey:        env.Secret("JWT_KEY"),
		NATS:          events.ConfigFromEnv(env, Service),
		CancelWait:    env.Duration("CANCEL_WAIT", d.CancelWait),
		MaxDeliveries: env.Int("MAX_DELIVERIES", d.MaxDeliveries),
		ShutdownGrace: env.Duration("SHUTDOWN_GRACE", d.ShutdownGrace),
		Outbox:        outbox.OptionsFromEnv(env),
	}
	c.AckWait, c.GapWait = events.WaitsFromEnv(env)
	env.Check(c.Port > 0 && c.Port < 1<<16, "PORT: %d is not a TCP port", c.Port)
	env.Check(c.MaxDeliveries > 0, "MAX_DELIVERIES: must be at least 1")
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
	if c.AckWait <= 0 {
		c.AckWait = d.AckWait
	}
	if c.GapWait <= 0 {
		c.GapWait = d.GapWait
	}
	if c.CancelWait <= 0 {
		c.CancelWait = d.CancelWait
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = d.MaxDeliveries
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	return c
}
