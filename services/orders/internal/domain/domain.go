// Package domain holds the orders service's model and rules, apart from
// MongoDB (package store) and the HTTP and event ports.
//
// An order reserves one ticket from creation until it is cancelled (by its
// user, or because its reservation window expired). A complete (paid) order
// keeps its ticket for good.
//
// Versions. Version is the order's replicated version: it counts the events
// other services replicate an order from (order:created is version 0, each
// order:cancelled bumps it by one), so every version a consumer may wait for
// is published. Marking an order complete on payment:created changes its
// status only and leaves Version alone: payments (the only consumer that
// cares) already knows the order is paid, and bumping the version silently,
// as the original app did, would leave replicas waiting forever for a version
// that was never published (its next order:cancelled would never apply).
// Concurrency control between writers uses a separate internal revision kept
// by the store, so a status-only change still cannot be lost in a race.
package domain

import (
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
)

// Status is the life cycle of an order (the values travel in events).
type Status = events.OrderStatus

const (
	StatusCreated         = events.OrderCreated
	StatusCancelled       = events.OrderCancelled
	StatusAwaitingPayment = events.OrderAwaitingPayment
	StatusComplete        = events.OrderComplete
)

// Errors the rules answer, worded as the API shows them.
var (
	ErrTicketIDRequired = apperr.Field("ticketId", "TicketId must be provided")
	ErrTicketReserved   = apperr.New(apperr.Invalid, "Ticket is already reserved")
	ErrCancelCompleted  = apperr.New(apperr.Invalid, "Cannot cancel a completed order")
	// ErrPaidCancelled: a payment arrived for an order that had already been
	// cancelled (it expired while the charge was running). The ticket may
	// already be someone else's, so the order cannot be revived.
	ErrPaidCancelled = apperr.New(apperr.Invalid, "Order was cancelled before its payment arrived")
)

// Ticket is the orders service's replica of a ticket.
type Ticket struct {
	ID      string  `json:"id"`
	Title   string  `json:"title"`
	Price   float64 `json:"price"`
	Version int64   `json:"version"`
}

// Order is a user's reservation of a ticket.
type Order struct {
	ID        string
	UserID    string
	Status    Status
	ExpiresAt time.Time
	Version   int64
	Ticket    Ticket // the replica's current ticket; only ID is stored with the order

	pending []events.Event
}

// NewOrder returns an order of user for t that expires window after now,
// with order:created pending. id is the new order's id.
func NewOrder(id, userID string, t Ticket, now time.Time, window time.Duration) *Order {
	o := &Order{
		ID:        id,
		UserID:    userID,
		Status:    StatusCreated,
		ExpiresAt: now.Add(window).UTC().Truncate(time.Millisecond), // what MongoDB keeps
		Version:   0,
		Ticket:    t,
	}
	o.pending = append(o.pending, events.OrderCreatedEvent{
		ID: o.ID, Version: o.Version, Status: o.Status, UserID: o.UserID, ExpiresAt: o.ExpiresAt,
		Ticket: events.OrderTicket{ID: t.ID, Price: t.Price},
	})
	return o
}

// Active reports whether the status holds the ticket: created,
// awaiting:payment and complete do, cancelled does not.
func Active(s Status) bool { return s != StatusCancelled }

// HoldsTicket reports whether o reserves its ticket.
func (o *Order) HoldsTicket() bool { return Active(o.Status) }

// CheckOwner answers 401 "Not authorized" unless userID owns o (as the
// original app does for another user's order).
func (o *Order) CheckOwner(userID string) error {
	if o.UserID != userID {
		return apperr.ErrNotAuthorized
	}
	return nil
}

// Cancel cancels o at its user's request. A completed order cannot be
// cancelled; cancelling a cancelled order changes nothing (idempotent: no
// second event).
func (o *Order) Cancel() error {
	switch o.Status {
	case StatusComplete:
		return ErrCancelCompleted
	case StatusCancelled:
		return nil
	}
	o.cancel()
	return nil
}

// Expire cancels o when its reservation window has passed and it is still
// waiting for payment; a complete or cancelled order is left alone. It
// reports whether o changed.
func (o *Order) Expire() bool {
	if o.Status != StatusCreated && o.Status != StatusAwaitingPayment {
		return false
	}
	o.cancel()
	return true
}

func (o *Order) cancel() {
	o.Status = StatusCancelled
	o.Version++
	o.pending = append(o.pending, events.OrderCancelledEvent{
		ID: o.ID, Version: o.Version, Ticket: events.OrderTicket{ID: o.Ticket.ID},
	})
}

// Complete marks o paid. It does not bump Version and publishes nothing (see
// the package doc). Completing a complete order changes nothing; a cancelled
// order cannot be completed (ErrPaidCancelled).
func (o *Order) Complete() error {
	switch o.Status {
	case StatusComplete:
		return nil
	case StatusCancelled:
		return ErrPaidCancelled
	}
	o.Status = StatusComplete
	return nil
}

// Pending returns the events recorded since o was loaded or created, in
// order; the store writes them to the outbox with the state change.
func (o *Order) Pending() []events.Event { return o.pending }
