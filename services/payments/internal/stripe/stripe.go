// Package stripe is the payments service's adapter to Stripe: one confirmed
// PaymentIntent per charge, and a refund of it when its order was cancelled
// meanwhile, each with the caller's idempotency key.
package stripe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	stripe "github.com/stripe/stripe-go/v82"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/services/payments/internal/domain"
)

// Charger charges through the Stripe API (or stripe-mock).
type Charger struct {
	client *stripe.Client
}

// New returns a Charger using key against apiBase ("" = Stripe's own API).
// timeout bounds one API call including the SDK's retries.
func New(key, apiBase string, timeout time.Duration) *Charger {
	cfg := &stripe.BackendConfig{
		HTTPClient: &http.Client{Timeout: timeout},
		// The SDK retries network failures with the same idempotency key,
		// which is safe; keep it short so the request stays bounded.
		MaxNetworkRetries: stripe.Int64(1),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	}
	if apiBase != "" {
		cfg.URL = stripe.String(apiBase)
	}
	backends := &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, cfg),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, cfg),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, cfg),
	}
	return &Charger{client: stripe.NewClient(key, stripe.WithBackends(backends))}
}

// Charge creates and confirms a PaymentIntent for r. Refusals by Stripe
// (card errors, invalid requests) come back as PaymentFailed (402) or
// Invalid (400) carrying Stripe's message; everything else is Unavailable
// (the outcome is unknown and a retry reuses the idempotency key).
func (c *Charger) Charge(ctx context.Context, r domain.ChargeRequest) (string, error) {
	p := &stripe.PaymentIntentCreateParams{
		Amount:        stripe.Int64(r.AmountCents),
		Currency:      stripe.String(r.Currency),
		PaymentMethod: stripe.String(r.PaymentMethod),
		Confirm:       stripe.Bool(true),
		// No redirect-based methods: the API has no return URL to offer.
		AutomaticPaymentMethods: &stripe.PaymentIntentCreateAutomaticPaymentMethodsParams{
			Enabled:        stripe.Bool(true),
			AllowRedirects: stripe.String("never"),
		},
		Description: stripe.String("ticketing order " + r.OrderID),
	}
	p.AddMetadata("orderId", r.OrderID)
	p.SetIdempotencyKey(r.IdempotencyKey)

	pi, err := c.client.V1PaymentIntents.Create(ctx, p)
	if err != nil {
		return "", classify(err)
	}
	switch pi.Status {
	case stripe.PaymentIntentStatusSucceeded, stripe.PaymentIntentStatusProcessing:
		return pi.ID, nil
	case stripe.PaymentIntentStatusRequiresAction:
		return "", apperr.New(apperr.PaymentFailed, "This payment requires additional authentication, which is not supported; use another card")
	default:
		msg := "The payment was not completed"
		if pi.LastPaymentError != nil && pi.LastPaymentError.Msg != "" {
			msg = pi.LastPaymentError.Msg
		}
		return "", &apperr.Error{Code: apperr.PaymentFailed, Message: msg,
			Err: fmt.Errorf("payment intent %s in status %s", pi.ID, pi.Status)}
	}
}

// Refund refunds the whole PaymentIntent paymentIntentID. Stripe answers a
// repeated request with the same idempotency key with the first refund; a
// PaymentIntent refunded already by other means is refused (an error).
func (c *Charger) Refund(ctx context.Context, paymentIntentID, idempotencyKey string) (string, error) {
	p := &stripe.RefundCreateParams{PaymentIntent: stripe.String(paymentIntentID)}
	p.AddMetadata("reason", "order cancelled while it was being paid")
	p.SetIdempotencyKey(idempotencyKey)
	r, err := c.client.V1Refunds.Create(ctx, p)
	if err != nil {
		return "", classify(err)
	}
	return r.ID, nil
}

func classify(err error) error {
	var se *stripe.Error
	if !errors.As(err, &se) {
		return apperr.Wrap(apperr.Unavailable, "The payment provider is unavailable, try again", err)
	}
	msg := se.Msg
	if msg == "" {
		msg = "The payment was declined"
	}
	switch se.Type {
	case stripe.ErrorTypeCard:
		return &apperr.Error{Code: apperr.PaymentFailed, Message: msg, Err: err}
	case stripe.ErrorTypeInvalidRequest:
		if se.HTTPStatusCode == http.StatusUnauthorized || se.HTTPStatusCode == http.StatusForbidden {
			return apperr.Wrap(apperr.Internal, "stripe refused the API key", err)
		}
		if se.Code == stripe.ErrorCodeIdempotencyKeyInUse {
			// The same attempt is still running at Stripe.
			return apperr.Wrap(apperr.Unavailable, "The payment is being processed, try again", err)
		}
		return &apperr.Error{Code: apperr.Invalid, Message: msg, Err: err}
	case stripe.ErrorTypeIdempotency:
		return &apperr.Error{Code: apperr.Invalid, Message: msg, Err: err}
	default:
		return apperr.Wrap(apperr.Unavailable, "The payment provider is unavailable, try again", err)
	}
}
