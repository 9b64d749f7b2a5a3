// Command client is the web client: server-rendered pages at / through
// which a person lists tickets, signs up or in, sells, buys and pays. It
// calls the public API as the person's browser would, with their session
// cookie. Configuration: internal/app/config.go.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/logx"
	"github.com/ticketing-go/ticketing/services/client/internal/app"
)

func main() {
	config.SetServiceGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, app.Service+":", err)
		os.Exit(1)
	}
}

// run reads the configuration and runs the service until ctx is done.
func run(ctx context.Context) error {
	log := logx.New(app.Service)
	cfg, err := app.LoadConfig(config.FromOS(), log)
	if err != nil {
		return err
	}
	return app.Run(ctx, cfg, nil, log)
}
