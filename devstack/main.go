// Command devstack is `make dev`: the whole system on one machine with
// nothing installed but Go. It runs the NATS Streaming server (or, with
// EVENT_BUS=jetstream, nats-server with JetStream) and the MongoDB stand-in
// in this process (unless NATS_URL / MONGO_URI name other servers), builds every service under services/ and runs each as a child
// process, and serves them on one address behind a reverse proxy that routes
// by path like the Kubernetes ingress.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/logx"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		logx.New("devstack").Error("dev stack stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	log := logx.New("devstack")
	opts, err := OptionsFromEnv(config.FromOS(), log)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	opts.Log = log
	opts.JWTKey = os.Getenv("JWT_KEY")
	opts.Out = os.Stdout
	return Run(ctx, opts)
}
