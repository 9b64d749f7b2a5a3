// Command listener is the seed's NATS test listener: it consumes
// ticket:created in a durable queue group with manual acks and a generated
// client id, and closes its connection on Ctrl-C / SIGTERM so that the
// server drops the client at once.
//
//	go run ./examples/nats-test/listener            # run it twice: the group shares the events
//	go run ./examples/nats-test/listener -fail 2    # fail the first 2 deliveries: see redelivery
//
// See docs/NATS.md.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/events"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log, os.Args[1:]); err != nil {
		log.Error("listener failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("listener", flag.ContinueOnError)
	group := fs.String("queue-group", "nats-test-listener", "queue group (and durable name)")
	ackWait := fs.Duration("ack-wait", 5*time.Second, "redelivery after this long without an ack")
	fail := fs.Int("fail", 0, "fail (do not ack) the first N deliveries, to watch redelivery")
	if err := fs.Parse(args); err != nil {
		return err
	}
	env := config.FromOS()
	cfg := events.ConfigFromEnv(env, "nats-test-listener") // client id: HOSTNAME or name + random suffix
	if err := env.Err(); err != nil {
		return err
	}
	env.Log(log, "config")

	conn, err := events.Connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	// Close, never Unsubscribe: the durable queue group survives, and the
	// next listener resumes where this one stopped.
	defer conn.Close()

	var failures atomic.Int64
	err = conn.Subscribe(events.Subscription{
		Subject:    events.SubjectTicketCreated,
		QueueGroup: *group,
		AckWait:    *ackWait,
	}, events.Decode(func(_ context.Context, e events.TicketCreated, m *events.Msg) error {
		if failures.Add(1) <= int64(*fail) {
			log.Warn("failing on purpose: no ack, expect redelivery", "seq", m.Sequence, "attempt", m.Attempt)
			return errFailOnPurpose
		}
		log.Info("event received", "seq", m.Sequence, "attempt", m.Attempt, "redelivered", m.Redelivered,
			"id", e.ID, "title", e.Title, "price", e.Price)
		return nil // ack
	}))
	if err != nil {
		return err
	}
	log.Info("listening; Ctrl-C to stop", "subject", events.SubjectTicketCreated, "queue_group", *group, "client_id", conn.ClientID())
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

type failOnPurpose struct{}

func (failOnPurpose) Error() string { return "failing on purpose" }

var errFailOnPurpose error = failOnPurpose{}
