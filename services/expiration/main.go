// Command expiration is the expiration service: it schedules every order's
// reservation expiry in MongoDB and publishes expiration:complete when it is
// due, durably and once.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/logx"
	"github.com/ticketing-go/ticketing/services/expiration/internal/app"
)

func main() {
	config.SetServiceGC()
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "expiration:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := logx.New(app.Service)
	env := config.FromOS()
	cfg := app.ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		return err
	}
	env.Log(log, "configuration")
	return app.Run(ctx, cfg, nil, log)
}
