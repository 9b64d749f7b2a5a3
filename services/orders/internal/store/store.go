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
// common/outbox relay publishes and removes them.
//
// Concurrency. Update reads an order, lets a closure apply the domain's
// rules, and writes back only if the order's internal revision ("rev") is
// still the one read, retrying on a lost race. rev is bumped on every write;
// the replicated "version" only when the domain says so (see package domain).
// The first attempt uses the state this process last wrote of the order,
// when it has it (mongox.Recent), instead of reading it: a cancellation
// or completion right after the creation then costs one round trip. The
// conditional write proves that state current; a mismatch, or a closure
// that refuses it or finds nothing to do, falls back to a read.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	notify  func(docID any, pending ...outbox.Entry)
	recent  *mongox.Recent[primitive.ObjectID, orderDoc] // the state last written of recent orders
	reads   atomic.Int64                                 // orders read by Update, for tests
	tReads  atomic.Int64                                 // replica tickets read by ApplyTicketUpdate, for tests
	trim    outbox.Trimmer                               // the notifier, when it is one; see SetTrimmer
}

// SetTrimmer lets Update remove an order's published outbox entries in its
// own write when it writes on the remembered state (whose outbox is exact):
// an order cancelled right after its creation takes the creation's entry
// with it instead of costing the relay a removal. New sets it when its
// notifier is a Trimmer; call before use.
func (s *Store) SetTrimmer(t outbox.Trimmer) { s.trim = t }

// recentOrders bounds the remembered orders (about 200 bytes each).
const recentOrders = 1024

// New returns a Store on db. n, when not nil, is told an order's _id and
// its pending outbox entries as stored right after every write that queued
// events (an *outbox.Relay: it publishes them without reading the order).
func New(db *mongo.Database, n outbox.Notifier) *Store {
	notify := func(any, ...outbox.Entry) {}
	if n != nil {
		notify = n.NotifyPending
	}
	s := &Store{orders: db.Collection(OrdersCollection), tickets: db.Collection(TicketsCollection), notify: notify,
		recent: mongox.NewRecent[primitive.ObjectID, orderDoc](recentOrders)}
	s.trim, _ = n.(outbox.Trimmer)
	return s
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
	Rev         int64              `bson:"rev"`
	Reservation string             `bson:"reservation"`
	CreatedAt   time.Time          `bson:"createdAt"`
	// Outbox is only known in remembered states (reads leave it out): the
	// pending entries as of Rev, for SetTrimmer.
	Outbox []outbox.Entry `bson:"-"`
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
	entries, err := entriesOf(o.Pending())
	if err != nil {
		return err
	}
	d := orderDoc{ID: id, UserID: o.UserID, TicketID: tid, Status: string(o.Status), ExpiresAt: o.ExpiresAt,
		Version: o.Version, Rev: 0, Reservation: reservation(o), CreatedAt: time.Now().UTC(), Outbox: entries}
	doc := bson.M{
		"_id": d.ID, "userId": d.UserID, "ticketId": d.TicketID, "status": d.Status,
		"expiresAt": d.ExpiresAt, "version": d.Version, "rev": d.Rev,
		"reservation": d.Reservation, "createdAt": d.CreatedAt, outbox.Field: entries,
		outbox.PendingField: int64(len(entries)),
	}
	if _, err := s.orders.InsertOne(ctx, doc); err != nil {
		if mongox.IsDuplicateKey(err) {
			return domain.ErrTicketReserved
		}
		return mongox.Classify(err)
	}
	s.recent.Put(d.ID, d.Rev, d)
	s.notify(id, entries...) // a new document: its outbox is exactly these
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
	useRecent := true
	for attempt := 0; attempt < maxAttempts; attempt++ {
		d, remembered, err := s.recent.GetOr(oid, &useRecent, func() (orderDoc, error) {
			s.reads.Add(1)
			return s.findOrder(ctx, id)
		})
		if err != nil {
			return err
		}
		o := d.domain()
		before := *o
		if err := fn(o); err != nil {
			if remembered {
				attempt--
				continue // judged on the remembered state: judge the stored one
			}
			return err
		}
		pending := o.Pending()
		if len(pending) == 0 && o.Status == before.Status && o.Version == before.Version && o.ExpiresAt.Equal(before.ExpiresAt) {
			if remembered {
				attempt--
				continue // "nothing to do" holds only for the stored state
			}
			return nil
		}
		entries, err := entriesOf(pending)
		if err != nil {
			return err
		}
		update := bson.M{
			"$set": bson.M{
				"status": string(o.Status), "version": o.Version, "expiresAt": o.ExpiresAt,
				"reservation": reservation(o),
			},
		}
		// Only if rev is still the one read (and rev+1 then).
		filter := bson.M{"_id": d.ID, "rev": d.Rev}
		var trim outbox.Trim
		trimmed := false
		if s.trim != nil && remembered && len(entries) > 0 && len(d.Outbox) > 0 {
			trim, trimmed = s.trim.Published(d.ID, d.Outbox)
		}
		if trimmed {
			// The published entries go in this write: the outbox as the
			// remembered state knows it, exactly, given this count.
			update = outbox.Replace(update, trim.Keep, entries...)
			update["$inc"] = bson.M{}
			filter[outbox.PendingField] = trim.Pending
		} else {
			// $push, never a plain $set: the relay may be removing
			// published entries meanwhile.
			update = outbox.Push(update, entries...)
		}
		var written bool
		stored := d.Outbox // unchanged by a write without entries
		if len(entries) == 0 {
			written, err = mongox.UpdateCounted(ctx, s.orders, d.ID, "rev", d.Rev, update)
		} else {
			// The conditional write, returning the outbox as stored after
			// it, for the relay to publish from without a read. Into
			// Push's $inc (it counts the pending entries), not over it.
			update["$inc"].(bson.M)["rev"] = int64(1)
			stored, written, err = outbox.UpdatePending(ctx, s.orders, filter, update)
			if err != nil && !mongox.IsDuplicateKey(err) {
				err = mongox.Classify(err)
			}
		}
		if err != nil {
			s.recent.Forget(d.ID, d.Rev)
			if mongox.IsDuplicateKey(err) {
				return domain.ErrTicketReserved
			}
			return err
		}
		if written {
			w := d
			w.Status, w.Version, w.ExpiresAt, w.Reservation, w.Rev = string(o.Status), o.Version, o.ExpiresAt, reservation(o), d.Rev+1
			w.Outbox = slices.Clone(stored)
			s.recent.Put(w.ID, w.Rev, w)
			if trimmed {
				s.trim.Dropped(d.ID, trim.Drop)
			}
			if len(entries) > 0 {
				s.notify(d.ID, stored...)
			}
			return nil
		}
		s.recent.Forget(d.ID, d.Rev)
		if remembered {
			attempt-- // the remembered state was not current: read it
		}
		// Lost a race with another writer: reload and decide again.
	}
	return apperr.New(apperr.Conflict, "Order was changed concurrently, try again")
}

func entriesOf(evs []events.Event) ([]outbox.Entry, error) {
	entries := make([]outbox.Entry, 0, len(evs))
	for _, e := range evs {
		en, err := outbox.NewEntry(e)
		if err != nil {
			return nil, fmt.Errorf("store: outbox entry for %s: %w", e.Subject(), err)
		}
		entries = append(entries, en)
	}
	return entries, nil
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
// per attempt, not a write (the stand-in serialises the writes of a
// document, so a write that does not match still holds the others up),
// unless the gate says the predecessor was just applied here
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
