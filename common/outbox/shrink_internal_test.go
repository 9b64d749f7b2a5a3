package outbox

import (
	"testing"

	"go.mongodb.org/mongo-driver/bson/primitive"
)

// After a burst the bookkeeping maps are made anew, keeping what they hold.
func TestShrinkKeepsTheEntries(t *testing.T) {
	r := &Relay{state: map[any]int{}, snaps: map[any][][]Entry{}, sent: map[primitive.ObjectID]bool{}}
	var ids []primitive.ObjectID
	for i := 0; i < 1000; i++ {
		r.state[i] = queued
		r.snaps[i] = [][]Entry{{{Subject: "s"}}}
		id := primitive.NewObjectID()
		ids = append(ids, id)
		r.sent[id] = i%2 == 0 // published; every other one with its removal confirmed
	}
	r.stateHigh, r.sentHigh = 1000, 1000
	r.shrinkState()
	r.shrinkSent()
	if r.stateHigh != 1000 || r.sentHigh != 1000 {
		t.Fatal("shrunk while full")
	}
	for i := 10; i < 1000; i++ {
		delete(r.state, i)
		delete(r.snaps, i)
		delete(r.sent, ids[i])
	}
	r.shrinkState()
	r.shrinkSent()
	if r.stateHigh != 10 || r.sentHigh != 10 {
		t.Fatalf("high marks %d, %d after shrinking to 10", r.stateHigh, r.sentHigh)
	}
	for i := 0; i < 10; i++ {
		if r.state[i] != queued || len(r.snaps[i]) != 1 {
			t.Fatalf("document %d lost in the shrink", i)
		}
		if removed, ok := r.sent[ids[i]]; !ok || removed != (i%2 == 0) {
			t.Fatalf("sent entry %d lost in the shrink, or its removal state (%v, %v)", i, removed, ok)
		}
	}
}
