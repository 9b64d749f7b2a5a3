package outbox

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/ticketing-go/ticketing/common/events"
)

// MustEntries encodes evs as entries (not numbered).
func MustEntries(tb testing.TB, evs ...events.Event) []Entry {
	tb.Helper()
	es, err := newEntries(evs...)
	if err != nil {
		tb.Fatal(err)
	}
	return es
}

// Heartbeat makes r write its record now, as its next heartbeat would.
func Heartbeat(r *Relay) {
	r.mu.Lock()
	r.beats = idleBeats
	r.mu.Unlock()
	_ = r.heartbeat(context.Background())
	signal(r.kick)
}

// Src is r's record id (zero until recorded).
func Src(r *Relay) primitive.ObjectID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.src
}
