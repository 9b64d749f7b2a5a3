package standin

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
)

// TestCountTotals: with CountTotals, Counts holds every command each
// collection received since the start, cumulatively (reading them does
// not reset them); without it, nil.
func TestCountTotals(t *testing.T) {
	s, err := Start(context.Background(), Options{CountTotals: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	db := mustConnect(t, s.URI())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coll := db.Collection("counted")
	for i := range 3 {
		if _, err := coll.InsertOne(ctx, bson.M{"_id": i}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := coll.UpdateOne(ctx, bson.M{"_id": 1}, bson.M{"$set": bson.M{"x": 1}}); err != nil {
		t.Fatal(err)
	}
	first := s.Counts()
	if got := first["standin_test.counted insert"]; got != 3 {
		t.Fatalf("inserts counted: %d, want 3 (counts %v)", got, first)
	}
	if got := first["standin_test.counted update"]; got != 1 {
		t.Fatalf("updates counted: %d, want 1 (counts %v)", got, first)
	}
	if _, err := coll.InsertOne(ctx, bson.M{"_id": 9}); err != nil {
		t.Fatal(err)
	}
	if got := s.Counts()["standin_test.counted insert"]; got != 4 {
		t.Fatalf("inserts counted after one more: %d, want 4 (cumulative)", got)
	}
	if c := MustStart(t).Counts(); c != nil {
		t.Fatalf("Counts without CountTotals: %v, want nil", c)
	}
}
