package app_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ticketing-go/ticketing/testenv"
)

// edits creates a ticket and edits it n times over HTTP; it returns the id.
func edits(t *testing.T, a *instance, n int) string {
	t.Helper()
	tk := a.MustCreate(t, "owner", "v0", 1)
	for i := 1; i <= n; i++ {
		r := a.do(t, req{Method: "PUT", Path: "/api/tickets/" + tk.ID, User: "owner",
			Body: map[string]any{"title": fmt.Sprintf("v%d", i), "price": i + 1}})
		if r.Status != 200 {
			t.Fatalf("PUT %d: %d %s", i, r.Status, r.Body)
		}
	}
	return tk.ID
}

// checkEvents checks that the events of ticket id are versions 0..n in
// order, each carrying the title that version was given by edits.
func checkEvents(t *testing.T, o *observer, id string, n int) {
	t.Helper()
	var last int64 = -1
	for _, ev := range o.waitVersions(t, id, int64(n)) {
		if ev.Ticket.Version == last {
			continue // an at-least-once repeat
		}
		last = ev.Ticket.Version
		if want := fmt.Sprintf("v%d", ev.Ticket.Version); ev.Ticket.Title != want {
			t.Fatalf("event version %d has title %q, want %q", ev.Ticket.Version, ev.Ticket.Title, want)
		}
	}
}

func backlog(t *testing.T, a *instance) int64 {
	t.Helper()
	n, err := a.parts.Relays[0].Backlog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOutboxNATSOutage: changes made while NATS Streaming is down are
// answered at once and their events are delivered when it is back, in
// version order per ticket, none lost.
func TestOutboxNATSOutage(t *testing.T) {
	db := testenv.MongoDatabase(t)
	srv := testenv.DedicatedEventBus(t)
	n := srv.NATS
	obs := MustObserve(t, n)
	a := MustStartApp(t, db, n, appOptions{})

	before := edits(t, a, 2)
	checkEvents(t, obs, before, 2)

	srv.Stop(t)
	const tickets, perTicket = 3, 4
	var ids []string
	for range tickets {
		ids = append(ids, edits(t, a, perTicket))
	}
	if got := backlog(t, a); got == 0 {
		t.Fatalf("backlog = 0 while NATS is down; the events cannot have been published")
	}
	srv.Start(t)

	for _, id := range ids {
		checkEvents(t, obs, id, perTicket)
	}
	testenv.Eventually(t, eventualWait, "an empty outbox", func() bool { return backlog(t, a) == 0 })
}

// TestOutboxCrash: the process dies between the write and the publish (the
// relay never ran); the next process publishes everything, in order.
func TestOutboxCrash(t *testing.T) {
	db := testenv.MongoDatabase(t)
	n := sharedNATS(t)
	obs := MustObserve(t, n)

	first := MustStartApp(t, db, n, appOptions{noRelay: true})
	const tickets, perTicket = 3, 3
	var ids []string
	for range tickets {
		ids = append(ids, edits(t, first, perTicket))
	}
	// Events of one more ticket are taken by a relay whose process context
	// is cancelled at once.
	ids = append(ids, edits(t, first, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := first.parts.Relays[0].Run(ctx); err != nil {
		t.Fatalf("Run on a cancelled context: %v", err)
	}
	first.stop() // the crash

	if got, want := backlog(t, first), int64(tickets*(perTicket+1)+2); got != want {
		t.Fatalf("backlog after the crash = %d, want %d (every change's event pending)", got, want)
	}
	if len(obs.of(ids[0])) != 0 {
		t.Fatalf("events published although no relay ran")
	}

	second := MustStartApp(t, db, n, appOptions{})
	for i, id := range ids {
		want := perTicket
		if i == tickets {
			want = 1
		}
		checkEvents(t, obs, id, want)
	}
	testenv.Eventually(t, eventualWait, "an empty outbox", func() bool { return backlog(t, second) == 0 })
	// The documents keep nothing but the tickets' state.
	tk, err := second.store.Get(context.Background(), ids[0])
	if err != nil || tk.Title != fmt.Sprintf("v%d", perTicket) || tk.Version != perTicket {
		t.Fatalf("ticket after restart = %+v, %v", tk, err)
	}
}
