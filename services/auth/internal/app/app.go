// Package app is the auth service's configuration (config.go) and wiring
// (this file): main calls Run. The start and shutdown order is
// common/lifecycle's; auth has no events, so it connects MongoDB only.
package app

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/services/auth/internal/domain"
	"github.com/ticketing-go/ticketing/services/auth/internal/httpapi"
	"github.com/ticketing-go/ticketing/services/auth/internal/ratelimit"
	"github.com/ticketing-go/ticketing/services/auth/internal/store"
)

// Run runs the service until ctx is done, serving HTTP on ln (on cfg.Port
// when ln is nil).
func Run(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger) error {
	cfg = cfg.withDefaults()
	return lifecycle.Run(ctx, lifecycle.Config{
		Service: Service, Port: cfg.Port, MongoURI: cfg.MongoURI, MongoDB: cfg.MongoDB,
		ShutdownGrace: cfg.ShutdownGrace,
	}, ln, log, func(ctx context.Context, d lifecycle.Deps) (lifecycle.Parts, error) {
		return Wire(ctx, cfg, d)
	})
}

// Wire builds the service's parts on d.
func Wire(ctx context.Context, cfg Config, d lifecycle.Deps) (lifecycle.Parts, error) {
	cfg = cfg.withDefaults()
	users, err := store.NewUsers(ctx, d.DB)
	if err != nil {
		return lifecycle.Parts{}, err
	}
	svc, err := domain.NewService(users, domain.Bcrypt{Cost: cfg.BcryptCost})
	if err != nil {
		return lifecycle.Parts{}, err
	}
	api := httpapi.New(svc, ratelimit.New(cfg.SigninRate, time.Minute), httpapi.Config{
		JWTKey: []byte(cfg.JWTKey), TokenTTL: cfg.JWTTTL, CookieSecure: cfg.CookieSecure, TrustedProxies: cfg.TrustedProxies,
	}, d.Log)
	return lifecycle.Parts{Mount: api.Mount}, nil
}
