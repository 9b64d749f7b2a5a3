// Package outbox delivers events without losing them, on a standalone
// MongoDB or the FerretDB stand-in (neither has multi-document
// transactions), and without a store write per event beyond the one that
// stores it.
//
// The events of a document live in the document itself, in the array field
// "outbox", written by the same single-document write as the state change:
// the change and its event are stored atomically or not at all. Records is
// the one writer of documents with events (every service's store goes
// through it): its Insert stores the document with its entries, and its
// Update writes the change, the revision's increment and the outbox in one
// write conditional on the revision it judged.
//
// Each entry carries the id of the relay of the process that wrote it
// (src) and that relay's sequence number (seq). A Relay tracks its entries
// in memory from the moment they are numbered until they are published (or
// known not written), publishes each written document's entries in array
// order as soon as the write returns (the HTTP response never waits for the
// broker), and stores a checkpoint in the collection "outbox_relays": every
// entry of its own numbered up to it is published. That is one small write
// per second while entries are published, and one every few seconds
// otherwise, whatever the rate of events: published entries are not removed
// one by one. They stay in their document, inert, until its next write
// drops them (Records keeps only the entries not known to be published), so
// a document at rest holds its last write's events.
//
// What a relay did not publish is published by a scan, a query for the
// documents holding entries of one relay above its checkpoint (on MongoDB an
// index on outbox.src and outbox.seq answers it): the relay's own scan after
// a publish failed (NATS away) or a write's outcome is unknown, and another
// relay's scan when a relay stopped storing its checkpoint for DeadAfter (a
// crash): that relay adopts it, publishes what it left and deletes its
// record. An entry whose relay has no record is therefore published (every
// relay records itself before numbering an entry, and its record goes only
// when all its entries are published). Entries without a src (written
// before relays numbered them) are published by the first scan of every
// relay that starts, and then removed.
//
// Guarantees: at least once, and in order per document: every publisher
// publishes a document's entries in array order and skips only those
// published before, so the first copy of entry n+1 follows the first copy of
// entry n. Duplicates come from faults (a crash, an adoption, NATS losing an
// acknowledgement) and from two replicas writing one document within a
// heartbeat of each other (the second cannot know yet that the first's
// entry went out, and publishes it before its own); consumers deduplicate
// by version.
//
// The bound this relies on: a write is applied by the store within
// DeadAfter/2 of the moment its entries were numbered, or never. A relay
// numbers entries only within DeadAfter/2 of the last write of its record
// (refreshing it first otherwise), and an adopter takes only a record not
// written for DeadAfter, so an entry applied within the bound is found by
// the adopter's scan.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/ticketing-go/ticketing/common/events"
)

// Field is the document field that holds the entries.
const Field = "outbox"

// Entry is one event stored with its document.
type Entry struct {
	ID        primitive.ObjectID `bson:"id" json:"id"`
	Subject   string             `bson:"subject" json:"subject"`
	Data      []byte             `bson:"data" json:"data"`
	CreatedAt time.Time          `bson:"createdAt" json:"createdAt"`
	// Src is the relay that numbered the entry (its record's id in
	// outbox_relays), Seq its number there; both absent on an entry
	// written before relays numbered them (encoded as before, so that such
	// an entry is removed by its exact stored form).
	Src primitive.ObjectID `bson:"src,omitempty" json:"src,omitempty"`
	Seq int64              `bson:"seq,omitempty" json:"seq,omitempty"`
}

// newEntry encodes e as an entry to store with the change that caused it.
func newEntry(e events.Event) (Entry, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return Entry{}, fmt.Errorf("outbox: encode %s: %w", e.Subject(), err)
	}
	return Entry{ID: primitive.NewObjectID(), Subject: string(e.Subject()), Data: data, CreatedAt: time.Now().UTC()}, nil
}

// Publisher publishes raw event data and returns once the broker has it
// (events.Conn). msgID is the entry's id: a broker that deduplicates
// (JetStream) drops a republish of the entry.
type Publisher interface {
	PublishMsg(ctx context.Context, subject, msgID string, data []byte) error
}
