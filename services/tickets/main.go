// Command tickets is the tickets service: the /api/tickets HTTP API, the
// ticket events (through a transactional outbox) and the order event
// listeners. Configured from the environment: PORT (3000), MONGO_URI,
// MONGO_DB (tickets), JWT_KEY, NATS_URL, NATS_CLUSTER_ID, NATS_CLIENT_ID.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/logx"
	"github.com/ticketing-go/ticketing/services/tickets/internal/service"
)

func main() {
	config.SetServiceGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tickets:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	log := logx.New(service.Name)
	env := config.FromOS()
	cfg := service.ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	env.Log(log, "configuration")
	return service.Run(ctx, cfg, log)
}
