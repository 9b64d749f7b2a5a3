package store_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/inorder"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/common/outbox/outboxtest"
	"github.com/ticketing-go/ticketing/services/orders/internal/domain"
	"github.com/ticketing-go/ticketing/services/orders/internal/store"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// MustOpenStore returns a Store on a fresh database with its indexes.
func MustOpenStore(tb testing.TB) (*store.Store, *mongo.Database) {
	return mustOpenStoreWith(tb, nil)
}

// mustOpenStoreWith opens a store whose writes tell n (see store.New).
func mustOpenStoreWith(tb testing.TB, n outbox.Notifier) (*store.Store, *mongo.Database) {
	tb.Helper()
	db := testenv.MongoDatabase(tb)
	s := store.New(db, n)
	if err := s.EnsureIndexes(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return s, db
}

func mustTicket(tb testing.TB, s *store.Store, title string, price float64) domain.Ticket {
	tb.Helper()
	t := domain.Ticket{ID: primitive.NewObjectID().Hex(), Title: title, Price: price}
	if out, err := s.InsertTicket(context.Background(), t); err != nil || out != inorder.Applied {
		tb.Fatalf("insert ticket: %v %v", out, err)
	}
	return t
}

// outboxOf returns the entries stored with the order.
func outboxOf(tb testing.TB, db *mongo.Database, id string) []outbox.Entry {
	tb.Helper()
	oid, _ := primitive.ObjectIDFromHex(id)
	var doc struct {
		Outbox []outbox.Entry `bson:"outbox"`
	}
	if err := db.Collection(store.OrdersCollection).FindOne(context.Background(), bson.M{"_id": oid}).Decode(&doc); err != nil {
		tb.Fatal(err)
	}
	return doc.Outbox
}

func TestCreateReservesTicketAtomically(t *testing.T) {
	ctx := context.Background()
	s, db := MustOpenStore(t)
	tk := mustTicket(t, s, "concert", 20)

	const n = 50
	var wins, reserved atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			o := domain.NewOrder(s.NewID(), "u", tk, time.Now(), time.Minute)
			switch err := s.Create(ctx, o); {
			case err == nil:
				wins.Add(1)
			case err == domain.ErrTicketReserved:
				reserved.Add(1)
			default:
				t.Errorf("create: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || reserved.Load() != n-1 {
		t.Fatalf("%d winners, %d refused; want 1 and %d", wins.Load(), reserved.Load(), n-1)
	}
	if c, _ := db.Collection(store.OrdersCollection).CountDocuments(ctx, bson.M{}); c != 1 {
		t.Fatalf("%d orders stored, want 1", c)
	}
}

func TestCancelReleasesTicketWithEvent(t *testing.T) {
	ctx := context.Background()
	s, db := MustOpenStore(t)
	tk := mustTicket(t, s, "concert", 20)

	o := domain.NewOrder(s.NewID(), "u", tk, time.Now(), time.Minute)
	if err := s.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	if got := outboxOf(t, db, o.ID); len(got) != 1 || got[0].Subject != string(events.SubjectOrderCreated) {
		t.Fatalf("outbox after create = %+v", got)
	}
	second := domain.NewOrder(s.NewID(), "v", tk, time.Now(), time.Minute)
	if err := s.Create(ctx, second); err != domain.ErrTicketReserved {
		t.Fatalf("second reservation: %v", err)
	}

	if err := s.Update(ctx, o.ID, (*domain.Order).Cancel); err != nil {
		t.Fatal(err)
	}
	// Idempotent: a second cancel writes no second event.
	if err := s.Update(ctx, o.ID, (*domain.Order).Cancel); err != nil {
		t.Fatal(err)
	}
	got := outboxOf(t, db, o.ID)
	if len(got) != 2 || got[1].Subject != string(events.SubjectOrderCancelled) {
		t.Fatalf("outbox after cancel = %+v", got)
	}
	loaded, err := s.Order(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Status != domain.StatusCancelled || loaded.Version != 1 || loaded.Ticket != tk {
		t.Fatalf("cancelled order = %+v", loaded)
	}

	// The ticket is free again, for anyone.
	if err := s.Create(ctx, second); err != nil {
		t.Fatalf("reserve after cancel: %v", err)
	}
	// Completing keeps the reservation and the version.
	if err := s.Update(ctx, second.ID, (*domain.Order).Complete); err != nil {
		t.Fatal(err)
	}
	done, _ := s.Order(ctx, second.ID)
	if done.Status != domain.StatusComplete || done.Version != 0 {
		t.Fatalf("completed order = %+v", done)
	}
	if len(outboxOf(t, db, second.ID)) != 1 {
		t.Fatal("complete queued an event")
	}
	third := domain.NewOrder(s.NewID(), "w", tk, time.Now(), time.Minute)
	if err := s.Create(ctx, third); err != domain.ErrTicketReserved {
		t.Fatalf("reserve a completed order's ticket: %v", err)
	}
}

func TestUpdateConcurrentCancelAndComplete(t *testing.T) {
	// Whatever the interleaving, an order ends either cancelled (and the
	// payment is refused) or complete (and the cancel is refused), never a
	// mix of both: the revision check serialises the two closures.
	ctx := context.Background()
	s, db := MustOpenStore(t)
	for i := 0; i < 10; i++ {
		tk := mustTicket(t, s, "t", 1)
		o := domain.NewOrder(s.NewID(), "u", tk, time.Now(), time.Minute)
		if err := s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		var cancelErr, completeErr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); cancelErr = s.Update(ctx, o.ID, (*domain.Order).Cancel) }()
		go func() { defer wg.Done(); completeErr = s.Update(ctx, o.ID, (*domain.Order).Complete) }()
		wg.Wait()
		got, _ := s.Order(ctx, o.ID)
		switch got.Status {
		case domain.StatusCancelled:
			if cancelErr != nil || completeErr != domain.ErrPaidCancelled {
				t.Fatalf("cancelled, but errors %v / %v", cancelErr, completeErr)
			}
			if n := len(outboxOf(t, db, o.ID)); n != 2 {
				t.Fatalf("%d outbox entries", n)
			}
		case domain.StatusComplete:
			if completeErr != nil || cancelErr != domain.ErrCancelCompleted {
				t.Fatalf("complete, but errors %v / %v", cancelErr, completeErr)
			}
			if n := len(outboxOf(t, db, o.ID)); n != 1 {
				t.Fatalf("%d outbox entries", n)
			}
		default:
			t.Fatalf("status %s", got.Status)
		}
	}
}

func TestNotFound(t *testing.T) {
	ctx := context.Background()
	s, _ := MustOpenStore(t)
	for _, id := range []string{"nope", primitive.NewObjectID().Hex()} {
		if _, err := s.Order(ctx, id); !apperr.Is(err, apperr.NotFound) {
			t.Errorf("Order(%q): %v", id, err)
		}
		if err := s.Update(ctx, id, (*domain.Order).Cancel); !apperr.Is(err, apperr.NotFound) {
			t.Errorf("Update(%q): %v", id, err)
		}
		if _, err := s.Ticket(ctx, id); !apperr.Is(err, apperr.NotFound) {
			t.Errorf("Ticket(%q): %v", id, err)
		}
	}
}

func TestListByUserNewestFirst(t *testing.T) {
	ctx := context.Background()
	s, _ := MustOpenStore(t)
	var ids []string
	for i := 0; i < 3; i++ {
		o := domain.NewOrder(s.NewID(), "me", mustTicket(t, s, "t", float64(i)), time.Now(), time.Minute)
		if err := s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.ID)
	}
	if err := s.Create(ctx, domain.NewOrder(s.NewID(), "other", mustTicket(t, s, "x", 1), time.Now(), time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListByUser(ctx, "me")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d orders", len(got))
	}
	for i, o := range got {
		if o.ID != ids[2-i] || o.Ticket.Price != float64(2-i) || o.Ticket.Title != "t" {
			t.Fatalf("order %d = %+v", i, o)
		}
	}
}

// The replica's outcomes are the same whether the update writes first (its
// first attempt, or a retry after the gate applied its predecessor in this
// process) or reads first (a retry without that hint: its predecessor may
// have been applied elsewhere); the replica reads show which path it took.
func TestReplicaAppliesVersionsInOrder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		attempt   *inorder.Attempt
		readFirst bool
	}{
		{"read first (a retry after a poll)", &inorder.Attempt{Retry: true}, true},
		{"write first (a retry after the predecessor was applied here)", &inorder.Attempt{Retry: true, PredecessorApplied: true}, false},
		{"write first (first attempt)", &inorder.Attempt{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) { testReplicaAppliesVersionsInOrder(t, tc.attempt, tc.readFirst) })
	}
}

func testReplicaAppliesVersionsInOrder(t *testing.T, a *inorder.Attempt, readFirst bool) {
	ctx := context.Background()
	s, _ := MustOpenStore(t)
	insert := func(ctx context.Context, t domain.Ticket, _ *inorder.Attempt) (inorder.Outcome, error) {
		return s.InsertTicket(ctx, t)
	}
	id := primitive.NewObjectID().Hex()
	v := func(n int64) domain.Ticket { return domain.Ticket{ID: id, Title: "v", Price: float64(n), Version: n} }

	// reads: how many times the step reads the replica when the update
	// reads first, and when it writes first (then it reads only when the
	// write did not apply, to tell stale from ahead).
	steps := []struct {
		name  string
		apply func(context.Context, domain.Ticket, *inorder.Attempt) (inorder.Outcome, error)
		t     domain.Ticket
		want  inorder.Outcome
		reads [2]int64 // read first, write first
	}{
		{"update before create", s.ApplyTicketUpdate, v(1), inorder.Ahead, [2]int64{1, 1}},
		{"create", insert, v(0), inorder.Applied, [2]int64{0, 0}},
		{"duplicate create", insert, v(0), inorder.Stale, [2]int64{0, 0}},
		{"gap", s.ApplyTicketUpdate, v(2), inorder.Ahead, [2]int64{1, 1}},
		{"next", s.ApplyTicketUpdate, v(1), inorder.Applied, [2]int64{1, 0}},
		{"duplicate", s.ApplyTicketUpdate, v(1), inorder.Stale, [2]int64{1, 1}},
		{"after gap", s.ApplyTicketUpdate, v(2), inorder.Applied, [2]int64{1, 0}},
		{"older", s.ApplyTicketUpdate, v(1), inorder.Stale, [2]int64{1, 1}},
		{"version 0 update", s.ApplyTicketUpdate, v(0), inorder.Stale, [2]int64{0, 0}},
	}
	path, wantReads := "write first", func(r [2]int64) int64 { return r[1] }
	if readFirst {
		path, wantReads = "read first", func(r [2]int64) int64 { return r[0] }
	}
	for _, st := range steps {
		before := s.TicketReads()
		got, err := st.apply(ctx, st.t, a)
		if err != nil || got != st.want {
			t.Fatalf("%s: %v %v, want %v", st.name, got, err, st.want)
		}
		if n, want := s.TicketReads()-before, wantReads(st.reads); n != want {
			t.Errorf("%s: read the replica %d times, want %d (%s)", st.name, n, want, path)
		}
	}
	tk, err := s.Ticket(ctx, id)
	if err != nil || tk != v(2) {
		t.Fatalf("replica = %+v %v", tk, err)
	}
	if _, err := s.ApplyTicketUpdate(ctx, domain.Ticket{ID: "bad", Version: 1}, nil); !store.IsMalformed(err) {
		t.Fatalf("malformed id: %v", err)
	}
}

// An order cancelled by the process that created it is not read again: the
// remembered state is written on, conditional on its revision. Once
// another process changed the order, the remembered state is stale: the
// next update finds out by its write not matching, reads, and applies its
// rules to what is stored.
func TestUpdateWritesOnTheRememberedState(t *testing.T) {
	ctx := context.Background()
	a, db := MustOpenStore(t)
	b := store.New(db, nil) // another process on the same database
	tk := mustTicket(t, a, "concert", 20)
	o := domain.NewOrder(a.NewID(), "u", tk, time.Now(), time.Minute)
	if err := a.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	reads := a.Reads()
	if err := a.Update(ctx, o.ID, (*domain.Order).Cancel); err != nil {
		t.Fatal(err)
	}
	if n := a.Reads() - reads; n != 0 {
		t.Fatalf("%d reads to cancel an order this store created, want 0", n)
	}
	if got := outboxOf(t, db, o.ID); len(got) != 2 || got[1].Subject != string(events.SubjectOrderCancelled) {
		t.Fatalf("outbox after cancel = %+v", got)
	}

	// b completes a second order that a created: a's memory of it is stale.
	tk2 := mustTicket(t, a, "theatre", 30)
	o2 := domain.NewOrder(a.NewID(), "u", tk2, time.Now(), time.Minute)
	if err := a.Create(ctx, o2); err != nil {
		t.Fatal(err)
	}
	if err := b.Update(ctx, o2.ID, (*domain.Order).Complete); err != nil {
		t.Fatal(err)
	}
	// Cancelling is refused on the stored (complete) order, not applied on
	// the remembered (created) one.
	if err := a.Update(ctx, o2.ID, (*domain.Order).Cancel); err != domain.ErrCancelCompleted {
		t.Fatalf("cancel of an order completed elsewhere: %v, want %v", err, domain.ErrCancelCompleted)
	}
	got, err := a.Order(ctx, o2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != domain.StatusComplete || len(outboxOf(t, db, o2.ID)) != 1 {
		t.Fatalf("order completed elsewhere is now %+v", got)
	}
}

// An order cancelled after its creation was published drops the creation's
// entry in the cancellation's write; while it is not published, the
// cancellation's entry goes behind it.
func TestCancelRemovesThePublishedCreationEntry(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		published bool
		entries   int // in the outbox after the cancellation
	}{{"published", true, 1}, {"not published", false, 2}} {
		t.Run(c.name, func(t *testing.T) {
			s, db := mustOpenStoreWith(t, &outboxtest.Relay{PublishAll: c.published})
			tk := mustTicket(t, s, "concert", 20)
			o := domain.NewOrder(s.NewID(), "u", tk, time.Now(), time.Minute)
			if err := s.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
			if err := s.Update(ctx, o.ID, (*domain.Order).Cancel); err != nil {
				t.Fatal(err)
			}
			got := outboxOf(t, db, o.ID)
			if len(got) != c.entries || got[len(got)-1].Subject != string(events.SubjectOrderCancelled) {
				t.Fatalf("outbox %+v; want %d entries ending with the cancellation", got, c.entries)
			}
		})
	}
}
