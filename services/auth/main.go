// Command auth is the auth service: sign up, sign in, sign out and current
// user under /api/users. It issues the session JWT that every other service
// verifies with common/auth.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/httpx"
	"github.com/ticketing-go/ticketing/common/logx"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/services/auth/internal/domain"
	"github.com/ticketing-go/ticketing/services/auth/internal/httpapi"
	"github.com/ticketing-go/ticketing/services/auth/internal/ratelimit"
	"github.com/ticketing-go/ticketing/services/auth/internal/store"
)

func main() {
	config.SetServiceGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logx.New("auth")
	if err := run(ctx, log); err != nil {
		log.Error("auth stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	env := config.FromOS()
	var (
		port         = env.Int("PORT", 3000)
		mongoURI     = env.Required("MONGO_URI")
		mongoDB      = env.String("MONGO_DB", "auth")
		jwtKey       = env.Secret("JWT_KEY")
		jwtTTL       = env.Duration("JWT_TTL", 24*time.Hour)
		cookieSecure = env.Bool("COOKIE_SECURE", true)
		signinRate   = env.Int("SIGNIN_RATE", 10)
		trusted      = env.Int("TRUSTED_PROXIES", 0)
		bcryptCost   = env.Int("BCRYPT_COST", bcrypt.DefaultCost)
		grace        = env.Duration("SHUTDOWN_GRACE", 10*time.Second)
	)
	env.Check(port > 0 && port < 65536, "PORT: %d is not a port", port)
	env.Check(signinRate >= 0, "SIGNIN_RATE: must be >= 0 (0 disables the limit)")
	env.Check(trusted >= 0, "TRUSTED_PROXIES: must be >= 0")
	env.Check(bcryptCost >= bcrypt.MinCost && bcryptCost <= bcrypt.MaxCost,
		"BCRYPT_COST: must be between %d and %d", bcrypt.MinCost, bcrypt.MaxCost)
	if err := env.Err(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	env.Log(log, "config")

	client, db, err := mongox.Connect(ctx, mongoURI, mongoDB)
	if err != nil {
		return fmt.Errorf("mongo: %w", err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	users, err := store.NewUsers(ctx, db)
	if err != nil {
		return err
	}
	svc, err := domain.NewService(users, domain.Bcrypt{Cost: bcryptCost})
	if err != nil {
		return err
	}
	api := httpapi.New(svc, ratelimit.New(signinRate, time.Minute), httpapi.Config{
		JWTKey: []byte(jwtKey), TokenTTL: jwtTTL, CookieSecure: cookieSecure, TrustedProxies: trusted,
	}, log)

	router := httpx.NewRouter(httpx.RouterOptions{Service: "auth", Log: log, Ready: []httpx.Check{
		{Name: "mongo", Fn: mongox.Ping(client)},
	}})
	api.Mount(router)

	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	return httpx.Serve(ctx, ln, router, grace, log)
}
