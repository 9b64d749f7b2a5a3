package listeners

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/inorder"
	"github.com/ticketing-go/ticketing/services/tickets/internal/domain"
	"github.com/ticketing-go/ticketing/services/tickets/internal/store"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The handlers are called directly, in a chosen order, on a real store: the
// orders that NATS delivery makes possible but not reproducible.

func setup(t *testing.T, gapWait time.Duration) (*Listeners, *store.Store, string) {
	t.Helper()
	st := store.New(testenv.MongoDatabase(t), nil)
	tk, err := st.Create(context.Background(), domain.Ticket{Title: "concert", Price: 10, UserID: "owner"})
	if err != nil {
		t.Fatal(err)
	}
	return New(st, nil, Options{GapWait: gapWait, CancelWait: gapWait}), st, tk.ID
}

func created(l *Listeners, order, ticket string) error {
	return l.OrderCreated(context.Background(), events.OrderCreatedEvent{ID: order, Ticket: events.OrderTicket{ID: ticket}}, &events.Msg{})
}

func cancelled(l *Listeners, order, ticket string) error {
	return l.OrderCancelled(context.Background(), events.OrderCancelledEvent{ID: order, Ticket: events.OrderTicket{ID: ticket}}, &events.Msg{})
}

func wantTicket(t *testing.T, st *store.Store, id, order string, version int64) {
	t.Helper()
	got, err := st.Get(context.Background(), id)
	if err != nil || got.OrderID != order || got.Version != version {
		t.Fatalf("ticket = %+v, %v; want order %q version %d", got, err, order, version)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestDuplicates(t *testing.T) {
	l, st, id := setup(t, time.Second)
	must(t, created(l, "A", id))
	must(t, created(l, "A", id))
	wantTicket(t, st, id, "A", 1)
	must(t, cancelled(l, "A", id))
	must(t, cancelled(l, "A", id))
	must(t, created(l, "A", id)) // redelivered creation of the cancelled order
	wantTicket(t, st, id, "", 2)
	must(t, created(l, "B", id))
	must(t, cancelled(l, "A", id)) // stale: B keeps the ticket
	wantTicket(t, st, id, "B", 3)
}

// TestNextOrderWaitsForCancellation: order B's creation arrives while A
// still holds the ticket; it waits in process and applies right after A's
// cancellation.
func TestNextOrderWaitsForCancellation(t *testing.T) {
	l, st, id := setup(t, 30*time.Second)
	must(t, created(l, "A", id))
	done := make(chan error, 1)
	go func() { done <- created(l, "B", id) }()
	must(t, cancelled(l, "A", id))
	must(t, <-done)
	wantTicket(t, st, id, "B", 3)
}

// TestCancellationWaitsForCreation: a cancellation before its creation waits
// for it, so both apply in order.
func TestCancellationWaitsForCreation(t *testing.T) {
	l, st, id := setup(t, 30*time.Second)
	done := make(chan error, 1)
	go func() { done <- cancelled(l, "A", id) }()
	must(t, created(l, "A", id))
	must(t, <-done)
	wantTicket(t, st, id, "", 2)
}

// TestCancellationWithoutCreation: the creation does not come within the
// wait; the cancellation is recorded without a new version, and the late
// creation is stale.
func TestCancellationWithoutCreation(t *testing.T) {
	l, st, id := setup(t, 50*time.Millisecond)
	must(t, cancelled(l, "A", id))
	wantTicket(t, st, id, "", 0)
	must(t, created(l, "A", id))
	wantTicket(t, st, id, "", 0)
}

// TestCancellationGivesUpWaitingEarly: a cancellation waits for its
// creation only CancelWait, not GapWait (see OrderCancelled): it is then
// recorded, and the creation that comes afterwards is stale.
func TestCancellationGivesUpWaitingEarly(t *testing.T) {
	st := store.New(testenv.MongoDatabase(t), nil)
	tk, err := st.Create(context.Background(), domain.Ticket{Title: "concert", Price: 10, UserID: "owner"})
	must(t, err)
	l := New(st, nil, Options{GapWait: time.Hour, CancelWait: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- cancelled(l, "A", tk.ID) }()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(time.Minute): // GapWait would be an hour
		t.Fatal("the cancellation waited for its creation longer than CancelWait")
	}
	wantTicket(t, st, tk.ID, "", 0)
	must(t, created(l, "A", tk.ID))
	wantTicket(t, st, tk.ID, "", 0)
}

// TestCreationStuckBehindAnotherOrder: B holds the ticket (its creation came
// first); A's creation cannot apply and is left for redelivery; A's
// cancellation, which can never find A holding the ticket, is recorded, and
// the redelivered creation of A is then stale. A never holds the ticket,
// not even after B lets it go.
func TestCreationStuckBehindAnotherOrder(t *testing.T) {
	l, st, id := setup(t, 50*time.Millisecond)
	must(t, created(l, "B", id))
	if err := created(l, "A", id); !errors.Is(err, inorder.ErrGap) {
		t.Fatalf("created(A) while B holds = %v, want ErrGap (no ack)", err)
	}
	must(t, cancelled(l, "A", id))
	wantTicket(t, st, id, "B", 1)
	must(t, cancelled(l, "B", id))
	must(t, created(l, "A", id)) // the redelivery
	wantTicket(t, st, id, "", 2)
}

func TestPoison(t *testing.T) {
	l, _, id := setup(t, time.Second)
	for _, ticket := range []string{"0123456789abcdef01234567", "malformed", ""} {
		if err := created(l, "A", ticket); !events.IsPoison(err) {
			t.Fatalf("created for ticket %q = %v, want poison", ticket, err)
		}
		if err := cancelled(l, "A", ticket); !events.IsPoison(err) {
			t.Fatalf("cancelled for ticket %q = %v, want poison", ticket, err)
		}
	}
	if err := created(l, "", id); !events.IsPoison(err) {
		t.Fatalf("created without an order id = %v, want poison", err)
	}
}
