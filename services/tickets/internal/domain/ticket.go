// Package domain holds the ticket and its rules, free of MongoDB, HTTP and
// NATS: what a valid ticket is, who may edit it, and how orders reserve and
// free it. The adapters (store) and ports (httpapi, listeners) call these
// rules; none of them decides anything of its own.
package domain

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
)

// Validation and rule messages, worded as the original app answers them.
const (
	MsgTitleRequired   = "Title is required"
	MsgPricePositive   = "Price must be greater than 0"
	MsgReserved        = "Cannot edit a reserved ticket"
	MsgVersionMismatch = "Ticket has been modified since version %d (now %d); reload it and retry"
)

// MaxReleased bounds how many released orders a ticket remembers (see
// Ticket.Released); a ticket is reserved by only a handful of orders in its
// life, so the bound only matters against abuse. Orders created well before
// the oldest one remembered count as released too (see
// createdBeforeReleased).
const MaxReleased = 100

// clockSlack is how much older (by the creation time in its ObjectId) an
// order must be than the oldest remembered released order to count as
// released without being remembered: more than the clocks of the orders
// service's replicas, which stamp the ids, can differ.
const clockSlack = 10 * time.Second

// Ticket is a ticket for sale. Version counts its changes: 0 when created,
// +1 on every edit, reservation and release; the events carry it so that
// replicas apply changes in order.
type Ticket struct {
	ID      string // 24-hex ObjectId
	Title   string
	Price   float64
	UserID  string // the owner: the user who created it
	Version int64
	OrderID string // the order holding it; "" when it is free

	// Released lists the orders that held this ticket and let it go, so a
	// redelivered order:created of a cancelled order does not reserve the
	// ticket again. Not part of the ticket's JSON or events.
	Released []string
}

// Reserved reports whether an order holds the ticket.
func (t *Ticket) Reserved() bool { return t.OrderID != "" }

// Input is a title and price as a client sent them, already decoded.
type Input struct {
	Title string
	Price float64
}

// Validate checks an Input and reports every bad field at once.
func (in Input) Validate() error {
	var errs []apperr.FieldError
	if strings.TrimSpace(in.Title) == "" {
		errs = append(errs, apperr.FieldError{Field: "title", Message: MsgTitleRequired})
	}
	// !(p > 0) also refuses NaN.
	if !(in.Price > 0) || in.Price > maxPrice {
		errs = append(errs, apperr.FieldError{Field: "price", Message: MsgPricePositive})
	}
	return apperr.Fields(errs...)
}

// maxPrice refuses +Inf (which JSON cannot carry but a Go caller could).
const maxPrice = 1.7976931348623157e308

// New returns a valid ticket owned by userID at version 0, without an ID
// (the store assigns it).
func New(userID string, in Input) (Ticket, error) {
	if err := in.Validate(); err != nil {
		return Ticket{}, err
	}
	if userID == "" {
		return Ticket{}, apperr.ErrNotAuthorized
	}
	return Ticket{Title: in.Title, Price: in.Price, UserID: userID}, nil
}

// Edit applies a user's edit. The checks run in the original app's order:
// the input first (400), then the owner (401 whatever the ticket's state),
// then reserved (400).
func (t *Ticket) Edit(userID string, in Input) error {
	if err := in.Validate(); err != nil {
		return err
	}
	if t.UserID != userID {
		return apperr.ErrNotAuthorized
	}
	if t.Reserved() {
		return apperr.New(apperr.Invalid, MsgReserved)
	}
	t.Title, t.Price = in.Title, in.Price
	return nil
}

// ExpectVersion refuses an edit made on another version than the ticket's
// current one (the client sent the version it edited): 409, so that the
// client reloads instead of overwriting a change it has not seen.
func (t *Ticket) ExpectVersion(v int64) error {
	if t.Version != v {
		return apperr.Errorf(apperr.Conflict, MsgVersionMismatch, v, t.Version)
	}
	return nil
}

// ErrUnchanged is returned by a rule that finds nothing to do (a duplicate
// or stale event); the store then writes nothing and publishes nothing.
var ErrUnchanged = errors.New("domain: nothing changed")

// ErrHeldByOther: an order:created for a ticket that another order still
// holds. Orders are serialised per ticket by the orders service, so the
// cancellation of the other order is on its way; the event must wait for it.
var ErrHeldByOther = errors.New("domain: ticket is held by another order")

// ErrNotYetReserved: an order:cancelled for an order that neither holds the
// ticket nor ever released it: usually its order:created has not been
// applied yet (every cancellation follows a creation), so the event waits
// for it; if it never comes, ReleaseUnseen records the cancellation.
var ErrNotYetReserved = errors.New("domain: the order has not reserved the ticket yet")

// Reserve lets order orderID hold the ticket. A duplicate (already held by
// that order) and a stale event (that order already released it) give
// ErrUnchanged; a ticket held by another order gives ErrHeldByOther.
func (t *Ticket) Reserve(orderID string) error {
	switch {
	case orderID == "":
		return apperr.Field("orderId", "Order id is required")
	case t.OrderID == orderID, t.released(orderID), t.createdBeforeReleased(orderID):
		return ErrUnchanged
	case t.Reserved():
		return ErrHeldByOther
	}
	t.OrderID = orderID
	return nil
}

// createdBeforeReleased reports whether the ticket has forgotten released
// orders (it remembers MaxReleased) and orderID was created before the
// oldest one it remembers, by more than clockSlack. Such an order cannot
// hold the ticket: that remembered order was created after it, which the
// orders service allows only once no other order holds the ticket (its
// unique reservation), so this one was cancelled by then; its creation
// arriving now is a redelivery. Without this, a creation redelivered after
// more than MaxReleased later orders let the ticket go would reserve it for
// good (seen in the benchmark, one ticket ordered and cancelled hundreds
// of times in a few seconds, before cancellations stopped waiting long for
// their creations). Ids that are not ObjectIds are never judged so.
func (t *Ticket) createdBeforeReleased(orderID string) bool {
	if len(t.Released) < MaxReleased {
		return false
	}
	created, ok := objectIDTime(orderID)
	oldest, ok2 := objectIDTime(t.Released[0])
	return ok && ok2 && created.Add(clockSlack).Before(oldest)
}

// objectIDTime is the creation time in a 24-hex ObjectId (its first four
// bytes, seconds since the epoch, big-endian).
func objectIDTime(id string) (time.Time, bool) {
	if len(id) != 24 {
		return time.Time{}, false
	}
	b, err := hex.DecodeString(id)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(binary.BigEndian.Uint32(b[:4])), 0), true
}

// Release frees the ticket if order orderID holds it, and remembers that
// the order let it go. A cancellation of an order that released the ticket
// already (a duplicate, or a stale one while another order holds it) gives
// ErrUnchanged.
func (t *Ticket) Release(orderID string) error {
	switch {
	case orderID == "":
		return apperr.Field("orderId", "Order id is required")
	case t.OrderID == orderID:
	case t.released(orderID):
		return ErrUnchanged
	default:
		return ErrNotYetReserved
	}
	t.OrderID = ""
	t.remember(orderID)
	return nil
}

func (t *Ticket) remember(orderID string) {
	t.Released = append(t.Released, orderID)
	if n := len(t.Released); n > MaxReleased {
		t.Released = append([]string(nil), t.Released[n-MaxReleased:]...)
	}
}

// ReleaseUnseen records the cancellation of an order whose order:created
// this ticket has not seen (it is late, or will never apply because another
// order holds the ticket): the order is remembered as released, so its
// creation, should it arrive, is stale and never reserves the ticket. This
// is bookkeeping, not a change of the ticket: the store writes it without a
// new version or event. If the order holds the ticket by now, it is
// released as usual.
func (t *Ticket) ReleaseUnseen(orderID string) error {
	if err := t.Release(orderID); !errors.Is(err, ErrNotYetReserved) {
		return err
	}
	t.remember(orderID)
	return nil
}

func (t *Ticket) released(orderID string) bool {
	for _, id := range t.Released {
		if id == orderID {
			return true
		}
	}
	return false
}

// Created is the ticket:created event of t.
func (t *Ticket) Created() events.TicketCreated {
	return events.TicketCreated{ID: t.ID, Version: t.Version, Title: t.Title, Price: t.Price, UserID: t.UserID, OrderID: t.OrderID}
}

// Updated is the ticket:updated event of t (with t's current version).
func (t *Ticket) Updated() events.TicketUpdated {
	return events.TicketUpdated{ID: t.ID, Version: t.Version, Title: t.Title, Price: t.Price, UserID: t.UserID, OrderID: t.OrderID}
}
