package domain

import (
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
)

func newOrder(t *testing.T) *Order {
	t.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 678_901_234, time.UTC)
	o := NewOrder("o1", "u1", Ticket{ID: "t1", Title: "concert", Price: 20, Version: 3}, now, 15*time.Minute)
	if want := now.Add(15 * time.Minute).Truncate(time.Millisecond); !o.ExpiresAt.Equal(want) {
		t.Fatalf("ExpiresAt = %v, want %v", o.ExpiresAt, want)
	}
	o.pending = nil // as loaded from the store
	return o
}

func TestNewOrderRecordsCreated(t *testing.T) {
	o := NewOrder("o1", "u1", Ticket{ID: "t1", Price: 20}, time.Now(), time.Minute)
	if o.Status != StatusCreated || o.Version != 0 || !o.HoldsTicket() {
		t.Fatalf("new order = %+v", o)
	}
	evs := o.Pending()
	if len(evs) != 1 {
		t.Fatalf("pending = %v", evs)
	}
	e, ok := evs[0].(events.OrderCreatedEvent)
	if !ok || e.ID != "o1" || e.UserID != "u1" || e.Ticket.ID != "t1" || e.Ticket.Price != 20 || e.Version != 0 || e.Status != StatusCreated {
		t.Fatalf("event = %#v", evs[0])
	}
}

func TestTransitions(t *testing.T) {
	cases := []struct {
		name        string
		from        Status
		do          func(*Order) error
		wantErr     error
		wantStatus  Status
		wantVersion int64
		wantEvent   bool
	}{
		{"cancel created", StatusCreated, (*Order).Cancel, nil, StatusCancelled, 1, true},
		{"cancel awaiting", StatusAwaitingPayment, (*Order).Cancel, nil, StatusCancelled, 1, true},
		{"cancel cancelled is idempotent", StatusCancelled, (*Order).Cancel, nil, StatusCancelled, 0, false},
		{"cancel complete refused", StatusComplete, (*Order).Cancel, ErrCancelCompleted, StatusComplete, 0, false},
		{"expire created", StatusCreated, expire, nil, StatusCancelled, 1, true},
		{"expire awaiting", StatusAwaitingPayment, expire, nil, StatusCancelled, 1, true},
		{"expire complete: nothing", StatusComplete, expire, nil, StatusComplete, 0, false},
		{"expire cancelled: nothing", StatusCancelled, expire, nil, StatusCancelled, 0, false},
		{"complete created, version kept", StatusCreated, (*Order).Complete, nil, StatusComplete, 0, false},
		{"complete awaiting", StatusAwaitingPayment, (*Order).Complete, nil, StatusComplete, 0, false},
		{"complete twice", StatusComplete, (*Order).Complete, nil, StatusComplete, 0, false},
		{"complete cancelled refused", StatusCancelled, (*Order).Complete, ErrPaidCancelled, StatusCancelled, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := newOrder(t)
			o.Status = c.from
			err := c.do(o)
			if err != c.wantErr {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if o.Status != c.wantStatus || o.Version != c.wantVersion {
				t.Fatalf("status %s version %d, want %s %d", o.Status, o.Version, c.wantStatus, c.wantVersion)
			}
			if got := len(o.Pending()) == 1; got != c.wantEvent {
				t.Fatalf("pending = %v", o.Pending())
			}
			if c.wantEvent {
				e := o.Pending()[0].(events.OrderCancelledEvent)
				if e.ID != "o1" || e.Version != 1 || e.Ticket.ID != "t1" {
					t.Fatalf("event = %#v", e)
				}
			}
			if o.HoldsTicket() != (o.Status != StatusCancelled) {
				t.Fatalf("HoldsTicket = %v for %s", o.HoldsTicket(), o.Status)
			}
		})
	}
}

func expire(o *Order) error { o.Expire(); return nil }

func TestCheckOwner(t *testing.T) {
	o := newOrder(t)
	if err := o.CheckOwner("u1"); err != nil {
		t.Fatal(err)
	}
	if err := o.CheckOwner("u2"); !apperr.Is(err, apperr.Unauthorized) {
		t.Fatalf("other user: %v", err)
	}
}
