package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/services/tickets/internal/listeners"
	"github.com/ticketing-go/ticketing/testenv"
)

func publish(t testing.TB, conn *events.Conn, e events.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Publish(ctx, e); err != nil {
		t.Fatalf("publish %s: %v", e.Subject(), err)
	}
}

// newID is a fresh ObjectId, as the orders service gives its orders.
func newID() string { return primitive.NewObjectID().Hex() }

func publishOrderCreated(t testing.TB, conn *events.Conn, orderID, ticketID string) {
	t.Helper()
	publish(t, conn, events.OrderCreatedEvent{ID: orderID, Version: 0, Status: events.OrderCreated, UserID: "buyer",
		ExpiresAt: time.Now().Add(15 * time.Minute), Ticket: events.OrderTicket{ID: ticketID, Price: 10}})
}

func publishOrderCancelled(t testing.TB, conn *events.Conn, orderID, ticketID string) {
	t.Helper()
	publish(t, conn, events.OrderCancelledEvent{ID: orderID, Version: 1, Ticket: events.OrderTicket{ID: ticketID}})
}

type orderEvent struct {
	cancel bool
	order  string
}

// step publishes a batch of order events at once (handled concurrently, in
// any order) and then expects the ticket's state: every interleaving must
// end there.
type step struct {
	batch     []orderEvent
	wantOrder string // "" = free
	version   int64
}

// TestOrderEvents publishes order events for one ticket through NATS, with
// duplicates, stale and early events in a batch, and checks the ticket's
// state, its version (each real change counted once) and its events after
// every batch.
func TestOrderEvents(t *testing.T) {
	created := func(o string) orderEvent { return orderEvent{false, o} }
	cancelled := func(o string) orderEvent { return orderEvent{true, o} }
	tests := []struct {
		name  string
		steps []step
	}{
		{"order:created reserves", []step{{[]orderEvent{created("A")}, "A", 1}}},
		{"order:cancelled frees", []step{{[]orderEvent{created("A")}, "A", 1}, {[]orderEvent{cancelled("A")}, "", 2}}},
		{"duplicate order:created", []step{{[]orderEvent{created("A"), created("A"), created("A")}, "A", 1}}},
		{"duplicate order:cancelled", []step{
			{[]orderEvent{created("A")}, "A", 1},
			{[]orderEvent{cancelled("A"), cancelled("A"), cancelled("A")}, "", 2},
		}},
		{"redelivered creation of a cancelled order", []step{
			{[]orderEvent{created("A")}, "A", 1},
			{[]orderEvent{cancelled("A")}, "", 2},
			{[]orderEvent{created("A")}, "", 2},
		}},
		{"stale cancellation keeps the new order's hold", []step{
			{[]orderEvent{created("A")}, "A", 1},
			{[]orderEvent{cancelled("A")}, "", 2},
			{[]orderEvent{created("B"), cancelled("A")}, "B", 3},
		}},
		{"next order's creation with the cancellation", []step{
			{[]orderEvent{created("A")}, "A", 1},
			{[]orderEvent{created("B"), cancelled("A")}, "B", 3},
		}},
		{"creation and cancellation together", []step{{[]orderEvent{cancelled("A"), created("A")}, "", 2}}},
		{"everything twice", []step{{[]orderEvent{created("A"), cancelled("A"), created("A"), cancelled("A")}, "", 2}}},
	}
	// Cancellations wait as long as creations here: the batches check every
	// interleaving's end state, not how long a cancellation waits.
	e := MustStart(t, appOptions{listen: listeners.Options{GapWait: 20 * time.Second, CancelWait: 20 * time.Second}})
	final := map[string]int64{} // ticket id -> version
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := e.app.MustCreate(t, "owner", "concert", 10)
			orders := map[string]string{} // "A" -> a fresh order id
			orderID := func(name string) string {
				if name != "" && orders[name] == "" {
					orders[name] = newID()
				}
				return orders[name]
			}
			for i, st := range tt.steps {
				for _, ev := range st.batch {
					if ev.cancel {
						publishOrderCancelled(t, e.pub, orderID(ev.order), tk.ID)
					} else {
						publishOrderCreated(t, e.pub, orderID(ev.order), tk.ID)
					}
				}
				evs := e.obs.waitVersions(t, tk.ID, st.version)
				wantOrder := orderID(st.wantOrder)
				testenv.Eventually(t, eventualWait, fmt.Sprintf("step %d applied", i), func() bool {
					got := e.app.MustGet(t, tk.ID)
					return got.Version == st.version && got.OrderID == wantOrder
				})
				last := evs[len(evs)-1].Ticket
				if last.Version != st.version || last.OrderID != wantOrder || last.Title != "concert" {
					t.Fatalf("step %d: last event %+v, want version %d order %q", i, last, st.version, wantOrder)
				}
			}
			final[tk.ID] = tt.steps[len(tt.steps)-1].version
		})
	}
	// Once the service has stopped (closing lets handlers in flight
	// finish), no late duplicate may have changed anything.
	e.app.stop()
	for id, v := range final {
		got, err := e.app.store.Get(context.Background(), id)
		if err != nil || got.Version != v {
			t.Fatalf("after stop: ticket %s = %+v, %v; want version %d", id, got, err, v)
		}
	}
}

// TestOrderEventRedelivery: an order:created that cannot apply yet (another
// order still holds the ticket) gives up waiting in process, is not
// acknowledged, and applies when NATS redelivers it after the cancellation.
func TestOrderEventRedelivery(t *testing.T) {
	e := MustStart(t, appOptions{listen: listeners.Options{GapWait: 50 * time.Millisecond, AckWait: time.Second, MaxDeliveries: 1000}})
	tk := e.app.MustCreate(t, "owner", "concert", 10)
	a, b := newID(), newID()
	publishOrderCreated(t, e.pub, a, tk.ID)
	e.obs.waitVersions(t, tk.ID, 1)
	publishOrderCreated(t, e.pub, b, tk.ID)
	// Let B fail at least once (its gate wait is short), then free the ticket.
	testenv.Eventually(t, eventualWait, "B's first failed attempt", func() bool { return e.app.failures.Load() > 0 })
	publishOrderCancelled(t, e.pub, a, tk.ID)
	e.obs.waitVersions(t, tk.ID, 3)
	if got := e.app.MustGet(t, tk.ID); got.OrderID != b || got.Version != 3 {
		t.Fatalf("ticket = %+v, want held by B at version 3", got)
	}
}

// TestUnknownTicketIsDeadLettered: an order event naming a ticket that does
// not exist can never apply; it goes to the dead-letter subject at once.
func TestUnknownTicketIsDeadLettered(t *testing.T) {
	e := MustStart(t, appOptions{})
	dead := make(chan events.DeadLetter, 4)
	sub := MustConnect(t, e.nats, "dead-letter-test")
	err := sub.Subscribe(events.Subscription{Subject: events.SubjectDeadLetter, QueueGroup: "dl-test"},
		events.Decode(func(_ context.Context, d events.DeadLetter, _ *events.Msg) error { dead <- d; return nil }))
	if err != nil {
		t.Fatal(err)
	}
	publishOrderCreated(t, e.pub, newID(), "0123456789abcdef01234567")
	publishOrderCancelled(t, e.pub, newID(), "malformed")
	for range 2 {
		select {
		case d := <-dead:
			if d.QueueGroup != listeners.QueueGroup || d.Attempts != 1 {
				t.Fatalf("dead letter %+v", d)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no dead letter")
		}
	}
}
