// Package store keeps tickets in MongoDB (or the stand-in) and is the one
// place where their concurrency control lives.
//
// Every change is a single-document write that also appends the change's
// event to the document's outbox (common/outbox): the state and its event
// are stored atomically without multi-document transactions, and a Relay
// publishes them in order afterwards. A crash or a NATS outage between the
// write and the publish therefore delays an event but never loses it.
//
// Concurrency: every write goes through outbox.Records, the compare-and-
// swap over a ticket and its outbox that every service's store uses.
// Update runs the caller's closure on the ticket and writes back only if
// the document's revision is still the one the closure saw; after a lost
// race the closure runs again on the new state, so two concurrent edits
// both apply, in turn, with distinct versions, and neither is lost. A
// caller that must not overwrite a change it has not seen (an HTTP client
// sending the version it edited) checks the version in its closure
// (domain.Ticket.ExpectVersion), which then answers 409 on the re-run. The
// first attempt runs on the state this process last wrote, without a read;
// the conditional write proves it current (see outbox.Records).
//
// Revision and version: "rev" counts every write of the document and is the
// concurrency token; "version" counts the changes of the ticket that the
// other services see, each with its event. They differ only by bookkeeping
// writes (an order remembered as released, domain.Ticket.ReleaseUnseen),
// which change nothing the other services replicate and so publish nothing.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/tickets/internal/domain"
)

// Collection is the name of the tickets collection.
const Collection = "tickets"

// Store is the ticket repository.
type Store struct {
	coll    *mongo.Collection
	records *outbox.Records[doc] // every write: the compare-and-swap over a ticket and its outbox
	reads   atomic.Int64         // tickets read by Get, for tests
}

// New returns a Store on db's tickets collection. n (an *outbox.Relay)
// numbers and publishes the events of every write; nil: see
// outbox.Notifier.
func New(db *mongo.Database, n outbox.Notifier) *Store {
	coll := db.Collection(Collection)
	return &Store{coll: coll, records: outbox.NewRecords[doc](coll, n, "The ticket is being changed by others; retry")}
}

// Coll is the tickets collection, for the outbox relay.
func (s *Store) Coll() *mongo.Collection { return s.coll }

// EnsureIndexes creates the index List reads through: the free tickets
// ({orderId: ""}) newest first. Idempotent; run at every start.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	err := mongox.EnsureIndexes(ctx, s.coll, mongo.IndexModel{
		Keys:    bson.D{{Key: "orderId", Value: 1}, {Key: "_id", Value: -1}},
		Options: options.Index().SetName("orderId_id"),
	})
	if err != nil {
		return fmt.Errorf("store: create ticket indexes: %w", err)
	}
	return nil
}

// doc is a ticket as stored. OrderID is "" (not absent) for a free ticket so
// that the list query is a plain equality every MongoDB dialect agrees on.
type doc struct {
	ID       primitive.ObjectID `bson:"_id"`
	Title    string             `bson:"title"`
	Price    float64            `bson:"price"`
	UserID   string             `bson:"userId"`
	Version  int64              `bson:"version"`
	OrderID  string             `bson:"orderId"`
	Released []string           `bson:"released,omitempty"`
}

func (d *doc) ticket() domain.Ticket {
	return domain.Ticket{ID: d.ID.Hex(), Title: d.Title, Price: d.Price, UserID: d.UserID,
		Version: d.Version, OrderID: d.OrderID, Released: d.Released}
}

// Create stores t as a new ticket at version 0 with its ticket:created
// event, and returns it with its id.
func (s *Store) Create(ctx context.Context, t domain.Ticket) (domain.Ticket, error) {
	id := primitive.NewObjectID()
	t.ID, t.Version = id.Hex(), 0
	d := doc{ID: id, Title: t.Title, Price: t.Price, UserID: t.UserID, OrderID: t.OrderID, Released: t.Released}
	if err := s.records.Insert(ctx, d, t.Created()); err != nil {
		return domain.Ticket{}, err
	}
	return t, nil
}

// Get returns the ticket with id; apperr.ErrNotFound also for a malformed id.
func (s *Store) Get(ctx context.Context, id string) (domain.Ticket, error) {
	oid, ok := mongox.ObjectID(id)
	if !ok {
		return domain.Ticket{}, apperr.ErrNotFound
	}
	d, err := s.get(ctx, oid)
	if err != nil {
		return domain.Ticket{}, err
	}
	return d.ticket(), nil
}

func (s *Store) get(ctx context.Context, id primitive.ObjectID) (*doc, error) {
	s.reads.Add(1)
	var d doc
	err := s.coll.FindOne(ctx, bson.M{"_id": id}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, apperr.ErrNotFound
	}
	if err != nil {
		return nil, mongox.Classify(err)
	}
	return &d, nil
}

// List returns up to limit tickets that no order holds, newest first
// (ObjectIds grow with creation time).
func (s *Store) List(ctx context.Context, limit int) ([]domain.Ticket, error) {
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetLimit(int64(limit))
	cur, err := s.coll.Find(ctx, bson.M{"orderId": ""}, opts)
	if err != nil {
		return nil, mongox.Classify(err)
	}
	defer cur.Close(ctx)
	out := make([]domain.Ticket, 0, min(limit, 128))
	for cur.Next(ctx) {
		var d doc
		if err := cur.Decode(&d); err != nil {
			return nil, apperr.Wrap(apperr.Internal, "decode ticket", err)
		}
		out = append(out, d.ticket())
	}
	if err := cur.Err(); err != nil {
		return nil, mongox.Classify(err)
	}
	return out, nil
}

// Update applies fn to the ticket with id and stores the result at version
// + 1 together with its ticket:updated event. An error from fn is returned
// as is and nothing is written; domain.ErrUnchanged is how fn says "nothing
// to do" (the current ticket is returned with it). fn may run several times
// (see the package doc), each time on a fresh copy; it may change the
// title, price, order and released orders, nothing else. A change of the
// released orders alone is bookkeeping: written without a new version or
// event.
func (s *Store) Update(ctx context.Context, id string, fn func(*domain.Ticket) error) (domain.Ticket, error) {
	oid, ok := mongox.ObjectID(id)
	if !ok {
		return domain.Ticket{}, apperr.ErrNotFound
	}
	var out domain.Ticket
	var fnErr error // fn's error, returned with the ticket fn judged
	_, err := s.records.Update(ctx, oid, func(d *doc) ([]events.Event, error) {
		read := d.ticket()
		t := read
		t.Released = slices.Clone(read.Released)
		if fnErr = fn(&t); fnErr != nil {
			out = read
			return nil, fnErr
		}
		// What fn may not change stays as read.
		t.ID, t.UserID, t.Version = read.ID, read.UserID, read.Version
		d.Title, d.Price, d.OrderID, d.Released = t.Title, t.Price, t.OrderID, t.Released
		out = t
		if t.Title == read.Title && t.Price == read.Price && t.OrderID == read.OrderID {
			return nil, nil // bookkeeping (released orders) or nothing: no version, no event
		}
		t.Version++
		d.Version, out = t.Version, t
		return []events.Event{t.Updated()}, nil
	})
	if err != nil && err != fnErr {
		return domain.Ticket{}, err
	}
	return out, err
}
