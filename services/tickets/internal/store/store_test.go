package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/bson"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/common/outbox/outboxtest"
	"github.com/ticketing-go/ticketing/services/tickets/internal/domain"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// storedDoc is a ticket as stored, with the fields outbox.Records owns.
type storedDoc struct {
	doc    `bson:",inline"`
	Outbox []outbox.Entry `bson:"outbox"`
}

// readCount counts the tickets read by Get and by Update.
func (s *Store) readCount() int64 { return s.reads.Load() + s.records.Reads() }

func MustOpenStore(tb testing.TB) (*Store, *outboxtest.Relay) {
	tb.Helper()
	n := &outboxtest.Relay{}
	s := New(testenv.MongoDatabase(tb), n)
	if err := s.EnsureIndexes(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return s, n
}

// pending returns the events waiting in the outbox of ticket id.
func pending(t *testing.T, s *Store, id string) []events.TicketUpdated {
	t.Helper()
	oid, _ := mongox.ObjectID(id)
	var d storedDoc
	if err := s.coll.FindOne(context.Background(), bson.M{"_id": oid}).Decode(&d); err != nil {
		t.Fatal(err)
	}
	var out []events.TicketUpdated
	for _, e := range d.Outbox {
		var ev events.TicketUpdated
		if err := json.Unmarshal(e.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if (ev.Version == 0) != (e.Subject == string(events.SubjectTicketCreated)) {
			t.Fatalf("entry %s carries version %d", e.Subject, ev.Version)
		}
		out = append(out, ev)
	}
	return out
}

func TestCreateGetList(t *testing.T) {
	s, n := MustOpenStore(t)
	ctx := context.Background()
	a, err := s.Create(ctx, domain.Ticket{Title: "a", Price: 1, UserID: "u"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Create(ctx, domain.Ticket{Title: "b", Price: 2, UserID: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Handed()) != 2 {
		t.Fatalf("Notify called %d times, want 2", len(n.Handed()))
	}
	got, err := s.Get(ctx, a.ID)
	if err != nil || got.Title != "a" || got.Version != 0 || got.UserID != "u" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	for _, id := range []string{"nope", "0123456789abcdef01234567", ""} {
		if _, err := s.Get(ctx, id); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("Get(%q) = %v, want NotFound", id, err)
		}
	}
	if evs := pending(t, s, a.ID); len(evs) != 1 || evs[0].Title != "a" || evs[0].ID != a.ID {
		t.Fatalf("outbox of a = %+v", evs)
	}
	if _, err := s.Update(ctx, a.ID, func(t *domain.Ticket) error { return t.Reserve("o1") }); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, 10)
	if err != nil || len(list) != 1 || list[0].ID != b.ID {
		t.Fatalf("List = %+v, %v; want only b", list, err)
	}
}

// The list index exists after every start (EnsureIndexes is idempotent),
// and List through it still answers the free tickets newest first.
func TestEnsureIndexesAndList(t *testing.T) {
	s, _ := MustOpenStore(t) // the first start
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatalf("second start: %v", err)
	}
	specs, err := s.coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sp := range specs {
		var keys bson.D
		if err := bson.Unmarshal(sp.KeysDocument, &keys); err != nil {
			t.Fatal(err)
		}
		if len(keys) == 2 && keys[0].Key == "orderId" && keys[1].Key == "_id" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no {orderId, _id} index among %v", specs)
	}
	var ids []string
	for i := range 6 {
		tk, err := s.Create(ctx, domain.Ticket{Title: fmt.Sprint("t", i), Price: 1, UserID: "u"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	if _, err := s.Update(ctx, ids[4], func(t *domain.Ticket) error { return t.Reserve("o1") }); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tk := range list {
		got = append(got, tk.ID)
	}
	if want := []string{ids[5], ids[3], ids[2]}; !slices.Equal(got, want) {
		t.Fatalf("List(3) = %v, want %v (free tickets, newest first)", got, want)
	}
}

func TestUpdate(t *testing.T) {
	s, n := MustOpenStore(t)
	ctx := context.Background()
	tk, _ := s.Create(ctx, domain.Ticket{Title: "a", Price: 1, UserID: "u"})

	got, err := s.Update(ctx, tk.ID, func(t *domain.Ticket) error {
		t.Title, t.Price = "b", 2
		t.UserID, t.Version, t.ID = "thief", 99, "x" // not the closure's to change
		return nil
	})
	if err != nil || got.Version != 1 || got.Title != "b" || got.UserID != "u" || got.ID != tk.ID {
		t.Fatalf("Update = %+v, %v", got, err)
	}
	if stored, _ := s.Get(ctx, tk.ID); stored.Version != 1 || stored.UserID != "u" || stored.Title != "b" {
		t.Fatalf("stored %+v", stored)
	}

	// Errors from the closure, ErrUnchanged included, write nothing.
	boom := errors.New("boom")
	before := len(n.Handed())
	for _, want := range []error{boom, domain.ErrUnchanged} {
		_, err := s.Update(ctx, tk.ID, func(t *domain.Ticket) error { t.Title = "lost"; return want })
		if !errors.Is(err, want) {
			t.Fatalf("Update = %v, want %v", err, want)
		}
	}
	if stored, _ := s.Get(ctx, tk.ID); stored.Version != 1 || stored.Title != "b" {
		t.Fatalf("a refused update was written: %+v", stored)
	}
	if len(n.Handed()) != before {
		t.Fatalf("Notify called for a refused update")
	}
	if _, err := s.Update(ctx, "bad", func(*domain.Ticket) error { return nil }); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("Update(bad id) = %v", err)
	}
	if evs := pending(t, s, tk.ID); len(evs) != 2 || evs[1].Version != 1 || evs[1].Title != "b" {
		t.Fatalf("outbox = %+v", evs)
	}
	// The relay was handed the whole outbox as stored: the creation's entry
	// (still pending: no relay here) and then the update's.
	handed := n.Handed()
	created, updated := handed[0], handed[1]
	if len(created) != 1 || created[0].Subject != string(events.SubjectTicketCreated) {
		t.Fatalf("handed on create: %+v", created)
	}
	if len(updated) != 2 || updated[0].ID != created[0].ID || updated[1].Subject != string(events.SubjectTicketUpdated) {
		t.Fatalf("handed on update: %+v", updated)
	}
}

// TestBookkeeping: a change of the released orders alone is written without
// a new version or event, and still takes part in the concurrency control.
func TestBookkeeping(t *testing.T) {
	s, n := MustOpenStore(t)
	ctx := context.Background()
	tk, _ := s.Create(ctx, domain.Ticket{Title: "a", Price: 1, UserID: "u"})
	notified := len(n.Handed())
	got, err := s.Update(ctx, tk.ID, func(t *domain.Ticket) error { return t.ReleaseUnseen("A") })
	if err != nil || got.Version != 0 {
		t.Fatalf("Update = %+v, %v; want version 0", got, err)
	}
	stored, _ := s.Get(ctx, tk.ID)
	if stored.Version != 0 || len(stored.Released) != 1 || stored.Released[0] != "A" {
		t.Fatalf("stored %+v", stored)
	}
	if evs := pending(t, s, tk.ID); len(evs) != 1 || len(n.Handed()) != notified {
		t.Fatalf("bookkeeping published: outbox %+v, notified %d", evs, len(n.Handed())-notified)
	}
	// The late creation of A is stale now.
	if _, err := s.Update(ctx, tk.ID, func(t *domain.Ticket) error { return t.Reserve("A") }); !errors.Is(err, domain.ErrUnchanged) {
		t.Fatalf("Reserve(A) = %v, want ErrUnchanged", err)
	}

	// Racing: A's cancellation recorded against A's creation. Whatever the
	// order, the ticket ends free (A never holds it, or holds it and is
	// released), and never reserved by the cancelled order.
	for i := range 10 {
		tk, _ := s.Create(ctx, domain.Ticket{Title: "a", Price: 1, UserID: "u"})
		order := fmt.Sprintf("order-%d", i)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, tk.ID, func(t *domain.Ticket) error { return t.ReleaseUnseen(order) })
			if err != nil {
				t.Errorf("ReleaseUnseen: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, tk.ID, func(t *domain.Ticket) error { return t.Reserve(order) })
			if err != nil && !errors.Is(err, domain.ErrUnchanged) {
				t.Errorf("Reserve: %v", err)
			}
		}()
		wg.Wait()
		got, _ := s.Get(ctx, tk.ID)
		if got.Reserved() {
			t.Fatalf("ticket held by cancelled order: %+v", got)
		}
		if evs := pending(t, s, tk.ID); len(evs) != int(got.Version)+1 {
			t.Fatalf("version %d with %d events", got.Version, len(evs))
		}
	}
}

// TestConcurrentUpdates: racing writers all apply, each on its own version,
// and the outbox holds their events in version order.
func TestConcurrentUpdates(t *testing.T) {
	const n = 12
	s, _ := MustOpenStore(t)
	ctx := context.Background()
	tk, _ := s.Create(ctx, domain.Ticket{Title: "a", Price: 1, UserID: "u"})
	var wg sync.WaitGroup
	versions := make(chan int64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// i+2: never the created price (1), so that every update changes the ticket.
			got, err := s.Update(ctx, tk.ID, func(t *domain.Ticket) error { t.Price = float64(i + 2); return nil })
			if err != nil {
				t.Errorf("Update: %v", err)
				return
			}
			versions <- got.Version
		}()
	}
	wg.Wait()
	close(versions)
	seen := map[int64]bool{}
	for v := range versions {
		if seen[v] || v < 1 || v > n {
			t.Fatalf("version %d answered twice or out of 1..%d", v, n)
		}
		seen[v] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct versions, want %d", len(seen), n)
	}
	evs := pending(t, s, tk.ID)
	if len(evs) != n+1 {
		t.Fatalf("%d pending events, want %d", len(evs), n+1)
	}
	for i, ev := range evs {
		if ev.Version != int64(i) {
			t.Fatalf("outbox entry %d has version %d", i, ev.Version)
		}
	}
}

// Updates in a row through one store write on the state it remembers,
// without reading; a second store (another replica) writing in between
// makes the remembered state stale, and the next update reads and applies
// on top of what the other wrote. Closures never decide on a stale state.
func TestRememberedStateSavesReadsButNeverDecides(t *testing.T) {
	a, _ := MustOpenStore(t)
	b := New(a.coll.Database(), nil)
	ctx := context.Background()
	tk, err := a.Create(ctx, domain.Ticket{Title: "t", Price: 1, UserID: "u"})
	if err != nil {
		t.Fatal(err)
	}
	reads := a.readCount()
	for i := 1; i <= 10; i++ {
		got, err := a.Update(ctx, tk.ID, func(t *domain.Ticket) error { t.Price = float64(1 + i); return nil })
		if err != nil || got.Version != int64(i) {
			t.Fatalf("update %d = %+v, %v", i, got, err)
		}
	}
	if n := a.readCount() - reads; n != 0 {
		t.Fatalf("%d reads for 10 updates in a row by one store, want 0", n)
	}

	// b edits: a's remembered state is stale; a's next edit builds on b's.
	if _, err := b.Update(ctx, tk.ID, func(t *domain.Ticket) error { t.Title += "+b"; return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := a.Update(ctx, tk.ID, func(t *domain.Ticket) error { t.Title += "+a"; return nil })
	if err != nil || got.Title != "t+b+a" || got.Version != 12 {
		t.Fatalf("a after b = %+v, %v; want title t+b+a at version 12", got, err)
	}

	// a reserves for o1 and remembers it held; b releases it; a's reservation
	// for o2 is refused on the remembered state but judged on the stored one.
	if _, err := a.Update(ctx, tk.ID, func(t *domain.Ticket) error { return t.Reserve("o1") }); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Update(ctx, tk.ID, func(t *domain.Ticket) error { return t.Release("o1") }); err != nil {
		t.Fatal(err)
	}
	got, err = a.Update(ctx, tk.ID, func(t *domain.Ticket) error { return t.Reserve("o2") })
	if err != nil || got.OrderID != "o2" {
		t.Fatalf("reserve o2 after b released o1 = %+v, %v", got, err)
	}
	stored, err := b.Get(ctx, tk.ID)
	if err != nil || stored.OrderID != "o2" || stored.Version != 15 || stored.Title != "t+b+a" {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	evs := pending(t, a, tk.ID)
	if len(evs) != 16 {
		t.Fatalf("%d events in the outbox, want 16 (created + 15 updates)", len(evs))
	}
	for i, e := range evs {
		if e.Version != int64(i) {
			t.Fatalf("event %d carries version %d", i, e.Version)
		}
	}
}

// outboxState returns the versions of the ticket's stored entries.
func outboxState(t *testing.T, s *Store, id string) []int64 {
	t.Helper()
	oid, _ := mongox.ObjectID(id)
	var d storedDoc
	if err := s.coll.FindOne(context.Background(), bson.M{"_id": oid}).Decode(&d); err != nil {
		t.Fatal(err)
	}
	var vs []int64
	for _, e := range d.Outbox {
		var ev events.TicketUpdated
		if err := json.Unmarshal(e.Data, &ev); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, ev.Version)
	}
	return vs
}

// A write drops the entries the relay reports published, on a remembered
// state (no read) and on a read one alike, and keeps every other one.
func TestWriteDropsPublishedEntries(t *testing.T) {
	ctx := context.Background()
	n := &outboxtest.Relay{}
	db := testenv.MongoDatabase(t)
	s := New(db, n)
	tk, err := s.Create(ctx, domain.Ticket{Title: "t", Price: 1, UserID: "u"})
	if err != nil {
		t.Fatal(err)
	}
	entryOf := func(i int) outbox.Entry { // the i-th entry as stored
		oid, _ := mongox.ObjectID(tk.ID)
		var d storedDoc
		if err := s.coll.FindOne(ctx, bson.M{"_id": oid}).Decode(&d); err != nil {
			t.Fatal(err)
		}
		return d.Outbox[i]
	}
	edit := func(s *Store, price float64) {
		t.Helper()
		if _, err := s.Update(ctx, tk.ID, func(t *domain.Ticket) error { t.Price = price; return nil }); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing published: the new entry goes behind the first.
	edit(s, 2)
	if vs := outboxState(t, s, tk.ID); !slices.Equal(vs, []int64{0, 1}) {
		t.Fatalf("outbox %v, want [0 1]", vs)
	}
	// Version 0 published: the next write (on the remembered state) drops it.
	n.MarkPublished(entryOf(0))
	reads := s.readCount()
	edit(s, 3)
	if vs := outboxState(t, s, tk.ID); !slices.Equal(vs, []int64{1, 2}) {
		t.Fatalf("outbox %v, want [1 2]", vs)
	}
	if s.readCount() != reads {
		t.Fatalf("%d reads, want none", s.readCount()-reads)
	}
	// Another process (its own remembered states) reads, and drops what
	// is published: version 1.
	other := New(db, n)
	n.MarkPublished(entryOf(0))
	edit(other, 4)
	if vs := outboxState(t, s, tk.ID); !slices.Equal(vs, []int64{2, 3}) {
		t.Fatalf("outbox %v, want [2 3]", vs)
	}
}
