// Package listeners is the events port of the tickets service: it applies
// order:created (the order holds the ticket) and order:cancelled (the ticket
// is free again) in the queue group "tickets-service".
//
// Each change goes through the store like an edit (version + 1 and a
// ticket:updated event in the same write), so it is published in version
// order by the outbox relay. Redelivered and duplicate events change
// nothing: the ticket remembers which order holds it and which orders
// released it (domain.Ticket.Reserve/Release). An event that arrives before
// the one it depends on (order B's creation while order A, cancelled, still
// holds the ticket; a cancellation before its creation) waits for it in an
// inorder.Gate; reservations waiting for the ticket take it in the order
// their orders were created (inorder.Attempt.Rank). A creation that waits in vain
// (GapWait) falls back to redelivery. A cancellation waits for its creation
// only briefly (CancelWait) and is then recorded without it
// (domain.Ticket.ReleaseUnseen): the creation, late or stuck behind another
// order's hold, is then stale, and no cancelled order can end up holding a
// ticket, whatever the delivery order, as long as the ticket still
// remembers it (domain.MaxReleased orders).
package listeners

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/inorder"
	"github.com/ticketing-go/ticketing/services/tickets/internal/domain"
)

// QueueGroup is the queue group (and durable name) of the tickets service.
const QueueGroup = "tickets-service"

// Tickets is what the listeners need of the ticket store.
type Tickets interface {
	Update(ctx context.Context, id string, fn func(*domain.Ticket) error) (domain.Ticket, error)
}

// Options configures the listeners; zero values take the defaults.
type Options struct {
	Tickets       Tickets
	Log           *slog.Logger
	AckWait       time.Duration // redelivery after a failure
	MaxDeliveries int           // then dead letter
	MaxInflight   int
	// GapWait is how long an event waits in process for the event it
	// depends on before it falls back to redelivery (default 5s).
	GapWait time.Duration
	// CancelWait is how long a cancellation waits for its order's
	// creation before it is recorded without it (default 250ms; at most
	// GapWait). See OrderCancelled.
	CancelWait time.Duration
}

// Listeners applies order events to tickets.
type Listeners struct {
	tickets Tickets
	gate    *inorder.Gate
	log     *slog.Logger
	opts    Options
}

// New returns the listeners over tickets.
func New(tickets Tickets, log *slog.Logger, opts Options) *Listeners {
	if opts.GapWait <= 0 {
		opts.GapWait = 5 * time.Second
	}
	if opts.CancelWait <= 0 {
		opts.CancelWait = 250 * time.Millisecond
	}
	if log == nil {
		log = slog.Default()
	}
	return &Listeners{tickets: tickets, gate: inorder.NewGate(opts.GapWait), log: log, opts: opts}
}

// Start subscribes every listener of the tickets service on sub.
func Start(sub events.Subscriber, o Options) error {
	l := New(o.Tickets, o.Log, o)
	return events.SubscribeGroup(sub, events.Group{
		Name: QueueGroup, AckWait: o.AckWait, MaxInflight: o.MaxInflight, MaxDeliveries: o.MaxDeliveries, Log: l.log,
	},
		events.Route{Subject: events.SubjectOrderCreated, Handler: events.Decode(l.OrderCreated)},
		events.Route{Subject: events.SubjectOrderCancelled, Handler: events.Decode(l.OrderCancelled)},
	)
}

// OrderCreated reserves the order's ticket for it.
func (l *Listeners) OrderCreated(ctx context.Context, e events.OrderCreatedEvent, _ *events.Msg) error {
	return l.apply(ctx, e.Ticket.ID, e.ID, func(t *domain.Ticket) error { return t.Reserve(e.ID) })
}

// OrderCancelled frees the order's ticket if that order holds it. A
// cancellation that arrives before its order's creation waits for it (both
// then apply, in order: the usual case, the creation being milliseconds
// behind), but only CancelWait; then it is recorded without it, and the
// creation, when it comes, is stale.
//
// Why not wait as long as creations do (GapWait): waiting events hold
// their subscription's in-flight slots (MaxInflight). With one ticket
// ordered and cancelled a hundred times a second, the cancellation slots
// filled with cancellations waiting for creations queued behind the
// creation slots, which were full of creations waiting for the ticket to
// be freed by a cancellation queued behind the cancellation slots. Every
// one of them waited the full 5 s, and the creations were redelivered 30 s
// later (measured in the benchmark). A cancelled order never needs the
// ticket, so a cancellation can always give up waiting early.
func (l *Listeners) OrderCancelled(ctx context.Context, e events.OrderCancelledEvent, _ *events.Msg) error {
	err := l.applyWithin(ctx, l.opts.CancelWait, e.Ticket.ID, e.ID, func(t *domain.Ticket) error { return t.Release(e.ID) })
	if errors.Is(err, inorder.ErrGap) {
		l.log.InfoContext(ctx, "order:cancelled without its order:created; recorded", "order", e.ID, "ticket", e.Ticket.ID)
		err = l.apply(ctx, e.Ticket.ID, e.ID, func(t *domain.Ticket) error { return t.ReleaseUnseen(e.ID) })
	}
	return err
}

func (l *Listeners) apply(ctx context.Context, ticketID, orderID string, fn func(*domain.Ticket) error) error {
	return l.applyWithin(ctx, l.opts.GapWait, ticketID, orderID, fn)
}

func (l *Listeners) applyWithin(ctx context.Context, wait time.Duration, ticketID, orderID string, fn func(*domain.Ticket) error) error {
	return l.gate.ApplyWithin(ctx, ticketID, wait, func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
		// Reservations waiting for the ticket take it in the order their
		// orders were created (ObjectIds grow with time), not by race.
		a.Rank(orderID)
		t, err := l.tickets.Update(ctx, ticketID, fn)
		switch {
		case err == nil:
			a.Reached(holder(t.OrderID))
			return inorder.Applied, nil
		case errors.Is(err, domain.ErrUnchanged):
			a.Reached(holder(t.OrderID))
			return inorder.Stale, nil
		case errors.Is(err, domain.ErrHeldByOther):
			a.Needs(holder("")) // a reservation waits for the ticket to be free
			a.Reached(holder(t.OrderID))
			return inorder.Ahead, nil
		case errors.Is(err, domain.ErrNotYetReserved):
			a.Needs(holder(orderID)) // a cancellation waits for its order's reservation
			a.Reached(holder(t.OrderID))
			return inorder.Ahead, nil
		case apperr.Is(err, apperr.NotFound), apperr.Is(err, apperr.Invalid):
			// Tickets are created here before any order can name them: an
			// unknown or malformed ticket id will never become valid.
			return inorder.Stale, events.Poison(err)
		default:
			return inorder.Stale, err // e.g. MongoDB unavailable: redelivery
		}
	})
}

// holder names a ticket's reservation state for the gate (inorder.Attempt.Needs):
// "free", or "held:" and the order holding it.
func holder(orderID string) string {
	if orderID == "" {
		return "free"
	}
	return "held:" + orderID
}
