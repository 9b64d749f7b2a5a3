// Package outboxtest has a test double of an outbox relay, for the tests
// of stores that write through outbox.Records and check what their writes
// hand over, without a broker: it numbers entries, records what each write
// of events handed over, and reports as published what a test says.
package outboxtest

import (
	"context"
	"sync"

	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/ticketing-go/ticketing/common/outbox"
)

// Relay is an outbox.Notifier. The zero value reports nothing published;
// with PublishAll set, everything.
type Relay struct {
	PublishAll bool

	mu        sync.Mutex
	src       primitive.ObjectID
	seq       int64
	handed    [][]outbox.Entry
	handedFor map[any][][]outbox.Entry
	published map[primitive.ObjectID]bool
}

// Stamp numbers entries, as a relay does.
func (r *Relay) Stamp(_ context.Context, es []outbox.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.src.IsZero() {
		r.src = primitive.NewObjectID()
	}
	for i := range es {
		r.seq++
		es[i].Src, es[i].Seq = r.src, r.seq
	}
	return nil
}

// Settle records the outbox handed over by each write of events.
func (r *Relay) Settle(id any, es []outbox.Entry, o outbox.Outcome, stored []outbox.Entry) {
	if o != outbox.Written || len(es) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handedFor == nil {
		r.handedFor = map[any][][]outbox.Entry{}
	}
	r.handed = append(r.handed, stored)
	r.handedFor[id] = append(r.handedFor[id], stored)
}

// Published reports what MarkPublished marked (everything with PublishAll).
func (r *Relay) Published(_ context.Context, e outbox.Entry) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.PublishAll || r.published[e.ID]
}

// MarkPublished makes es count as published.
func (r *Relay) MarkPublished(es ...outbox.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.published == nil {
		r.published = map[primitive.ObjectID]bool{}
	}
	for _, e := range es {
		r.published[e.ID] = true
	}
}

// Handed returns the outboxes handed over by writes of events, in order.
func (r *Relay) Handed() [][]outbox.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]outbox.Entry(nil), r.handed...)
}

// HandedFor returns the outboxes handed over by writes of document id.
func (r *Relay) HandedFor(id any) [][]outbox.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]outbox.Entry(nil), r.handedFor[id]...)
}
