package app

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/testenv"
)

// TestRefundOfCancelledOrder: a charge that completes after its order was
// cancelled (it expired meanwhile; the orders service never cancels a paid
// order) is refunded once, whichever of the payment and the cancellation
// reaches the replica first, and even when the first refund attempt fails.
func TestRefundOfCancelledOrder(t *testing.T) {
	cases := []struct {
		name string
		// cancelDuringCharge: order:cancelled is applied while the charge
		// is at Stripe; otherwise after the payment is stored.
		cancelDuringCharge bool
		// refundsDown: Stripe refuses refunds until the sweep's retry.
		refundsDown bool
		wantStatus  int
	}{
		{"cancelled during the charge: 400, refunded", true, false, http.StatusBadRequest},
		{"cancelled after the payment: refunded by the listener", false, false, http.StatusCreated},
		{"refund fails at first: the sweep retries it", false, true, http.StatusCreated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := mustStartPayments(t, func(c *Config) { c.RefundSweep = 300 * time.Millisecond })
			cancelled := h.cancellationsHandled(t)
			h.stripe.FailRefunds(tc.refundsDown)
			orderID := h.order(t, "u1", 20)

			var r response
			if tc.cancelDuringCharge {
				release := h.stripe.Hold()
				t.Cleanup(release)
				done := make(chan response, 1)
				go func() { done <- h.pay(t, "u1", "application/json", payBody(orderID, "pm_card_visa")) }()
				testenv.Eventually(t, 10*time.Second, "the charge at Stripe", func() bool { return len(h.stripe.Calls()) == 1 })
				h.cancel(t, orderID, 1)
				h.waitOrder(t, orderID, func(d bson.M) bool { return d["status"] == string(events.OrderCancelled) })
				release()
				r = <-done
			} else {
				r = h.pay(t, "u1", "application/json", payBody(orderID, "pm_card_visa"))
				h.waitOrder(t, orderID, func(d bson.M) bool { return d["paymentId"] != nil })
				h.cancel(t, orderID, 1)
			}
			if r.Status != tc.wantStatus {
				t.Fatalf("payment: %d %s, want %d", r.Status, r.Raw, tc.wantStatus)
			}
			if tc.wantStatus == http.StatusBadRequest && !strings.Contains(r.errors()[0]["message"].(string), "refunded") {
				t.Fatalf("payment answer %s does not say the payment is refunded", r.Raw)
			}

			if tc.refundsDown {
				testenv.Eventually(t, 10*time.Second, "a failed refund attempt", func() bool { return len(h.stripe.Refunds()) > 0 })
				if p := h.paymentsOf(t, orderID); len(p) != 1 || p[0]["refundDue"] != true || p[0]["refundId"] != nil {
					t.Fatalf("after a failed refund the payment is %v, want marked due", p)
				}
				h.stripe.FailRefunds(false)
			}
			var p bson.M
			testenv.Eventually(t, 15*time.Second, "refund recorded", func() bool {
				ps := h.paymentsOf(t, orderID)
				if len(ps) != 1 {
					return false
				}
				p = ps[0]
				return p["refundId"] != nil
			})
			if id, _ := p["refundId"].(string); !strings.HasPrefix(id, "re_") || p["refundDue"] != nil {
				t.Fatalf("refunded payment %v, want a Stripe refund id and no refundDue", p)
			}

			// Duplicates of the cancellation refund nothing more: once the
			// service has handled both deliveries, and a refund sweep has
			// run after that.
			h.cancel(t, orderID, 1)
			h.waitCancellationsHandled(t, cancelled, 2)
			h.waitSweeps(t, 1)
			refunds := h.stripe.Refunds()
			for _, c := range refunds {
				if c.Form.Get("payment_intent") != p["stripeId"] || c.IdempotencyKey != "refund-"+p["_id"].(string) {
					t.Errorf("refund request %+v, want payment_intent %v with key refund-%v", c, p["stripeId"], p["_id"])
				}
			}
			// (A failed attempt is retried, by the SDK and by the sweep,
			// with the same key: Stripe makes those one refund.)
			if !tc.refundsDown && len(refunds) != 1 {
				t.Errorf("%d refund requests, want 1", len(refunds))
			}
			if n := len(h.stripe.Calls()); n != 1 {
				t.Errorf("%d charge requests, want 1", n)
			}
		})
	}
}

// TestNoRefundOfPaidOrder: a paid order that is not cancelled is not
// refunded, by the listener or the sweep.
func TestNoRefundOfPaidOrder(t *testing.T) {
	h := mustStartPayments(t, func(c *Config) { c.RefundSweep = 100 * time.Millisecond })
	cancelled := h.cancellationsHandled(t)
	orderID := h.order(t, "u1", 20)
	if r := h.pay(t, "u1", "application/json", payBody(orderID, "pm_card_visa")); r.Status != http.StatusCreated {
		t.Fatalf("payment: %d %s", r.Status, r.Raw)
	}
	// Another order's cancellation, handled after this payment.
	other := h.order(t, "u2", 5)
	h.cancel(t, other, 1)
	h.waitOrder(t, other, func(d bson.M) bool { return d["status"] == string(events.OrderCancelled) })
	h.waitCancellationsHandled(t, cancelled, 1)
	h.waitSweeps(t, 3) // a few sweeps, after the payment and the cancellation
	if n := len(h.stripe.Refunds()); n != 0 {
		t.Fatalf("%d refund requests for a paid order", n)
	}
	var p bson.M
	if err := h.db.Collection("payments").FindOne(context.Background(), bson.M{"orderId": orderID}).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p["refundDue"] != nil || p["refundId"] != nil {
		t.Fatalf("paid order's payment %v is marked for a refund", p)
	}
}
