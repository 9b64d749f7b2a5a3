package outbox_test

import (
	"context"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/bson"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/testenv"
)

type counter struct {
	ID   string `bson:"_id"`
	N    int64  `bson:"n"`
	Note string `bson:"note,omitempty"`
}

// Concurrent updates of one record all apply, each once, each with its
// event, and the document holds exactly the fields the record has: a field
// the record no longer has is removed.
func TestRecordsUpdatesRaceToOneResult(t *testing.T) {
	ctx := context.Background()
	coll := testenv.MongoDatabase(t).Collection("counters")
	recs := outbox.NewRecords[counter](coll, nil, "busy")
	if err := recs.Insert(ctx, counter{ID: "c", Note: "new"}, events.TicketUpdated{ID: "c", Version: 0}); err != nil {
		t.Fatal(err)
	}
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := recs.Update(ctx, "c", func(c *counter) ([]events.Event, error) {
				c.N++
				c.Note = ""
				return []events.Event{events.TicketUpdated{ID: "c", Version: c.N}}, nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var stored bson.M
	if err := coll.FindOne(ctx, bson.M{"_id": "c"}).Decode(&stored); err != nil {
		t.Fatal(err)
	}
	if stored["n"] != int64(writers) || stored["rev"] != int64(writers) {
		t.Fatalf("stored %v: want n = rev = %d", stored, writers)
	}
	if _, ok := stored["note"]; ok {
		t.Fatalf("stored %v: the cleared note should be gone", stored)
	}
	if ob, _ := stored[outbox.Field].(bson.A); len(ob) != writers+1 {
		t.Fatalf("outbox holds %d entries, want %d", len(ob), writers+1)
	}

	// A closure that changes nothing writes nothing.
	if _, err := recs.Update(ctx, "c", func(*counter) ([]events.Event, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	var after bson.M
	if err := coll.FindOne(ctx, bson.M{"_id": "c"}).Decode(&after); err != nil || after["rev"] != int64(writers) {
		t.Fatalf("after a change of nothing: %v (%v), want rev %d", after, err, writers)
	}
}

// A document written before its store went through Records has no revision:
// Update writes it, conditionally on that absence, and gives it revision 1.
func TestRecordsUpdateADocumentWithoutRevision(t *testing.T) {
	ctx := context.Background()
	coll := testenv.MongoDatabase(t).Collection("counters")
	if _, err := coll.InsertOne(ctx, bson.M{"_id": "old", "n": int64(5)}); err != nil {
		t.Fatal(err)
	}
	recs := outbox.NewRecords[counter](coll, nil, "busy")
	c, err := recs.Update(ctx, "old", func(c *counter) ([]events.Event, error) {
		c.N++
		return []events.Event{events.TicketUpdated{ID: "old", Version: c.N}}, nil
	})
	if err != nil || c.N != 6 {
		t.Fatalf("update: %+v %v", c, err)
	}
	var stored bson.M
	if err := coll.FindOne(ctx, bson.M{"_id": "old"}).Decode(&stored); err != nil {
		t.Fatal(err)
	}
	if ob, _ := stored[outbox.Field].(bson.A); stored["n"] != int64(6) || stored["rev"] != int64(1) || len(ob) != 1 {
		t.Fatalf("stored %v: want n 6, rev 1, one entry", stored)
	}
	// The next update starts from the remembered revision 1.
	if _, err := recs.Update(ctx, "old", func(c *counter) ([]events.Event, error) { c.N++; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if err := coll.FindOne(ctx, bson.M{"_id": "old"}).Decode(&stored); err != nil || stored["rev"] != int64(2) || stored["n"] != int64(7) {
		t.Fatalf("stored %v (%v): want rev 2, n 7", stored, err)
	}
}
