package domain

import (
	"errors"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
)

func TestBeginPayment(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		order Order
		user  string
		want  error
	}{
		{"payable", Order{UserID: "u1", Status: events.OrderCreated}, "u1", nil},
		{"awaiting payment is payable", Order{UserID: "u1", Status: events.OrderAwaitingPayment}, "u1", nil},
		{"not the owner", Order{UserID: "u1", Status: events.OrderCreated}, "u2", apperr.ErrNotAuthorized},
		{"cancelled", Order{UserID: "u1", Status: events.OrderCancelled}, "u1", ErrCancelled},
		{"paid", Order{UserID: "u1", Status: events.OrderCreated, PaymentID: "p1"}, "u1", ErrAlreadyPaid},
		{"complete", Order{UserID: "u1", Status: events.OrderComplete}, "u1", ErrAlreadyPaid},
		{"claimed", Order{UserID: "u1", Status: events.OrderCreated, Claim: &Claim{Token: "a", Until: now.Add(time.Second)}}, "u1", ErrInProgress},
		{"claim lease expired", Order{UserID: "u1", Status: events.OrderCreated, Claim: &Claim{Token: "a", Until: now}}, "u1", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.order
			err := o.BeginPayment(c.user, "b", now, time.Minute)
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			if c.want == nil && (o.Claim == nil || o.Claim.Token != "b" || !o.Claim.Until.Equal(now.Add(time.Minute))) {
				t.Fatalf("claim %+v, want b until now+1m", o.Claim)
			}
			if c.want != nil && o.Claim != c.order.Claim {
				t.Fatalf("a refused attempt changed the claim")
			}
		})
	}
}

func TestEndPaymentKeys(t *testing.T) {
	o := Order{ID: "o1", UserID: "u1", Status: events.OrderCreated}
	now := time.Now()
	if err := o.BeginPayment("u1", "a", now, time.Minute); err != nil {
		t.Fatal(err)
	}
	k0 := o.IdempotencyKey()
	// Unknown outcome: the retry must replay the same charge at Stripe.
	if err := o.EndPayment("a", false); err != nil {
		t.Fatal(err)
	}
	if o.Claim != nil || o.IdempotencyKey() != k0 {
		t.Fatalf("after an unknown outcome: claim %v key %s, want none and %s", o.Claim, o.IdempotencyKey(), k0)
	}
	_ = o.BeginPayment("u1", "b", now, time.Minute)
	if err := o.EndPayment("a", true); !errors.Is(err, ErrClaimLost) {
		t.Fatalf("releasing another request's claim: %v", err)
	}
	// A decline: the next attempt is a new charge.
	if err := o.EndPayment("b", true); err != nil {
		t.Fatal(err)
	}
	if o.IdempotencyKey() == k0 {
		t.Fatal("the key did not change after a decline")
	}
}

func TestApplyCancelled(t *testing.T) {
	o := Order{Status: events.OrderCreated, Version: 0}
	if err := o.ApplyCancelled(0); !errors.Is(err, ErrStale) {
		t.Fatalf("version 0 over 0: %v", err)
	}
	if err := o.ApplyCancelled(1); err != nil || o.Status != events.OrderCancelled || o.Version != 1 {
		t.Fatalf("version 1: %v %+v", err, o)
	}
	if err := o.ApplyCancelled(1); !errors.Is(err, ErrStale) {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestAmountCents(t *testing.T) {
	for price, want := range map[float64]int64{20: 2000, 12.34: 1234, 0.29: 29, 19.99: 1999} {
		if got := (&Order{Price: price}).AmountCents(); got != want {
			t.Errorf("%v -> %d, want %d", price, got, want)
		}
	}
}

func TestNeedsRefund(t *testing.T) {
	cases := []struct {
		name  string
		order Order
		want  bool
	}{
		{"paid and cancelled", Order{Status: events.OrderCancelled, PaymentID: "p1"}, true},
		{"paid", Order{Status: events.OrderCreated, PaymentID: "p1"}, false},
		{"cancelled unpaid", Order{Status: events.OrderCancelled}, false},
		{"cancelled while a charge is claimed", Order{Status: events.OrderCancelled, Claim: &Claim{Token: "a"}}, false},
	}
	for _, c := range cases {
		if got := c.order.NeedsRefund(); got != c.want {
			t.Errorf("%s: NeedsRefund %v, want %v", c.name, got, c.want)
		}
	}
}
