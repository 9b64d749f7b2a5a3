// Package store is the MongoDB adapter of the expiration service: one
// document per order in collection "expirations", keyed by the order id.
//
// Every write goes through outbox.Records, the services' one
// compare-and-swap over a document and its outbox. Firing turns a pending
// expiration into a fired one and records expiration:complete in the same
// write, conditional on the revision it judged: of two replicas racing for
// one expiration only one write matches (the other re-reads and finds it
// fired), so only one event is ever recorded; and a replica that dies right
// after the write loses nothing, because the event is stored and any
// replica's outbox relay publishes it. The write is therefore the claim: no
// separate lease is needed.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/expiration/internal/domain"
)

// Collection is the collection of expirations.
const Collection = "expirations"

// Store keeps expirations.
type Store struct {
	coll    *mongo.Collection
	records *outbox.Records[doc]
	relay   outbox.Notifier // may be nil: see Purge
}

type doc struct {
	ID        string       `bson:"_id"`
	ExpiresAt time.Time    `bson:"expiresAt"`
	State     domain.State `bson:"state"`
	FiredAt   *time.Time   `bson:"firedAt,omitempty"`
	// DoneAt is when the expiration left Pending (fired or dropped): Purge
	// removes done records after a retention period.
	DoneAt *time.Time `bson:"doneAt,omitempty"`
}

// New returns the store on db and creates its index. n (an *outbox.Relay)
// numbers and publishes the event of each expiration fired; with n nil the
// entries are stored unnumbered, for a relay's scan (see outbox.Notifier).
func New(ctx context.Context, db *mongo.Database, n outbox.Notifier) (*Store, error) {
	coll := db.Collection(Collection)
	s := &Store{coll: coll, relay: n, records: outbox.NewRecords[doc](coll, n, "The expiration is being changed concurrently, try again")}
	_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "state", Value: 1}, {Key: "expiresAt", Value: 1}},
		Options: options.Index().SetName("state_expiresAt"),
	})
	if err != nil {
		return nil, fmt.Errorf("expirations index: %w", mongox.Classify(err))
	}
	return s, nil
}

// Coll is the collection the outbox relay publishes from.
func (s *Store) Coll() *mongo.Collection { return s.coll }

// Schedule records that order id expires at expiresAt. It reports false
// when the order is already known (a duplicate order:created, or one that
// arrives after its order:cancelled): each order is scheduled once.
func (s *Store) Schedule(ctx context.Context, id string, expiresAt time.Time) (bool, error) {
	err := s.records.Insert(ctx, doc{ID: id, ExpiresAt: expiresAt.UTC(), State: domain.Pending})
	if mongox.IsDuplicateKey(err) {
		return false, nil
	}
	if err != nil {
		return false, mongox.Classify(err)
	}
	return true, nil
}

// Drop cancels a pending expiration, or leaves a tombstone when the order is
// not known yet. A fired expiration stays fired.
func (s *Store) Drop(ctx context.Context, id string) error {
	// Twice at most: a tombstone that loses to the order's Schedule (a
	// duplicate key) means the expiration exists now, pending, to drop.
	for range 2 {
		_, err := s.records.Update(ctx, id, func(d *doc) ([]events.Event, error) {
			if d.State == domain.Pending {
				now := time.Now().UTC()
				d.State, d.DoneAt = domain.Dropped, &now
			}
			return nil, nil
		})
		if !errors.Is(err, apperr.ErrNotFound) {
			return err
		}
		now := time.Now().UTC()
		err = s.records.Insert(ctx, doc{ID: id, State: domain.Dropped, DoneAt: &now})
		if !mongox.IsDuplicateKey(err) {
			return err
		}
	}
	return apperr.New(apperr.Conflict, "The expiration is being changed concurrently, try again")
}

// Get returns the expiration of an order (for tests and diagnostics).
func (s *Store) Get(ctx context.Context, id string) (domain.Expiration, bool, error) {
	var d doc
	err := s.coll.FindOne(ctx, bson.M{"_id": id}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return domain.Expiration{}, false, nil
	}
	if err != nil {
		return domain.Expiration{}, false, mongox.Classify(err)
	}
	return d.expiration(), true, nil
}

func (d doc) expiration() domain.Expiration {
	return domain.Expiration{OrderID: d.ID, ExpiresAt: d.ExpiresAt.UTC(), State: d.State}
}

// Due returns up to limit pending expirations due at now, earliest first.
func (s *Store) Due(ctx context.Context, now time.Time, limit int) ([]domain.Expiration, error) {
	cur, err := s.coll.Find(ctx, bson.M{"state": domain.Pending, "expiresAt": bson.M{"$lte": now.UTC()}},
		options.Find().SetSort(bson.D{{Key: "expiresAt", Value: 1}}).SetLimit(int64(limit)).
			SetProjection(bson.M{"outbox": 0}))
	if err != nil {
		return nil, mongox.Classify(err)
	}
	var docs []doc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, mongox.Classify(err)
	}
	out := make([]domain.Expiration, len(docs))
	for i, d := range docs {
		out[i] = d.expiration()
	}
	return out, nil
}

// NextDue returns the earliest pending expiry, if any.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var d doc
	err := s.coll.FindOne(ctx, bson.M{"state": domain.Pending},
		options.FindOne().SetSort(bson.D{{Key: "expiresAt", Value: 1}}).SetProjection(bson.M{"expiresAt": 1})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, mongox.Classify(err)
	}
	return d.ExpiresAt.UTC(), true, nil
}

// errNotDue: the expiration to fire is not pending, or not due yet.
var errNotDue = errors.New("expiration not due")

// Fire marks the pending expiration of order id fired, if it is due at now,
// and records its expiration:complete event in the same write. It reports
// false when the expiration is not pending (another replica fired it, or
// the order was cancelled), not due, or not known.
func (s *Store) Fire(ctx context.Context, id string, now time.Time) (bool, error) {
	now = now.UTC()
	_, err := s.records.Update(ctx, id, func(d *doc) ([]events.Event, error) {
		if d.State != domain.Pending || d.ExpiresAt.After(now) {
			return nil, errNotDue
		}
		d.State, d.FiredAt, d.DoneAt = domain.Fired, &now, &now
		return []events.Event{events.ExpirationComplete{OrderID: id}}, nil
	})
	if errors.Is(err, errNotDue) || errors.Is(err, apperr.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Purge deletes fired and dropped records done before before whose events
// are published (as the relay tells; without one, only those without
// events); it bounds the collection. Each deletion is conditional on the
// revision read, so a record written meanwhile stays. A tombstone purged
// this way lets an order:created redelivered later than that schedule
// again, which fires at once and is ignored by the orders service (the
// order is cancelled).
func (s *Store) Purge(ctx context.Context, before time.Time) (int64, error) {
	cur, err := s.coll.Find(ctx, bson.M{
		"state":  bson.M{"$in": []domain.State{domain.Fired, domain.Dropped}},
		"doneAt": bson.M{"$lt": before.UTC()},
	}, options.Find().SetProjection(bson.M{"_id": 1, outbox.RevField: 1, outbox.Field: 1}))
	if err != nil {
		return 0, mongox.Classify(err)
	}
	defer cur.Close(ctx)
	var purged int64
	var deletes []mongo.WriteModel
	flush := func() error {
		if len(deletes) == 0 {
			return nil
		}
		res, err := s.coll.BulkWrite(ctx, deletes, options.BulkWrite().SetOrdered(false))
		deletes = deletes[:0]
		if res != nil {
			purged += res.DeletedCount
		}
		return mongox.Classify(err)
	}
	for cur.Next(ctx) {
		var d struct {
			ID     string         `bson:"_id"`
			Rev    int64          `bson:"rev"`
			Outbox []outbox.Entry `bson:"outbox"`
		}
		if err := cur.Decode(&d); err != nil {
			return purged, mongox.Classify(err)
		}
		if !s.published(ctx, d.Outbox) {
			continue
		}
		deletes = append(deletes, mongo.NewDeleteOneModel().SetFilter(bson.M{"_id": d.ID, outbox.RevField: d.Rev}))
		if len(deletes) == 500 {
			if err := flush(); err != nil {
				return purged, err
			}
		}
	}
	if err := cur.Err(); err != nil {
		return purged, mongox.Classify(err)
	}
	return purged, flush()
}

// published reports whether every entry is published.
func (s *Store) published(ctx context.Context, entries []outbox.Entry) bool {
	for _, e := range entries {
		if s.relay == nil || !s.relay.Published(ctx, e) {
			return false
		}
	}
	return true
}
