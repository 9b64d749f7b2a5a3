// Package listeners is the events port of the expiration service:
// order:created schedules an expiration, order:cancelled drops it.
package listeners

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/inorder"
)

// QueueGroup is the durable queue group of every expiration replica.
const QueueGroup = "expiration-service"

// Store is what the listener needs of the expirations store.
type Store interface {
	Schedule(ctx context.Context, id string, expiresAt time.Time) (bool, error)
	Drop(ctx context.Context, id string) error
}

// Listener schedules and drops expirations.
type Listener struct {
	store Store
	wake  func(at time.Time)
	log   *slog.Logger
	// turns runs the events of one order one at a time in this process. An
	// order cancelled right after its creation has both events delivered
	// together: the drop then waits for the schedule in flight, and writes
	// on the state the schedule remembers instead of reading the store (or
	// leaving a tombstone that the schedule then runs into). Nothing waits
	// for an event that has not arrived: no try reports inorder.Ahead.
	turns *inorder.Gate
}

// New returns a Listener that calls wake with the due time after
// scheduling (may be nil).
func New(store Store, wake func(at time.Time), log *slog.Logger) *Listener {
	if log == nil {
		log = slog.Default()
	}
	return &Listener{store: store, wake: wake, log: log, turns: inorder.NewGate(time.Second)}
}

// inTurn runs apply in the order's turn.
func (l *Listener) inTurn(ctx context.Context, orderID string, apply func(context.Context) error) error {
	return l.turns.Apply(ctx, orderID, func(ctx context.Context, _ *inorder.Attempt) (inorder.Outcome, error) {
		return inorder.Applied, apply(ctx)
	})
}

// Options configures the listeners.
type Options struct {
	Store Store
	// Wake is called with the due time of a new expiration (may be nil).
	Wake    func(at time.Time)
	Log     *slog.Logger
	AckWait time.Duration // redelivery after a failure (default events.DefaultAckWait)
}

// Start subscribes every listener of the expiration service on sub.
func Start(sub events.Subscriber, o Options) error {
	l := New(o.Store, o.Wake, o.Log)
	return events.SubscribeGroup(sub, events.Group{Name: QueueGroup, AckWait: o.AckWait, Log: l.log},
		events.Route{Subject: events.SubjectOrderCreated, Handler: events.Decode(l.OrderCreated)},
		events.Route{Subject: events.SubjectOrderCancelled, Handler: events.Decode(l.OrderCancelled)},
	)
}

// OrderCreated schedules the order's expiration (once per order).
func (l *Listener) OrderCreated(ctx context.Context, e events.OrderCreatedEvent, _ *events.Msg) error {
	if e.ID == "" || e.ExpiresAt.IsZero() {
		return events.Poison(errors.New("order:created without id or expiresAt"))
	}
	var scheduled bool
	err := l.inTurn(ctx, e.ID, func(ctx context.Context) (err error) {
		scheduled, err = l.store.Schedule(ctx, e.ID, e.ExpiresAt)
		return err
	})
	if err != nil {
		return err
	}
	if !scheduled {
		events.Duplicate(ctx) // already known: a duplicate, or after its order:cancelled
		return nil
	}
	l.log.Info("expiration scheduled", "orderId", e.ID, "expiresAt", e.ExpiresAt)
	if l.wake != nil {
		l.wake(e.ExpiresAt)
	}
	return nil
}

// OrderCancelled drops the order's expiration: the orders service would
// ignore it anyway, this only saves the event.
func (l *Listener) OrderCancelled(ctx context.Context, e events.OrderCancelledEvent, _ *events.Msg) error {
	if e.ID == "" {
		return events.Poison(errors.New("order:cancelled without id"))
	}
	return l.inTurn(ctx, e.ID, func(ctx context.Context) error { return l.store.Drop(ctx, e.ID) })
}
