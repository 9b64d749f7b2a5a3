// Package store keeps the orders service's data in MongoDB: the orders, and
// the replica of tickets built from ticket events.
//
// No double booking. Every order document carries a "reservation" key with
// a unique index: the ticket's id while the order holds the ticket (created,
// awaiting:payment, complete), "cancelled:<orderId>" once it is cancelled.
// Reserving a ticket is therefore the insert of the order itself: of any
// number of concurrent inserts for one ticket the unique index lets exactly
// one through, on MongoDB and on the FerretDB stand-in alike (which enforces
// unique indexes but has no transactions). Releasing it is part of the same
// single-document write that cancels the order, so there is no window in
// which a crash leaves a ticket claimed by an order that does not exist or
// is cancelled.
//
// No lost events. An order's pending events are written to its "outbox"
// field by the same single-document write as the state change; the
// common/outbox relay publishes them, and the order's next write drops
// those published.
//
// Concurrency. Every order write goes through outbox.Records, the
// compare-and-swap over a record and its outbox that every service's store
// uses: Update lets a closure apply the domain's rules and writes back only
// if the order's revision is still the one the closure saw, retrying on a
// lost race. The replicated "version" moves only when the domain says so
// (see package domain). The first attempt runs on the state this process
// last wrote, without a read: a cancellation or completion right after the
// creation costs one round trip.
package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/inorder"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/orders/internal/domain"
)

// Collection names.
const (
	OrdersCollection  = "orders"
	TicketsCollection = "tickets"
)

// maxAttempts bounds Update's retries after lost optimistic-concurrency races.
const maxAttempts = 20

// Store is the MongoDB adapter of the orders service.
type Store struct {
	orders  *mongo.Collection
	tickets *mongo.Collection
	records *outbox.Records[orderDoc] // every order write: the compare-and-swap over an order and its outbox
	tReads  atomic.Int64              // replica tickets read by ApplyTicketUpdate, for tests
}

// New returns a Store on db. n (an *outbox.Relay) numbers the entries of
// every write that stores events and publishes them right after it,
// without reading the order; nil: see outbox.Notifier.
func New(db *mongo.Database, n outbox.Notifier) *Store {
	orders := db.Collection(OrdersCollection)
	return &Store{orders: orders, tickets: db.Collection(TicketsCollection),
		records: outbox.NewRecords[orderDoc](orders, n, "Order was changed concurrently, try again")}
}

// Orders is the orders collection (the outbox relay works on it).
func (s *Store) Orders() *mongo.Collection { return s.orders }

// EnsureIndexes creates the indexes the store relies on; the unique index
// on reservation is what prevents double booking, so a failure is fatal.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	err := mongox.EnsureIndexes(ctx, s.orders,
		mongo.IndexModel{Keys: bson.D{{Key: "reservation", Value: 1}}, Options: options.Index().SetUnique(true).SetName("reservation_unique")},
		mongo.IndexModel{Keys: bson.D{{Key: "userId", Value: 1}, {Key: "createdAt", Value: -1}}, Options: options.Index().SetName("user_created")},
	)
	if err != nil {
		return fmt.Errorf("store: create order indexes: %w", err)
	}
	return nil
}

type orderDoc struct {
	ID          primitive.ObjectID `bson:"_id"`
	UserID      string             `bson:"userId"`
	TicketID    primitive.ObjectID `bson:"ticketId"`
	Status      string             `bson:"status"`
	ExpiresAt   time.Time          `bson:"expiresAt"`
	Version     int64              `bson:"version"`
	Reservation string             `bson:"reservation"`
	CreatedAt   time.Time          `bson:"createdAt"`
}

type ticketDoc struct {
	ID      primitive.ObjectID `bson:"_id"`
	Title   string             `bson:"title"`
	Price   float64            `bson:"price"`
	Version int64              `bson:"version"`
}

func (d ticketDoc) domain() domain.Ticket {
	return domain.Ticket{ID: d.ID.Hex(), Title: d.Title, Price: d.Price, Version: d.Version}
}

func (d orderDoc) domain() *domain.Order {
	return &domain.Order{
		ID: d.ID.Hex(), UserID: d.UserID, Status: domain.Status(d.Status),
		ExpiresAt: d.ExpiresAt.UTC(), Version: d.Version, Ticket: domain.Ticket{ID: d.TicketID.Hex()},
	}
}

// reservation is the value of the unique reservation key for o.
func reservation(o *domain.Order) string {
	if o.HoldsTicket() {
		return o.Ticket.ID
	}
	return "cancelled:" + o.ID
}

// orderFields leaves the outbox out of every read: it is the relay's business.
var orderFields = options.FindOne().SetProjection(bson.M{outbox.Field: 0})

// NewID returns a fresh order id.
func (s *Store) NewID() string { return primitive.NewObjectID().Hex() }

// Create inserts o, reserving its ticket, with its pending events in the
// outbox. It answers domain.ErrTicketReserved when an active order holds the
// ticket.
func (s *Store) Create(ctx context.Context, o *domain.Order) error {
	id, ok := mongox.ObjectID(o.ID)
	tid, ok2 := mongox.ObjectID(o.Ticket.ID)
	if !ok || !ok2 {
		return fmt.Errorf("store: create order with malformed ids %q, %q", o.ID, o.Ticket.ID)
	}
	d := orderDoc{ID: id, UserID: o.UserID, TicketID: tid, Status: string(o.Status), ExpiresAt: o.ExpiresAt,
		Version: o.Version, Reservation: reservation(o), CreatedAt: time.Now().UTC()}
	if err := s.records.Insert(ctx, d, o.Pending()...); err != nil {
		if mongox.IsDuplicateKey(err) {
			return domain.ErrTicketReserved
		}
		return err
	}
	return nil
}

// Order returns the order id with its ticket; apperr.ErrNotFound when there
// is none (also for a malformed id).
func (s *Store) Order(ctx context.Context, id string) (*domain.Order, error) {
	d, err := s.findOrder(ctx, id)
	if err != nil {
		return nil, err
	}
	o := d.domain()
	if err := s.populate(ctx, []*domain.Order{o}); err != nil {
		return nil, err
	}
	return o, nil
}

// ListByUser returns the orders of userID with their tickets, newest first.
func (s *Store) ListByUser(ctx context.Context, userID string) ([]*domain.Order, error) {
	cur, err := s.orders.Find(ctx, bson.M{"userId": userID}, options.Find().
		SetSort(bson.D{{Key: "createdAt", Value: -1}, {Key: "_id", Value: -1}}).
		SetProjection(bson.M{outbox.Field: 0}))
	if err != nil {
		return nil, mongox.Classify(err)
	}
	var docs []orderDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, mongox.Classify(err)
	}
	out := make([]*domain.Order, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.domain())
	}
	if err := s.populate(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// populate fills in the orders' tickets from the replica (one query).
func (s *Store) populate(ctx context.Context, os []*domain.Order) error {
	if len(os) == 0 {
		return nil
	}
	ids := make([]primitive.ObjectID, 0, len(os))
	for _, o := range os {
		if id, ok := mongox.ObjectID(o.Ticket.ID); ok {
			ids = append(ids, id)
		}
	}
	cur, err := s.tickets.Find(ctx, bson.M{"_id": bson.M{"$in": ids}})
	if err != nil {
		return mongox.Classify(err)
	}
	var docs []ticketDoc
	if err := cur.All(ctx, &docs); err != nil {
		return mongox.Classify(err)
	}
	byID := make(map[string]domain.Ticket, len(docs))
	for _, d := range docs {
		byID[d.ID.Hex()] = d.domain()
	}
	for _, o := range os {
		if t, ok := byID[o.Ticket.ID]; ok {
			o.Ticket = t
		}
	}
	return nil
}

func (s *Store) findOrder(ctx context.Context, id string) (orderDoc, error) {
	oid, ok := mongox.ObjectID(id)
	if !ok {
		return orderDoc{}, apperr.ErrNotFound
	}
	var d orderDoc
	if err := s.orders.FindOne(ctx, bson.M{"_id": oid}, orderFields).Decode(&d); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return orderDoc{}, apperr.ErrNotFound
		}
		return orderDoc{}, mongox.Classify(err)
	}
	return d, nil
}

// Update loads order id, calls fn on it and writes the result back with the
// events fn recorded, only if nobody changed the order in between (else it
// reloads and calls fn again). fn's error is returned as is and nothing is
// written; an fn that changes nothing writes nothing. apperr.ErrNotFound
// when there is no such order.
func (s *Store) Update(ctx context.Context, id string, fn func(*domain.Order) error) error {
	oid, ok := mongox.ObjectID(id)
	if !ok {
		return apperr.ErrNotFound
	}
	_, err := s.records.Update(ctx, oid, func(d *orderDoc) ([]events.Event, error) {
		o := d.domain()
		if err := fn(o); err != nil {
			return nil, err
		}
		d.Status, d.Version, d.ExpiresAt, d.Reservation = string(o.Status), o.Version, o.ExpiresAt, reservation(o)
		return o.Pending(), nil
	})
	if mongox.IsDuplicateKey(err) {
		return domain.ErrTicketReserved
	}
	return err
}

// Ticket returns the replica of ticket id; apperr.ErrNotFound when orders
// does not know it (also for a malformed id).
func (s *Store) Ticket(ctx context.Context, id string) (domain.Ticket, error) {
	oid, ok := mongox.ObjectID(id)
	if !ok {
		return domain.Ticket{}, apperr.ErrNotFound
	}
	var d ticketDoc
	if err := s.tickets.FindOne(ctx, bson.M{"_id": oid}).Decode(&d); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return domain.Ticket{}, apperr.ErrNotFound
		}
		return domain.Ticket{}, mongox.Classify(err)
	}
	return d.domain(), nil
}

// errMalformedTicket is a permanent failure: the event can never apply.
var errMalformedTicket = errors.New("store: ticket id is not a 24-hex ObjectID")

// IsMalformed reports whether err says a replicated record can never apply.
func IsMalformed(err error) bool { return errors.Is(err, errMalformedTicket) }

// InsertTicket adds t to the replica (ticket:created). A ticket already there
// is a duplicate delivery: Stale.
func (s *Store) InsertTicket(ctx context.Context, t domain.Ticket) (inorder.Outcome, error) {
	oid, ok := mongox.ObjectID(t.ID)
	if !ok {
		return 0, fmt.Errorf("%w: %q", errMalformedTicket, t.ID)
	}
	_, err := s.tickets.InsertOne(ctx, ticketDoc{ID: oid, Title: t.Title, Price: t.Price, Version: t.Version})
	switch {
	case err == nil:
		return inorder.Applied, nil
	case mongox.IsDuplicateKey(err):
		return inorder.Stale, nil
	default:
		return 0, mongox.Classify(err)
	}
}

// ApplyTicketUpdate applies version t.Version of a ticket (ticket:updated)
// with one conditional write, only on top of version t.Version-1. It reports
// Stale for a duplicate or older version and Ahead when a predecessor (or
// the ticket:created) has not been applied yet. Only the replicated fields
// are set, so nothing else kept on the document is overwritten.
//
// The first attempt writes at once: updates mostly arrive in order, and
// then that one conditional write is all it costs (reading first doubled the
// replica's store commands per event). Only when it does not match is the
// version read, to tell stale from ahead. Retries of an update waiting for
// its predecessor (inorder.Gate) read first, so that waiting costs a read
// per attempt, not a write: a read never contends with the document's
// writers, while a write that does not match still goes through the write
// path (and on the stand-in holds the document's write turn), unless the gate says the predecessor was just applied here
// (inorder.Attempt.PredecessorApplied). The read is only a hint; the
// conditional write decides. a is the gate's attempt; nil is a first one.
func (s *Store) ApplyTicketUpdate(ctx context.Context, t domain.Ticket, a *inorder.Attempt) (inorder.Outcome, error) {
	oid, ok := mongox.ObjectID(t.ID)
	if !ok {
		return 0, fmt.Errorf("%w: %q", errMalformedTicket, t.ID)
	}
	if t.Version < 1 {
		return inorder.Stale, nil // version 0 is the ticket:created
	}
	apply := func() (bool, error) {
		res, err := s.tickets.UpdateOne(ctx, bson.M{"_id": oid, "version": t.Version - 1},
			bson.M{"$set": bson.M{"title": t.Title, "price": t.Price, "version": t.Version}})
		if err != nil {
			return false, mongox.Classify(err)
		}
		return res.MatchedCount == 1, nil
	}
	if a == nil || !a.Retry || a.PredecessorApplied {
		if applied, err := apply(); err != nil || applied {
			return inorder.Applied, err
		}
		// Not on top of the predecessor after all: read to tell stale from ahead.
	}
	for {
		s.tReads.Add(1)
		var cur ticketDoc
		err := s.tickets.FindOne(ctx, bson.M{"_id": oid}, options.FindOne().SetProjection(bson.M{"version": 1})).Decode(&cur)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			return inorder.Ahead, nil
		case err != nil:
			return 0, mongox.Classify(err)
		case cur.Version >= t.Version:
			return inorder.Stale, nil
		case cur.Version < t.Version-1:
			if a != nil {
				a.Seen(cur.Version) // the gate polls sooner while this moves
			}
			return inorder.Ahead, nil
		}
		applied, err := apply()
		if err != nil {
			return 0, err
		}
		if applied {
			return inorder.Applied, nil
		}
		// Someone applied this version (a duplicate delivery) in between: read again.
	}
}
