// Package store keeps tickets in MongoDB (or the stand-in) and is the one
// place where their concurrency control lives.
//
// Every change is a single-document write that also appends the change's
// event to the document's outbox (common/outbox): the state and its event
// are stored atomically without multi-document transactions, and a Relay
// publishes them in order afterwards. A crash or a NATS outage between the
// write and the publish therefore delays an event but never loses it.
//
// Concurrency: Update reads the ticket, runs the caller's closure on it and
// writes back only if the document's revision is still the one read (an
// optimistic-concurrency check in the one conditional write). When another
// writer got there first, Update reads the new state and runs the closure
// again, up to maxAttempts times: two concurrent edits both apply, in turn,
// with distinct versions, and neither is lost. A caller that must not
// overwrite a change it has not seen (an HTTP client sending the version it
// edited) checks the version in its closure (domain.Ticket.ExpectVersion),
// which then answers 409 on the re-run.
//
// Reads saved: the store remembers the state it last wrote of recently
// written tickets (recent). Update tries its conditional write on that
// state first, without reading; the write succeeds only if rev is still
// the remembered one, which proves the state current. If it does not match
// (another replica or process wrote since), or the closure refuses the
// remembered state, Update reads the stored state and goes on as above: a
// decision is never made on a remembered state alone. A ticket edited over
// and over (a seller's PUTs, a run of reservations) then costs one round
// trip per change instead of two.
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
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/tickets/internal/domain"
)

// Collection is the name of the tickets collection.
const Collection = "tickets"

// maxAttempts bounds how often Update re-runs its closure after losing a
// race; each lost race means another writer succeeded, so n concurrent
// writers on one ticket all get through within n attempts, and only a
// storm of more than maxAttempts of them gets 409s.
const maxAttempts = 64

// Store is the ticket repository.
type Store struct {
	coll   *mongo.Collection
	notify outbox.Notifier
	trim   outbox.Trimmer                          // the notifier, when it is one
	recent *mongox.Recent[primitive.ObjectID, doc] // the state last written (see the package doc)
	reads  atomic.Int64                            // ticket reads by id, for tests of recent
}

// recentSize bounds the remembered tickets (a few hundred bytes each).
const recentSize = 1024

// remember keeps d (without its outbox, which the relay owns) as the state
// last written, for the next Update to write on (mongox.Recent).
func (s *Store) remember(d doc) {
	d.Outbox = slices.Clone(d.Outbox) // exact as of d.Rev, for trimmable
	d.Released = slices.Clone(d.Released)
	s.recent.Put(d.ID, d.Rev, d)
}

// New returns a Store on db's tickets collection. n may be nil (the relay's
// poll then finds the events).
func New(db *mongo.Database, n outbox.Notifier) *Store {
	s := &Store{coll: db.Collection(Collection), notify: n, recent: mongox.NewRecent[primitive.ObjectID, doc](recentSize)}
	s.trim, _ = n.(outbox.Trimmer)
	return s
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
	Rev      int64              `bson:"rev"`
	OrderID  string             `bson:"orderId"`
	Released []string           `bson:"released,omitempty"`
	Outbox   []outbox.Entry     `bson:"outbox,omitempty"`
	// OutboxPending counts Outbox (outbox.PendingField).
	OutboxPending int64 `bson:"outboxPending"`
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
	entry, err := outbox.NewEntry(t.Created())
	if err != nil {
		return domain.Ticket{}, apperr.Wrap(apperr.Internal, "encode event", err)
	}
	d := doc{ID: id, Title: t.Title, Price: t.Price, UserID: t.UserID, OrderID: t.OrderID,
		Released: t.Released, Outbox: []outbox.Entry{entry}, OutboxPending: 1}
	if _, err := s.coll.InsertOne(ctx, d); err != nil {
		return domain.Ticket{}, mongox.Classify(err)
	}
	s.remember(d)
	s.notifyWritten(id, entry) // a new document: its outbox is exactly this entry
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
	useRecent := true
	for lost := 0; lost < maxAttempts; {
		var d *doc
		remembered := false
		var dropped []primitive.ObjectID // published entries the write removes (outbox.Trimmer)
		var writeFilter bson.M
		if useRecent {
			if r, _, ok := s.recent.Get(oid); ok {
				d, remembered = &r, true
			}
			useRecent = false
		}
		if d == nil {
			var err error
			if d, err = s.get(ctx, oid); err != nil {
				return domain.Ticket{}, err
			}
		}
		read := d.ticket()
		t := read
		t.Released = append([]string(nil), read.Released...)
		if err := fn(&t); err != nil {
			if remembered {
				continue // judged on the remembered state: judge the stored one
			}
			return read, err
		}
		// What fn may not change stays as read.
		t.ID, t.UserID, t.Version = read.ID, read.UserID, read.Version
		update := bson.M{"$set": bson.M{"title": t.Title, "price": t.Price, "orderId": t.OrderID, "released": t.Released}}
		bookkeeping := t.Title == read.Title && t.Price == read.Price && t.OrderID == read.OrderID &&
			!slices.Equal(t.Released, read.Released)
		if !bookkeeping {
			t.Version++
			update["$inc"] = bson.M{"version": int64(1)}
			entry, err := outbox.NewEntry(t.Updated())
			if err != nil {
				return domain.Ticket{}, apperr.Wrap(apperr.Internal, "encode event", err)
			}
			// Only if rev is still the one read (and rev+1 then).
			filter := bson.M{"_id": oid, "rev": d.Rev}
			if tr, ok := s.trimmable(oid, d, remembered); ok {
				// The published entries go in this write (see trimmable).
				update = outbox.Replace(update, tr.Keep, entry)
				filter[outbox.PendingField] = tr.Pending
				dropped = tr.Drop
			} else {
				update = outbox.Push(update, entry)
				dropped = nil
			}
			update["$inc"].(bson.M)["rev"] = int64(1)
			writeFilter = filter
		}
		var written bool
		var pending []outbox.Entry
		var err error
		if bookkeeping {
			written, err = mongox.UpdateCounted(ctx, s.coll, oid, "rev", d.Rev, update)
			pending = d.Outbox // unchanged by this write
		} else {
			// The conditional write, returning the outbox as stored after
			// it: the relay publishes from that, without a read.
			pending, written, err = outbox.UpdatePending(ctx, s.coll, writeFilter, update)
			err = mongox.Classify(err)
		}
		if err != nil {
			s.recent.Forget(oid, d.Rev)
			return domain.Ticket{}, err
		}
		if !written {
			s.recent.Forget(oid, d.Rev)
			if remembered {
				continue // the remembered state was not current: read it
			}
			lost++ // another writer won: re-run fn on what it wrote
			if err := backoff(ctx, lost); err != nil {
				return domain.Ticket{}, err
			}
			continue
		}
		s.remember(doc{ID: oid, Title: t.Title, Price: t.Price, UserID: t.UserID, Version: t.Version,
			Rev: d.Rev + 1, OrderID: t.OrderID, Released: t.Released, Outbox: pending})
		if !bookkeeping {
			if len(dropped) > 0 {
				s.trim.Dropped(oid, dropped)
			}
			s.notifyWritten(oid, pending...)
		}
		return t, nil
	}
	return domain.Ticket{}, apperr.New(apperr.Conflict, "The ticket is being changed by others; retry")
}

// trimmable returns the entries to keep of the outbox of d and the
// pending count to write on, when this write can remove the published
// entries itself (outbox.Relay.Published): only on the remembered state,
// whose outbox is the one this store's last write returned, so a hot
// ticket's published entries go with its next write instead of costing the
// relay a removal statement of its own. If the count does not match (a
// removal ran meanwhile), the write does not match and Update reads.
func (s *Store) trimmable(id primitive.ObjectID, d *doc, remembered bool) (outbox.Trim, bool) {
	if s.trim == nil || !remembered || len(d.Outbox) == 0 {
		return outbox.Trim{}, false
	}
	return s.trim.Published(id, d.Outbox)
}

func (s *Store) notifyWritten(id primitive.ObjectID, pending ...outbox.Entry) {
	if s.notify != nil {
		s.notify.NotifyPending(id, pending...)
	}
}

// backoff waits a little, randomised so that racing writers spread out.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(1+rand.IntN(2*min(attempt, 10))) * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return apperr.Wrap(apperr.Unavailable, "Request cancelled", ctx.Err())
	case <-t.C:
		return nil
	}
}
