// Package listener is the events port of the expiration service:
// order:created schedules an expiration, order:cancelled drops it.
package listener

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ticketing-go/ticketing/common/events"
)

// QueueGroup is the durable queue group of every expiration replica.
const QueueGroup = "expiration-service"

// Store is what the listener needs of the expirations store.
type Store interface {
	Schedule(ctx context.Context, id string, expiresAt time.Time) (bool, error)
	Drop(ctx context.Context, id string) error
}

// Subscriber is the events connection.
type Subscriber interface {
	Subscribe(s events.Subscription, h events.Handler) error
}

// Listener schedules and drops expirations.
type Listener struct {
	store Store
	wake  func(at time.Time)
	log   *slog.Logger
}

// New returns a Listener that calls wake with the due time after
// scheduling (may be nil).
func New(store Store, wake func(at time.Time), log *slog.Logger) *Listener {
	return &Listener{store: store, wake: wake, log: log}
}

// Subscribe subscribes to order:created and order:cancelled.
func (l *Listener) Subscribe(sub Subscriber, ackWait time.Duration, mws ...events.Middleware) error {
	if err := sub.Subscribe(events.Subscription{Subject: events.SubjectOrderCreated, QueueGroup: QueueGroup,
		AckWait: ackWait, Middleware: mws}, events.Decode(l.OrderCreated)); err != nil {
		return err
	}
	return sub.Subscribe(events.Subscription{Subject: events.SubjectOrderCancelled, QueueGroup: QueueGroup,
		AckWait: ackWait, Middleware: mws}, events.Decode(l.OrderCancelled))
}

// OrderCreated schedules the order's expiration (once per order).
func (l *Listener) OrderCreated(ctx context.Context, e events.OrderCreatedEvent, _ *events.Msg) error {
	if e.ID == "" || e.ExpiresAt.IsZero() {
		return events.Poison(errors.New("order:created without id or expiresAt"))
	}
	scheduled, err := l.store.Schedule(ctx, e.ID, e.ExpiresAt)
	if err != nil {
		return err
	}
	if scheduled {
		l.log.Info("expiration scheduled", "orderId", e.ID, "expiresAt", e.ExpiresAt)
		if l.wake != nil {
			l.wake(e.ExpiresAt)
		}
	}
	return nil
}

// OrderCancelled drops the order's expiration: the orders service would
// ignore it anyway, this only saves the event.
func (l *Listener) OrderCancelled(ctx context.Context, e events.OrderCancelledEvent, _ *events.Msg) error {
	if e.ID == "" {
		return events.Poison(errors.New("order:cancelled without id"))
	}
	return l.store.Drop(ctx, e.ID)
}
