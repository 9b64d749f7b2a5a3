// Command publisher is the seed's NATS test publisher: it publishes
// ticket:created events to NATS Streaming and waits for the server's ack.
//
//	go run ./examples/nats-test/publisher -n 3
//
// NATS_URL (default nats://localhost:4222) and NATS_CLUSTER_ID (default
// ticketing) select the server, as for the services.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/events"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log, os.Args[1:]); err != nil {
		log.Error("publisher failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("publisher", flag.ContinueOnError)
	n := fs.Int("n", 1, "how many ticket:created events to publish")
	title := fs.String("title", "concert", "ticket title")
	price := fs.Float64("price", 20, "ticket price")
	if err := fs.Parse(args); err != nil {
		return err
	}
	env := config.FromOS()
	cfg := events.ConfigFromEnv(env, "nats-test-publisher")
	if err := env.Err(); err != nil {
		return err
	}
	env.Log(log, "config")

	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := events.Connect(cctx, cfg, log)
	if err != nil {
		return err
	}
	defer conn.Close() // the server drops the client at once

	for i := range *n {
		e := events.TicketCreated{ID: primitive.NewObjectID().Hex(), Version: 0, Title: *title, Price: *price, UserID: "nats-test"}
		if i > 0 {
			e.Title = fmt.Sprintf("%s #%d", *title, i+1)
		}
		if err := conn.Publish(ctx, e); err != nil {
			return err
		}
		log.Info("event published (acked by the server)", "subject", e.Subject(), "id", e.ID, "title", e.Title)
	}
	return nil
}
