package app

import (
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/lifecycle"
)

// Service is the service's name in logs and metrics.
const Service = "auth"

// Config is the service's environment contract.
type Config struct {
	Port     int    // PORT
	MongoURI string // MONGO_URI, required
	MongoDB  string // MONGO_DB
	JWTKey   string // JWT_KEY, secret, required
	// JWTTTL is how long a session token is valid (JWT_TTL).
	JWTTTL time.Duration
	// CookieSecure sets Secure on the session cookie (COOKIE_SECURE;
	// false only for plain-HTTP local use).
	CookieSecure bool
	// SigninRate: sign-in attempts a minute per client and per email
	// (SIGNIN_RATE; 0 disables the limit).
	SigninRate int
	// TrustedProxies: how many proxies in front of the service append to
	// X-Forwarded-For (TRUSTED_PROXIES), to find the client's address.
	TrustedProxies int
	BcryptCost     int           // BCRYPT_COST
	ShutdownGrace  time.Duration // SHUTDOWN_GRACE: requests in flight at SIGTERM
}

// defaults is the one place of the defaults: LoadConfig reads the
// environment over them, and Run fills a zero field of a Config built in
// code (tests) from them.
var defaults = Config{
	Port:          lifecycle.DefaultPort,
	MongoDB:       Service,
	JWTTTL:        24 * time.Hour,
	CookieSecure:  true,
	SigninRate:    10,
	BcryptCost:    bcrypt.DefaultCost,
	ShutdownGrace: lifecycle.DefaultShutdownGrace,
}

// LoadConfig reads the configuration from env and logs it, secrets masked;
// every problem is reported at once.
func LoadConfig(env *config.Env, log *slog.Logger) (Config, error) {
	d := defaults
	c := Config{
		Port:           env.Int("PORT", d.Port),
		MongoURI:       env.Required("MONGO_URI"),
		MongoDB:        env.String("MONGO_DB", d.MongoDB),
		JWTKey:         env.Secret("JWT_KEY"),
		JWTTTL:         env.Duration("JWT_TTL", d.JWTTTL),
		CookieSecure:   env.Bool("COOKIE_SECURE", d.CookieSecure),
		SigninRate:     env.Int("SIGNIN_RATE", d.SigninRate),
		TrustedProxies: env.Int("TRUSTED_PROXIES", d.TrustedProxies),
		BcryptCost:     env.Int("BCRYPT_COST", d.BcryptCost),
		ShutdownGrace:  env.Duration("SHUTDOWN_GRACE", d.ShutdownGrace),
	}
	env.Check(c.Port > 0 && c.Port < 1<<16, "PORT: %d is not a TCP port", c.Port)
	env.Check(c.SigninRate >= 0, "SIGNIN_RATE: must be >= 0 (0 disables the limit)")
	env.Check(c.TrustedProxies >= 0, "TRUSTED_PROXIES: must be >= 0")
	env.Check(c.BcryptCost >= bcrypt.MinCost && c.BcryptCost <= bcrypt.MaxCost,
		"BCRYPT_COST: must be between %d and %d", bcrypt.MinCost, bcrypt.MaxCost)
	if err := env.Err(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	env.Log(log, "config")
	return c, nil
}

// withDefaults fills the zero fields from defaults. CookieSecure and
// SigninRate have meaningful zero values and are left as they are.
func (c Config) withDefaults() Config {
	d := defaults
	if c.Port == 0 {
		c.Port = d.Port
	}
	if c.MongoDB == "" {
		c.MongoDB = d.MongoDB
	}
	if c.JWTTTL <= 0 {
		c.JWTTTL = d.JWTTTL
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = d.BcryptCost
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	return c
}
