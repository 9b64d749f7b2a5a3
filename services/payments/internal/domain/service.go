package domain

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
)

// Orders is the order replica as the payment use case needs it.
type Orders interface {
	// Get returns the order or apperr NotFound.
	Get(ctx context.Context, id string) (Order, error)
	// Update applies fn to the current order and stores the result
	// atomically; fn may run more than once under concurrency, and an error
	// from fn is returned unchanged with nothing stored.
	Update(ctx context.Context, id string, fn func(*Order) error) (Order, error)
}

// Payments stores payments.
type Payments interface {
	// Create stores p and, in the same write, its payment:created event.
	// A payment for the same order already stored -> apperr Conflict.
	Create(ctx context.Context, p Payment) error
	// ByOrder returns the payment of an order or apperr NotFound.
	ByOrder(ctx context.Context, orderID string) (Payment, error)
	// MarkRefundDue records, durably, that the payment of the order must be
	// refunded, and returns it. apperr NotFound when the order has no
	// payment; a payment refunded already comes back with its RefundID.
	MarkRefundDue(ctx context.Context, orderID string) (Payment, error)
	// Refunded records the provider's refund of a payment.
	Refunded(ctx context.Context, paymentID, refundID string) error
	// RefundsDue returns up to limit payments marked due and not refunded.
	RefundsDue(ctx context.Context, limit int) ([]Payment, error)
}

// ChargeRequest is one charge to the payment provider.
type ChargeRequest struct {
	OrderID        string
	AmountCents    int64
	Currency       string
	PaymentMethod  string // a payment method id or card token from the client
	IdempotencyKey string
}

// Charger takes money. Its errors are apperr errors: PaymentFailed (402) or
// Invalid (400) when the provider refused the charge for certain (nothing
// was charged), anything else when the outcome is unknown.
type Charger interface {
	Charge(ctx context.Context, r ChargeRequest) (providerID string, err error)
	// Refund returns the whole amount of the charge providerID. The
	// idempotency key makes a repeated refund of one payment a no-op.
	Refund(ctx context.Context, providerID, idempotencyKey string) (refundID string, err error)
}

// Service is the payment use case.
type Service struct {
	Orders   Orders
	Payments Payments
	Charger  Charger
	Log      *slog.Logger
	Now      func() time.Time
	// Lease is how long a claim protects a charge in progress; longer than
	// the charger's timeout, so a live charge is never taken over.
	Lease time.Duration
	// WaitInProgress is how long a request waits for a concurrent attempt on
	// the same order to finish before answering 409.
	WaitInProgress time.Duration
	// ChargeTimeout bounds a charge and the writes after it; they run
	// detached from the request so a client hanging up cannot leave a
	// charge unrecorded.
	ChargeTimeout time.Duration
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Pay charges the order orderID for userID with the payment method token,
// at most once per order.
func (s *Service) Pay(ctx context.Context, userID, orderID, token string) (Payment, error) {
	o, err := s.Orders.Get(ctx, orderID)
	if err != nil {
		return Payment{}, err
	}
	if o.UserID != userID {
		return Payment{}, apperr.ErrNotAuthorized
	}
	claim := newToken()
	deadline := s.now().Add(s.WaitInProgress)
	for wait := 20 * time.Millisecond; ; wait = min(wait*2, 250*time.Millisecond) {
		o, err = s.Orders.Update(ctx, orderID, func(o *Order) error {
			return o.BeginPayment(userID, claim, s.now(), s.Lease)
		})
		if !errors.Is(err, ErrInProgress) || !s.now().Before(deadline) {
			break
		}
		// Another request is charging this order: its outcome decides ours
		// (paid -> "already paid"; failed -> we may try).
		select {
		case <-ctx.Done():
			return Payment{}, ErrInProgress
		case <-time.After(wait):
		}
	}
	if err != nil {
		return Payment{}, err
	}

	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.ChargeTimeout)
	defer cancel()

	// A payment stored by an attempt that died before marking the order.
	if p, err := s.Payments.ByOrder(ctx, orderID); err == nil {
		if err := s.markPaid(ctx, p); err != nil {
			return Payment{}, err
		}
		return Payment{}, ErrAlreadyPaid
	} else if !apperr.Is(err, apperr.NotFound) {
		s.release(ctx, orderID, claim, false)
		return Payment{}, err
	}

	stripeID, err := s.Charger.Charge(ctx, ChargeRequest{
		OrderID:        orderID,
		AmountCents:    o.AmountCents(),
		Currency:       "usd",
		PaymentMethod:  token,
		IdempotencyKey: o.IdempotencyKey(),
	})
	if err != nil {
		definite := apperr.Is(err, apperr.PaymentFailed) || apperr.Is(err, apperr.Invalid)
		s.release(ctx, orderID, claim, definite)
		return Payment{}, err
	}

	p := Payment{ID: newObjectIDHex(), OrderID: orderID, StripeID: stripeID}
	if err := s.Payments.Create(ctx, p); err != nil {
		if !apperr.Is(err, apperr.Conflict) {
			// Charged but not recorded: keep the claim so its lease
			// expires and a retry reuses the idempotency key (Stripe
			// answers with this same charge instead of a second one).
			return Payment{}, err
		}
		// Recorded by a takeover of our claim: same idempotency key, so
		// the same charge.
		existing, gerr := s.Payments.ByOrder(ctx, orderID)
		if gerr != nil {
			return Payment{}, gerr
		}
		p = existing
	}
	if err := s.markPaid(ctx, p); err != nil {
		return Payment{}, err
	}
	return p, nil
}

// RefundOrder refunds the payment of a cancelled order, if it has one. The
// orders service never cancels a paid order, so a payment of a cancelled
// order is always one that raced the cancellation: the charge completed
// after the order expired. The refund is first marked due in the database,
// so that a failure or a crash between here and the provider leaves it to
// RefundDue instead of forgetting it.
func (s *Service) RefundOrder(ctx context.Context, orderID string) error {
	p, err := s.Payments.MarkRefundDue(ctx, orderID)
	if apperr.Is(err, apperr.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.refund(ctx, p)
}

// RefundDue refunds every payment marked due and not refunded yet (after a
// failed attempt or a crash); it returns the first error and how many it
// refunded.
func (s *Service) RefundDue(ctx context.Context) (int, error) {
	ps, err := s.Payments.RefundsDue(ctx, 100)
	if err != nil {
		return 0, err
	}
	var first error
	n := 0
	for _, p := range ps {
		if err := s.refund(ctx, p); err != nil {
			first = cmp.Or(first, err)
			continue
		}
		n++
	}
	return n, first
}

func (s *Service) refund(ctx context.Context, p Payment) error {
	if p.RefundID != "" {
		return nil
	}
	refundID, err := s.Charger.Refund(ctx, p.StripeID, "refund-"+p.ID)
	if err != nil {
		return err
	}
	if err := s.Payments.Refunded(ctx, p.ID, refundID); err != nil {
		return err
	}
	s.log().Warn("payment refunded: its order was cancelled while it was being charged",
		"orderId", p.OrderID, "payment", p.ID, "stripeId", p.StripeID, "refund", refundID)
	return nil
}

func (s *Service) release(ctx context.Context, orderID, claim string, definite bool) {
	_, err := s.Orders.Update(ctx, orderID, func(o *Order) error { return o.EndPayment(claim, definite) })
	if err != nil && !errors.Is(err, ErrClaimLost) {
		// The lease expires on its own; the next attempt just waits longer.
		s.log().Warn("releasing payment claim", "orderId", orderID, "err", err)
	}
}

// markPaid records payment p on the order replica. If the order was
// cancelled meanwhile (it expired while it was being charged), the orders
// service will not complete it and its ticket may be someone else's by
// now: the money goes back, and the answer is ErrCancelledWhilePaying. A
// cancellation applied after this write finds the order paid and refunds
// it itself (the listener), so one of the two always does.
func (s *Service) markPaid(ctx context.Context, p Payment) error {
	o, err := s.Orders.Update(ctx, p.OrderID, func(o *Order) error { o.MarkPaid(p.ID); return nil })
	if err != nil {
		// The stored payment is the truth; a later attempt finds it (see
		// Pay) and marks the order then.
		s.log().Warn("marking order paid", "orderId", p.OrderID, "err", err)
		return nil
	}
	if !o.NeedsRefund() {
		return nil
	}
	if err := s.RefundOrder(ctx, p.OrderID); err != nil {
		s.log().Error("refunding the payment of an order cancelled during its charge; the refund sweep retries it",
			"orderId", p.OrderID, "payment", p.ID, "err", err)
	}
	return ErrCancelledWhilePaying
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newObjectIDHex returns a MongoDB-ObjectID-shaped id (24 hex digits, time
// first), the id format of every other resource of the API.
func newObjectIDHex() string {
	var b [12]byte
	t := uint32(time.Now().Unix())
	b[0], b[1], b[2], b[3] = byte(t>>24), byte(t>>16), byte(t>>8), byte(t)
	_, _ = rand.Read(b[4:])
	return hex.EncodeToString(b[:])
}
