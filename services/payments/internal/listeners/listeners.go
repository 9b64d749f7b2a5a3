// Package listeners is the events port of the payments service: it keeps the
// order replica from order:created and order:cancelled, in version order,
// and has a paid order that is cancelled refunded.
package listeners

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/inorder"
	"github.com/ticketing-go/ticketing/services/payments/internal/domain"
)

// QueueGroup is the durable queue group of every payments replica.
const QueueGroup = "payments-service"

// Replica is the order store as the listener needs it.
type Replica interface {
	Insert(ctx context.Context, o domain.Order) error
	Update(ctx context.Context, id string, fn func(*domain.Order) error) (domain.Order, error)
}

// Refunder returns the money of a cancelled order's payment
// (domain.Service.RefundOrder).
type Refunder interface {
	RefundOrder(ctx context.Context, orderID string) error
}

// Listener applies order events to the replica.
type Listener struct {
	replica  Replica
	refunder Refunder
	log      *slog.Logger
	gate     *inorder.Gate
}

// New returns a Listener; maxWait is how long an event ahead of a gap waits
// for its predecessor in this process before falling back to redelivery.
//
// The gate is used through Apply, not ApplyVersion: an order has at most two
// replicated events (order:created, version 0, and the final
// order:cancelled), so waking every waiter on a key is waking one; and a
// cancellation waits for the creation, not for version-1 (ApplyCancelled
// applies over any older version), which ApplyVersion's wake-up rule would
// leave to the poll for a cancellation of version 2 or more.
//
// refunder (may be nil) is called when an order:cancelled finds the order
// paid: the charge completed after the orders service had cancelled it.
func New(replica Replica, refunder Refunder, maxWait time.Duration, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.Default()
	}
	return &Listener{replica: replica, refunder: refunder, log: log, gate: inorder.NewGate(maxWait)}
}

// Options configures the listeners.
type Options struct {
	Replica  Replica
	Refunder Refunder // may be nil
	Log      *slog.Logger
	AckWait  time.Duration // redelivery after a failure (default events.DefaultAckWait)
	// GapWait: how long an event ahead of its predecessor waits for it in
	// this process before falling back to redelivery.
	GapWait time.Duration
}

// Start subscribes every listener of the payments service on sub.
func Start(sub events.Subscriber, o Options) error {
	l := New(o.Replica, o.Refunder, o.GapWait, o.Log)
	return events.SubscribeGroup(sub, events.Group{Name: QueueGroup, AckWait: o.AckWait, Log: l.log},
		events.Route{Subject: events.SubjectOrderCreated, Handler: events.Decode(l.OrderCreated)},
		events.Route{Subject: events.SubjectOrderCancelled, Handler: events.Decode(l.OrderCancelled)},
	)
}

// OrderCreated stores the order (version 0); a duplicate is acknowledged.
func (l *Listener) OrderCreated(ctx context.Context, e events.OrderCreatedEvent, _ *events.Msg) error {
	if e.ID == "" || e.UserID == "" {
		return events.Poison(errors.New("order:created without id or userId"))
	}
	return l.gate.Apply(ctx, e.ID, func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
		status := e.Status
		if status == "" {
			status = events.OrderCreated
		}
		err := l.replica.Insert(ctx, domain.Order{ID: e.ID, UserID: e.UserID, Status: status,
			Price: e.Ticket.Price, Version: e.Version})
		switch {
		case errors.Is(err, domain.ErrStale):
			return inorder.Stale, nil
		case err != nil:
			return 0, err
		}
		return inorder.Applied, nil
	})
}

// OrderCancelled marks the order cancelled; it waits for order:created when
// that has not arrived yet.
func (l *Listener) OrderCancelled(ctx context.Context, e events.OrderCancelledEvent, _ *events.Msg) error {
	if e.ID == "" {
		return events.Poison(errors.New("order:cancelled without id"))
	}
	var paid bool
	err := l.gate.Apply(ctx, e.ID, func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
		o, err := l.replica.Update(ctx, e.ID, func(o *domain.Order) error { return o.ApplyCancelled(e.Version) })
		// Also on a duplicate: the refund of the first delivery may have
		// failed (it is marked due first, so RefundOrder is idempotent).
		paid = o.NeedsRefund()
		switch {
		case errors.Is(err, domain.ErrStale):
			return inorder.Stale, nil
		case apperr.Is(err, apperr.NotFound):
			return inorder.Ahead, nil
		case err != nil:
			return 0, err
		}
		return inorder.Applied, nil
	})
	if err != nil || !paid || l.refunder == nil {
		return err
	}
	// Paid before the cancellation reached this replica. A failure is
	// not redelivered (the cancellation is applied); the refund, marked
	// due, is retried by the refund sweep.
	if err := l.refunder.RefundOrder(ctx, e.ID); err != nil {
		l.log.Error("refunding the payment of a cancelled order; the refund sweep retries it", "orderId", e.ID, "err", err)
	}
	return nil
}
