// Package domain holds the payments service's rules: which order may be paid,
// by whom, and how a payment attempt is claimed so one order is never charged
// twice. It knows nothing of MongoDB, HTTP or Stripe.
package domain

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
)

// Order is the payments service's replica of an order, plus the local state
// of paying it (never replicated back: the orders service learns of a payment
// from payment:created).
type Order struct {
	ID      string
	UserID  string
	Status  events.OrderStatus
	Price   float64
	Version int64 // the orders service's version of the order

	// PaymentID is set once the order is paid.
	PaymentID string
	// Attempt counts charge attempts that failed for certain; it is part of
	// the Stripe idempotency key, so a retry after a decline is a new charge
	// while a retry after an unknown outcome (timeout, crash) reuses the key
	// and Stripe answers with the first result instead of charging again.
	Attempt int
	// Claim is the payment attempt in progress, if any.
	Claim *Claim
}

// Claim marks one request as the only one charging an order until Until.
// A claim that outlives its lease (the process died mid-charge) can be taken
// over; the idempotency key makes the takeover safe.
type Claim struct {
	Token string
	Until time.Time
}

// Errors of paying an order, worded as the API answers them.
var (
	ErrCancelled   = apperr.New(apperr.Invalid, "Cannot pay for a cancelled order")
	ErrAlreadyPaid = apperr.New(apperr.Invalid, "Order already paid")
	// ErrInProgress: another request is charging the order right now.
	ErrInProgress = apperr.New(apperr.Conflict, "A payment for this order is already in progress")
	// ErrCancelledWhilePaying: the order was cancelled (it expired) while
	// its charge was running; the charge is refunded.
	ErrCancelledWhilePaying = apperr.New(apperr.Invalid, "The order was cancelled while it was being paid; the payment is refunded")
	// ErrClaimLost: our claim was taken over (lease expired) or released.
	ErrClaimLost = apperr.New(apperr.Conflict, "A payment for this order is already in progress")
)

// CheckPayable says whether userID may start paying the order now.
func (o *Order) CheckPayable(userID string, now time.Time) error {
	switch {
	case o.UserID != userID:
		return apperr.ErrNotAuthorized
	case o.PaymentID != "" || o.Status == events.OrderComplete:
		return ErrAlreadyPaid
	case o.Status == events.OrderCancelled:
		return ErrCancelled
	case o.Claim != nil && now.Before(o.Claim.Until):
		return ErrInProgress
	}
	return nil
}

// BeginPayment claims the order for one charge attempt identified by token.
func (o *Order) BeginPayment(userID, token string, now time.Time, lease time.Duration) error {
	if err := o.CheckPayable(userID, now); err != nil {
		return err
	}
	o.Claim = &Claim{Token: token, Until: now.Add(lease)}
	return nil
}

// EndPayment releases the claim after a failed attempt. definite says the
// charge certainly did not happen (declined, refused by Stripe), so the next
// attempt may use a new idempotency key.
func (o *Order) EndPayment(token string, definite bool) error {
	if o.Claim == nil || o.Claim.Token != token {
		return ErrClaimLost
	}
	o.Claim = nil
	if definite {
		o.Attempt++
	}
	return nil
}

// MarkPaid records the payment. It does not require the claim: once the
// money is taken the payment is a fact, even if the claim was taken over.
func (o *Order) MarkPaid(paymentID string) {
	o.PaymentID = paymentID
	o.Claim = nil
}

// NeedsRefund says whether o is paid and cancelled: the charge completed
// after the orders service had cancelled the order (it never cancels a
// paid one), so the money must go back (Service.RefundOrder).
func (o *Order) NeedsRefund() bool {
	return o.PaymentID != "" && o.Status == events.OrderCancelled
}

// IdempotencyKey is the Stripe idempotency key of the current attempt.
func (o *Order) IdempotencyKey() string {
	return fmt.Sprintf("order-%s-%d", o.ID, o.Attempt)
}

// AmountCents is the order's price in cents (prices are in dollars).
func (o *Order) AmountCents() int64 {
	return int64(math.Round(o.Price * 100))
}

// Replica outcomes of applying an order event (see common/inorder).
var (
	// ErrStale: the event is a duplicate or older than the replica.
	ErrStale = errors.New("stale order event")
)

// ApplyCancelled applies order:cancelled with version v. Cancellation is
// final in the orders service, so it applies over any older version: the
// replica never waits for versions of changes it does not replicate.
func (o *Order) ApplyCancelled(v int64) error {
	if v <= o.Version {
		return ErrStale
	}
	o.Status = events.OrderCancelled
	o.Version = v
	return nil
}

// Payment is a successful charge of one order.
type Payment struct {
	ID       string
	OrderID  string
	StripeID string
	// RefundID is the provider's refund, once the payment is refunded (its
	// order was cancelled while it was being charged).
	RefundID string
}
