package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"

	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/common/outbox/outboxtest"
	"github.com/ticketing-go/ticketing/services/expiration/internal/domain"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func mustOpenStore(tb testing.TB) *Store {
	tb.Helper()
	return mustOpenStoreOn(tb, testenv.MongoDatabase(tb), nil)
}

func mustOpenStoreOn(tb testing.TB, db *mongo.Database, n outbox.Notifier) *Store {
	tb.Helper()
	s, err := New(context.Background(), db, n)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestScheduleFireDrop(t *testing.T) {
	ctx := context.Background()
	var relay outboxtest.Relay
	s := mustOpenStoreOn(t, testenv.MongoDatabase(t), &relay)
	now := time.Now().UTC().Truncate(time.Millisecond)

	if ok, err := s.Schedule(ctx, "a", now.Add(-time.Second)); !ok || err != nil {
		t.Fatalf("schedule: %v %v", ok, err)
	}
	if ok, err := s.Schedule(ctx, "a", now.Add(time.Hour)); ok || err != nil {
		t.Fatalf("duplicate schedule: %v %v, want false", ok, err)
	}
	if ok, _ := s.Schedule(ctx, "later", now.Add(time.Hour)); !ok {
		t.Fatal("schedule later")
	}
	if next, ok, err := s.NextDue(ctx); err != nil || !ok || !next.Equal(now.Add(-time.Second)) {
		t.Fatalf("next due %v %v %v, want the first schedule", next, ok, err)
	}
	due, err := s.Due(ctx, now, 10)
	if err != nil || len(due) != 1 || due[0].OrderID != "a" {
		t.Fatalf("due %v %v, want [a]", due, err)
	}
	if ok, err := s.Fire(ctx, "later", now); ok || err != nil {
		t.Fatalf("fired an expiration not yet due: %v %v", ok, err)
	}
	if ok, err := s.Fire(ctx, "a", now); !ok || err != nil {
		t.Fatalf("fire: %v %v", ok, err)
	}
	if got := relay.HandedFor("a"); len(got) != 1 || len(got[0]) != 1 || got[0][0].Subject != "expiration:complete" {
		t.Fatalf("the relay was told %+v, want the expiration:complete entry", got)
	}
	if ok, _ := s.Fire(ctx, "a", now); ok {
		t.Fatal("fired twice")
	}
	if ok, err := s.Fire(ctx, "never-scheduled", now); ok || err != nil {
		t.Fatalf("fired an unknown expiration: %v %v", ok, err)
	}
	var d bson.M
	if err := s.Coll().FindOne(ctx, bson.M{"_id": "a"}).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if ob, _ := d["outbox"].(bson.A); len(ob) != 1 {
		t.Fatalf("outbox %v, want one expiration:complete", d["outbox"])
	}
	// Dropping a fired expiration changes nothing; dropping a pending one
	// stops it; dropping an unknown one leaves a tombstone.
	for _, id := range []string{"a", "later", "unknown"} {
		if err := s.Drop(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for id, want := range map[string]domain.State{"a": domain.Fired, "later": domain.Dropped, "unknown": domain.Dropped} {
		if e, ok, err := s.Get(ctx, id); err != nil || !ok || e.State != want {
			t.Fatalf("%s: %+v %v %v, want %s", id, e, ok, err, want)
		}
	}
	if ok, _ := s.Schedule(ctx, "unknown", now); ok {
		t.Fatal("order:created after order:cancelled scheduled")
	}
	if _, ok, _ := s.NextDue(ctx); ok {
		t.Fatal("something is still pending")
	}
}

func TestPurge(t *testing.T) {
	ctx := context.Background()
	var relay outboxtest.Relay
	s := mustOpenStoreOn(t, testenv.MongoDatabase(t), &relay)
	now := time.Now()
	_, _ = s.Schedule(ctx, "fired-published", now.Add(-time.Minute))
	_, _ = s.Schedule(ctx, "fired-unpublished", now.Add(-time.Minute))
	_, _ = s.Schedule(ctx, "pending", now.Add(time.Hour))
	_ = s.Drop(ctx, "dropped")
	for _, id := range []string{"fired-published", "fired-unpublished"} {
		if ok, err := s.Fire(ctx, id, now); !ok || err != nil {
			t.Fatal(id, ok, err)
		}
	}
	for _, handed := range relay.HandedFor("fired-published") {
		relay.MarkPublished(handed...)
	}
	if n, err := s.Purge(ctx, now.Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("purged %d %v before the retention passed", n, err)
	}
	n, err := s.Purge(ctx, now.Add(time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("purged %d %v, want 2", n, err)
	}
	for id, kept := range map[string]bool{"fired-published": false, "dropped": false, "fired-unpublished": true, "pending": true} {
		if _, ok, _ := s.Get(ctx, id); ok != kept {
			t.Errorf("%s kept=%v, want %v", id, ok, kept)
		}
	}
}

// Two replicas (two stores on one database, each with its own remembered
// states) fire the same due expirations at once: each fires exactly once,
// with exactly one event. A replica that did not schedule an expiration
// drops it too.
func TestReplicasFireOnce(t *testing.T) {
	ctx := context.Background()
	db := testenv.MongoDatabase(t)
	a, b := mustOpenStoreOn(t, db, nil), mustOpenStoreOn(t, db, nil)
	now := time.Now().UTC()
	const n = 20
	for i := range n {
		if ok, err := a.Schedule(ctx, fmt.Sprint(i), now.Add(-time.Second)); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	fired := make([][2]bool, n)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		for r, s := range []*Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := s.Fire(ctx, fmt.Sprint(i), now)
				if err != nil {
					errs <- err
				}
				fired[i][r] = ok
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, f := range fired {
		if f[0] == f[1] {
			t.Errorf("expiration %d: fired by a %v, by b %v; want exactly one", i, f[0], f[1])
		}
		var d bson.M
		if err := a.Coll().FindOne(ctx, bson.M{"_id": fmt.Sprint(i)}).Decode(&d); err != nil {
			t.Fatal(err)
		}
		if ob, _ := d["outbox"].(bson.A); len(ob) != 1 {
			t.Errorf("expiration %d: outbox %v, want one expiration:complete", i, d["outbox"])
		}
	}
	if ok, _ := a.Schedule(ctx, "later", now.Add(time.Hour)); !ok {
		t.Fatal("schedule later")
	}
	if err := b.Drop(ctx, "later"); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := a.Get(ctx, "later"); e.State != domain.Dropped {
		t.Fatalf("dropped by the other replica: %+v", e)
	}
}
