// Package listeners is the events port of the orders service: it keeps the
// ticket replica from ticket:created/ticket:updated and moves orders on
// expiration:complete and payment:created, in queue group "orders-service".
//
// The replica applies ticket versions strictly in order through an
// inorder.Gate: an update that arrives ahead of a gap waits in-process,
// unacknowledged, and is applied as soon as its predecessor is (by this
// process, or by another instance of the queue group, which the gate notices
// by polling); only if the predecessor does not come within MaxWait is the
// message left for redelivery after AckWait.
package listeners

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/inorder"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/services/orders/internal/domain"
	"github.com/ticketing-go/ticketing/services/orders/internal/store"
)

// QueueGroup is the durable queue group of every orders listener.
const QueueGroup = "orders-service"

// Store is what the listeners need from storage.
type Store interface {
	InsertTicket(ctx context.Context, t domain.Ticket) (inorder.Outcome, error)
	ApplyTicketUpdate(ctx context.Context, t domain.Ticket, a *inorder.Attempt) (inorder.Outcome, error)
	Update(ctx context.Context, id string, fn func(*domain.Order) error) error
}

// Options configures the listeners.
type Options struct {
	Store Store
	Log   *slog.Logger
	// AckWait is how long NATS waits for an ack before redelivering
	// (default events.DefaultAckWait).
	AckWait time.Duration
	// MaxWait is how long an early ticket update waits in-process for its
	// predecessor before it is left to redelivery (default 5s, below AckWait).
	MaxWait time.Duration
	// MaxInflight bounds the messages handled at once per subscription
	// (default 64); it must exceed the longest run of early updates one
	// process may hold while waiting for a predecessor.
	MaxInflight int
	// MaxDeliveries: after that many failed deliveries a message goes to the
	// dead-letter subject (0: the events package's default).
	MaxDeliveries int
}

// Start subscribes every listener of the orders service on sub.
func Start(sub events.Subscriber, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.AckWait <= 0 {
		o.AckWait = events.DefaultAckWait
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 5 * time.Second
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 64
	}
	l := &listeners{Options: o, gate: inorder.NewGate(o.MaxWait)}
	return events.SubscribeGroup(sub, events.Group{
		Name: QueueGroup, AckWait: o.AckWait, MaxInflight: o.MaxInflight, MaxDeliveries: o.MaxDeliveries, Log: o.Log,
	},
		events.Route{Subject: events.SubjectTicketCreated, Handler: events.Decode(l.ticketCreated)},
		events.Route{Subject: events.SubjectTicketUpdated, Handler: events.Decode(l.ticketUpdated)},
		events.Route{Subject: events.SubjectExpirationComplete, Handler: events.Decode(l.expirationComplete)},
		events.Route{Subject: events.SubjectPaymentCreated, Handler: events.Decode(l.paymentCreated)},
	)
}

type listeners struct {
	Options
	gate *inorder.Gate
}

func (l *listeners) ticketCreated(ctx context.Context, e events.TicketCreated, _ *events.Msg) error {
	t := domain.Ticket{ID: e.ID, Title: e.Title, Price: e.Price, Version: e.Version}
	return l.replicate(ctx, t, func(ctx context.Context, t domain.Ticket, _ *inorder.Attempt) (inorder.Outcome, error) {
		return l.Store.InsertTicket(ctx, t)
	})
}

func (l *listeners) ticketUpdated(ctx context.Context, e events.TicketUpdated, _ *events.Msg) error {
	t := domain.Ticket{ID: e.ID, Title: e.Title, Price: e.Price, Version: e.Version}
	return l.replicate(ctx, t, l.Store.ApplyTicketUpdate)
}

func (l *listeners) replicate(ctx context.Context, t domain.Ticket, apply func(context.Context, domain.Ticket, *inorder.Attempt) (inorder.Outcome, error)) error {
	// ApplyVersion: a waiting update is retried only when its predecessor may
	// have been applied, not after every apply on the ticket.
	err := l.gate.ApplyVersion(ctx, t.ID, t.Version, func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
		return apply(ctx, t, a)
	})
	if store.IsMalformed(err) {
		return events.Poison(err)
	}
	if errors.Is(err, inorder.ErrGap) {
		l.Log.Warn("ticket update still waits for its predecessor; leaving it to redelivery",
			"ticket", t.ID, "version", t.Version)
	}
	return err
}

func (l *listeners) expirationComplete(ctx context.Context, e events.ExpirationComplete, _ *events.Msg) error {
	err := l.Store.Update(ctx, e.OrderID, func(o *domain.Order) error {
		if o.Expire() {
			l.Log.Info("order expired", "order", o.ID)
		}
		return nil
	})
	return l.orderOutcome(err, "expiration:complete", e.OrderID)
}

func (l *listeners) paymentCreated(ctx context.Context, e events.PaymentCreated, _ *events.Msg) error {
	err := l.Store.Update(ctx, e.OrderID, func(o *domain.Order) error { return o.Complete() })
	if errors.Is(err, domain.ErrPaidCancelled) {
		// The charge went through after the order had expired; the ticket may
		// be someone else's by now, so the order stays cancelled. The
		// payments service refunds such a payment (it has the
		// cancellation too); acknowledge.
		l.Log.Warn("payment for a cancelled order; the payments service refunds it", "order", e.OrderID, "payment", e.ID, "stripeId", e.StripeID)
		return nil
	}
	return l.orderOutcome(err, "payment:created", e.OrderID)
}

// orderOutcome decides what an order event's error means for its message.
func (l *listeners) orderOutcome(err error, subject, orderID string) error {
	switch {
	case err == nil:
		return nil
	case apperr.Is(err, apperr.NotFound):
		if _, ok := mongox.ObjectID(orderID); !ok {
			return events.Poison(err)
		}
		// An order this service never created: nothing to do, and
		// redelivery would not change that.
		l.Log.Warn("event for an unknown order ignored", "subject", subject, "order", orderID)
		return nil
	default:
		return err // transient (database down, lost races): redelivery
	}
}
