package stripe

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/services/payments/internal/domain"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func request(key string) domain.ChargeRequest {
	return domain.ChargeRequest{OrderID: "o1", AmountCents: 2000, Currency: "usd", PaymentMethod: "pm_card_visa", IdempotencyKey: key}
}

// TestChargeStripeMock: the request the adapter builds is valid for Stripe's
// API (stripe-mock validates it against the OpenAPI spec).
func TestChargeStripeMock(t *testing.T) {
	c := New("sk_test_123", testenv.StripeMock(t), 10*time.Second)
	id, err := c.Charge(context.Background(), request("order-o1-0"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "pi_") {
		t.Fatalf("id %q, want a PaymentIntent id", id)
	}
}

// TestRefundStripeMock: the refund request is valid for Stripe's API.
func TestRefundStripeMock(t *testing.T) {
	c := New("sk_test_123", testenv.StripeMock(t), 10*time.Second)
	pi, err := c.Charge(context.Background(), request("order-o2-0"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Refund(context.Background(), pi, "refund-p1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "re_") {
		t.Fatalf("id %q, want a Refund id", id)
	}
}

// TestChargeErrors: how Stripe's answers become API errors, and whether the
// charge certainly did not happen (402/400) or the outcome is unknown.
func TestChargeErrors(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		body    string
		code    apperr.Code
		message string
	}{
		{"declined", 402, `{"error":{"type":"card_error","code":"card_declined","message":"Your card was declined."}}`,
			apperr.PaymentFailed, "Your card was declined."},
		{"invalid request", 400, `{"error":{"type":"invalid_request_error","message":"Amount must be at least $0.50 usd","param":"amount"}}`,
			apperr.Invalid, "Amount must be at least $0.50 usd"},
		{"bad key", 401, `{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}`,
			apperr.Internal, ""},
		{"stripe down", 500, `{"error":{"type":"api_error","message":"boom"}}`,
			apperr.Unavailable, "The payment provider is unavailable, try again"},
		{"key in use", 409, `{"error":{"type":"invalid_request_error","code":"idempotency_key_in_use","message":"in use"}}`,
			apperr.Unavailable, "The payment is being processed, try again"},
		{"requires action", 200, `{"id":"pi_1","object":"payment_intent","status":"requires_action"}`,
			apperr.PaymentFailed, ""},
		{"not completed", 200, `{"id":"pi_1","object":"payment_intent","status":"requires_payment_method","last_payment_error":{"type":"card_error","message":"Insufficient funds."}}`,
			apperr.PaymentFailed, "Insufficient funds."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Stripe-Should-Retry", "false")
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			_, err := New("sk_test_123", srv.URL, 5*time.Second).Charge(context.Background(), request("k"))
			if got := apperr.CodeOf(err); got != c.code {
				t.Fatalf("code %s, want %s (%v)", got, c.code, err)
			}
			var e *apperr.Error
			if c.message != "" && (!errors.As(err, &e) || e.Message != c.message) {
				t.Fatalf("message of %v, want %q", err, c.message)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		_, err := New("sk_test_123", url, 2*time.Second).Charge(context.Background(), request("k"))
		if apperr.CodeOf(err) != apperr.Unavailable {
			t.Fatalf("%v, want unavailable", err)
		}
	})
}
