package app

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/testenv"
)

// TestCreate covers POST /api/payments: the success and every error.
func TestCreate(t *testing.T) {
	h := mustStartPayments(t)
	const owner, other = "user-owner", "user-other"

	paid := h.order(t, owner, 20)
	if r := h.pay(t, owner, "application/json", payBody(paid, "pm_card_visa")); r.Status != http.StatusCreated {
		t.Fatalf("paying an order: %d %s", r.Status, r.Raw)
	}
	cancelled := h.order(t, owner, 20)
	h.cancel(t, cancelled, 1)
	h.waitOrder(t, cancelled, func(d bson.M) bool { return d["status"] == string(events.OrderCancelled) })
	open := h.order(t, owner, 20)

	cases := []struct {
		name        string
		user        string
		contentType string
		body        string
		status      int
		message     string
		fields      []string
	}{
		{"create401 anonymous", "", "application/json", payBody(open, "pm_card_visa"), 401, "Not authorized", nil},
		{"create401 not the owner", other, "application/json", payBody(open, "pm_card_visa"), 401, "Not authorized", nil},
		{"create400 missing both", owner, "application/json", `{}`, 400, "", []string{"orderId", "token"}},
		{"create400 missing token", owner, "application/json", `{"orderId":"` + open + `"}`, 400, "Token must be provided", []string{"token"}},
		{"create400 blank orderId", owner, "application/json", `{"orderId":"  ","token":"pm_card_visa"}`, 400, "OrderId must be provided", []string{"orderId"}},
		{"create400 wrong type", owner, "application/json", `{"orderId":5,"token":"pm_card_visa"}`, 400, "", []string{"orderId"}},
		{"create400 malformed JSON", owner, "application/json", `{"orderId":`, 400, "Request body is not valid JSON", nil},
		{"create400 empty body", owner, "application/json", ``, 400, "Request body must not be empty", nil},
		{"create400 not an object", owner, "application/json", `["` + open + `"]`, 400, "Request body must be a JSON object", nil},
		{"create400 token wrong type", owner, "application/json", `{"orderId":"` + open + `","token":{"card":1}}`, 400, "", []string{"token"}},
		{"create415 not JSON", owner, "text/plain", `orderId=x`, 415, "Content-Type must be application/json", nil},
		{"create404 unknown order", owner, "application/json", payBody(newID(), "pm_card_visa"), 404, "Not Found", nil},
		{"create404 malformed order id", owner, "application/json", payBody("not-an-id", "pm_card_visa"), 404, "Not Found", nil},
		{"create400 cancelled", owner, "application/json", payBody(cancelled, "pm_card_visa"), 400, "Cannot pay for a cancelled order", nil},
		{"create400 already paid", owner, "application/json", payBody(paid, "pm_card_visa"), 400, "Order already paid", nil},
		{"create402 declined", owner, "application/json", payBody(open, "pm_card_chargeDeclined"), 402, declinedMessage, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(h.stripe.Calls())
			r := h.pay(t, c.user, c.contentType, c.body)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Raw)
			}
			errs := r.errors()
			if len(errs) == 0 {
				t.Fatalf("no errors in %s", r.Raw)
			}
			if c.message != "" && errs[0]["message"] != c.message {
				t.Errorf("message %q, want %q", errs[0]["message"], c.message)
			}
			if c.fields != nil {
				var got []string
				for _, e := range errs {
					f, _ := e["field"].(string)
					got = append(got, f)
				}
				if strings.Join(got, ",") != strings.Join(c.fields, ",") {
					t.Errorf("fields %v, want %v", got, c.fields)
				}
			}
			charged := len(h.stripe.Calls()) - before
			if want := map[bool]int{true: 1, false: 0}[c.status == 402]; charged != want {
				t.Errorf("%d charge requests, want %d", charged, want)
			}
		})
	}
	if got := h.paymentsOf(t, open); len(got) != 0 {
		t.Fatalf("declined order has payments %v", got)
	}
	if got := h.paymentsOf(t, cancelled); len(got) != 0 {
		t.Fatalf("cancelled order has payments %v", got)
	}
}

// TestCreate201 checks what a successful payment sends to Stripe, stores and
// publishes.
func TestCreate201(t *testing.T) {
	h := mustStartPayments(t)
	obs := h.observePayments(t)
	orderID := h.order(t, "u1", 12.34)

	r := h.pay(t, "u1", "application/json", payBody(orderID, "pm_card_visa"))
	if r.Status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.Status, r.Raw)
	}
	id, _ := r.Body["id"].(string)
	if len(id) != 24 {
		t.Fatalf("payment id %q", id)
	}

	calls := h.stripe.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d charge requests, want 1", len(calls))
	}
	f := calls[0].Form
	for k, want := range map[string]string{"amount": "1234", "currency": "usd", "confirm": "true", "payment_method": "pm_card_visa",
		"automatic_payment_methods[allow_redirects]": "never", "metadata[orderId]": orderID} {
		if got := f.Get(k); got != want {
			t.Errorf("charge %s = %q, want %q", k, got, want)
		}
	}
	if want := "order-" + orderID + "-0"; calls[0].IdempotencyKey != want {
		t.Errorf("idempotency key %q, want %q", calls[0].IdempotencyKey, want)
	}

	docs := h.paymentsOf(t, orderID)
	if len(docs) != 1 || docs[0]["_id"] != id {
		t.Fatalf("stored payments %v, want one with id %s", docs, id)
	}
	stripeID, _ := docs[0]["stripeId"].(string)
	if !strings.HasPrefix(stripeID, "pi_") {
		t.Fatalf("stripeId %q", stripeID)
	}
	h.waitOrder(t, orderID, func(d bson.M) bool { return d["paymentId"] == id && d["claim"] == nil })

	testenv.Eventually(t, 15*time.Second, "payment:created", func() bool { return len(obs.forOrder(orderID)) > 0 })
	got := obs.forOrder(orderID)[0]
	if got != (events.PaymentCreated{ID: id, OrderID: orderID, StripeID: stripeID}) {
		t.Fatalf("payment:created %+v, want id %s stripeId %s", got, id, stripeID)
	}
}

// TestDeclinedThenPaid: a decline stores nothing, and the next attempt is a
// new charge (a new idempotency key, or Stripe would replay the decline).
func TestDeclinedThenPaid(t *testing.T) {
	h := mustStartPayments(t)
	orderID := h.order(t, "u1", 5)
	if r := h.pay(t, "u1", "application/json", payBody(orderID, "pm_card_chargeDeclined")); r.Status != http.StatusPaymentRequired {
		t.Fatalf("declined: %d %s", r.Status, r.Raw)
	}
	doc := h.waitOrder(t, orderID, func(bson.M) bool { return true })
	if doc["claim"] != nil || doc["paymentId"] != nil {
		t.Fatalf("after a decline the order is %v", doc)
	}
	if r := h.pay(t, "u1", "application/json", payBody(orderID, "pm_card_visa")); r.Status != http.StatusCreated {
		t.Fatalf("second attempt: %d %s", r.Status, r.Raw)
	}
	calls := h.stripe.Calls()
	if len(calls) != 2 || calls[0].IdempotencyKey == calls[1].IdempotencyKey {
		t.Fatalf("charge requests %+v, want two with different idempotency keys", calls)
	}
	if got := h.paymentsOf(t, orderID); len(got) != 1 {
		t.Fatalf("payments %v, want one", got)
	}
}

// TestDoublePaymentRace: concurrent payments of one order charge once.
func TestDoublePaymentRace(t *testing.T) {
	h := mustStartPayments(t)
	// Hold each charge long enough that every request is in flight while
	// the first one charges.
	h.stripe.SetDelay(300 * time.Millisecond)
	const n = 5
	for round := range 3 {
		orderID := h.order(t, "u1", 10)
		before := len(h.stripe.Calls())
		results := make([]response, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i] = h.pay(t, "u1", "application/json", payBody(orderID, "pm_card_visa"))
			}()
		}
		close(start)
		wg.Wait()
		created := 0
		for _, r := range results {
			switch {
			case r.Status == http.StatusCreated:
				created++
			case r.Status == http.StatusBadRequest && r.errors()[0]["message"] == "Order already paid":
			default:
				t.Errorf("round %d: unexpected answer %d %s", round, r.Status, r.Raw)
			}
		}
		if created != 1 {
			t.Errorf("round %d: %d answers 201, want 1", round, created)
		}
		if charged := len(h.stripe.Calls()) - before; charged != 1 {
			t.Errorf("round %d: %d charge requests, want 1", round, charged)
		}
		if got := h.paymentsOf(t, orderID); len(got) != 1 {
			t.Errorf("round %d: %d payments stored, want 1", round, len(got))
		}
	}
}

// TestReplicaOrder: order:cancelled arriving before order:created, and
// duplicates, leave the replica cancelled; paying is refused.
func TestReplicaOrder(t *testing.T) {
	h := mustStartPayments(t)
	id := newID()
	h.cancel(t, id, 1)
	h.publish(t, events.OrderCreatedEvent{ID: id, Version: 0, Status: events.OrderCreated, UserID: "u1",
		ExpiresAt: time.Now().Add(time.Minute), Ticket: events.OrderTicket{ID: newID(), Price: 10}})
	h.publish(t, events.OrderCreatedEvent{ID: id, Version: 0, Status: events.OrderCreated, UserID: "u1",
		ExpiresAt: time.Now().Add(time.Minute), Ticket: events.OrderTicket{ID: newID(), Price: 10}})
	h.cancel(t, id, 1)
	doc := h.waitOrder(t, id, func(d bson.M) bool { return d["status"] == string(events.OrderCancelled) })
	if doc["version"] != int64(1) || doc["userId"] != "u1" || doc["price"] != 10.0 {
		t.Fatalf("replica %v, want version 1 of u1's order at 10", doc)
	}
	// An expired order is cancelled by the orders service the same way.
	r := h.pay(t, "u1", "application/json", payBody(id, "pm_card_visa"))
	if r.Status != http.StatusBadRequest || r.errors()[0]["message"] != "Cannot pay for a cancelled order" {
		t.Fatalf("paying a cancelled order: %d %s", r.Status, r.Raw)
	}
	if len(h.stripe.Calls()) != 0 {
		t.Fatal("a cancelled order was charged")
	}
}
