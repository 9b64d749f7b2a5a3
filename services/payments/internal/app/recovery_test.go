package app

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
)

// TestClaims: what a payment does when another attempt holds or held the
// order (a request in flight elsewhere, or a process that died mid-charge).
func TestClaims(t *testing.T) {
	h := mustStartPayments(t)
	setClaim := func(t *testing.T, orderID string, until time.Time) {
		t.Helper()
		_, err := h.db.Collection("orders").UpdateOne(context.Background(), bson.M{"_id": orderID},
			bson.M{"$set": bson.M{"claim": bson.M{"token": "other", "until": until}}, "$inc": bson.M{"rev": 1}})
		if err != nil {
			t.Fatal(err)
		}
	}

	t.Run("create409 another attempt in progress", func(t *testing.T) {
		orderID := h.order(t, "u1", 10)
		setClaim(t, orderID, time.Now().Add(time.Hour))
		before := len(h.stripe.Calls())
		r := h.pay(t, "u1", "application/json", payBody(orderID, "pm_card_visa"))
		if r.Status != http.StatusConflict || r.errors()[0]["message"] != "A payment for this order is already in progress" {
			t.Fatalf("%d %s, want 409", r.Status, r.Raw)
		}
		if len(h.stripe.Calls()) != before {
			t.Fatal("charged while another attempt held the order")
		}
	})

	t.Run("create201 takes over a dead attempt with its idempotency key", func(t *testing.T) {
		orderID := h.order(t, "u1", 10)
		setClaim(t, orderID, time.Now().Add(-time.Second))
		before := len(h.stripe.Calls())
		r := h.pay(t, "u1", "application/json", payBody(orderID, "pm_card_visa"))
		if r.Status != http.StatusCreated {
			t.Fatalf("%d %s", r.Status, r.Raw)
		}
		calls := h.stripe.Calls()[before:]
		// The dead attempt used key -0 as well: Stripe replays its charge
		// if it happened instead of charging again.
		if len(calls) != 1 || calls[0].IdempotencyKey != "order-"+orderID+"-0" {
			t.Fatalf("charge requests %+v, want one with the first attempt's key", calls)
		}
	})

	t.Run("create400 payment stored by an attempt that died before marking the order", func(t *testing.T) {
		orderID := h.order(t, "u1", 10)
		paymentID := newID()
		_, err := h.db.Collection("payments").InsertOne(context.Background(),
			bson.M{"_id": paymentID, "orderId": orderID, "stripeId": "pi_earlier"})
		if err != nil {
			t.Fatal(err)
		}
		before := len(h.stripe.Calls())
		r := h.pay(t, "u1", "application/json", payBody(orderID, "pm_card_visa"))
		if r.Status != http.StatusBadRequest || r.errors()[0]["message"] != "Order already paid" {
			t.Fatalf("%d %s, want 400 Order already paid", r.Status, r.Raw)
		}
		if len(h.stripe.Calls()) != before {
			t.Fatal("charged an order that has a payment")
		}
		h.waitOrder(t, orderID, func(d bson.M) bool { return d["paymentId"] == paymentID && d["claim"] == nil })
	})
}
