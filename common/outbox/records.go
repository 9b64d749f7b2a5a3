package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/x/bsonx/bsoncore"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/mongox"
)

// Records is the one read-modify-write loop of the services' stores: a
// compare-and-swap over a document and its outbox.
//
// D is the document's state as the store sees it: a struct with its `_id`
// and fields, decoded from and encoded to BSON. Records adds the fields it
// owns, never part of D: "rev", the document's revision (bumped by every
// write, the concurrency token), and the outbox (Field).
//
// Update reads the document, lets the caller's closure change it and say
// which events the change makes, and writes exactly the fields that
// changed ($set and $unset), the revision's increment and the outbox, in
// one write conditional on the revision read. The outbox it writes is the
// one it read less the entries the relay reports published, followed by
// the new ones: exact, since no write changes a document without changing
// its revision. A lost race re-runs the closure on the new state, after a
// short random backoff, up to MaxAttempts; no write is ever based on a
// state the write does not prove current.
//
// Reads saved: Records remembers the state it last wrote of recent
// documents (mongox.Recent), with the outbox it wrote. Update's first
// attempt runs the closure on that state without reading; its conditional
// write succeeds only if nobody wrote since. If it does not match, or the
// closure refuses the remembered state (an error, or no change), the
// stored state is read and judged: a decision is never made on a
// remembered state alone.
type Records[D any] struct {
	coll     *mongo.Collection
	relay    Notifier // nil: entries are stored unnumbered (see Notifier)
	recent   *mongox.Recent[any, known]
	conflict string
	reads    atomic.Int64

	// MaxAttempts bounds the closure's re-runs after lost races: each
	// lost race means another writer succeeded, so n concurrent writers
	// on one document all get through within n attempts.
	MaxAttempts int
}

// known is a document's state as this process last wrote or read it.
type known struct {
	raw    bson.Raw // D, encoded (immutable: every Update decodes a copy)
	outbox []Entry  // the entries stored with it
	// noRev: the document read has no revision field, written before its
	// store went through Records; the write is conditional on its absence
	// (and its $inc makes it 1).
	noRev bool
}

// RevField is the document field holding its revision.
const RevField = "rev"

// remembered documents per Records (a few hundred bytes each).
const recentSize = 1024

// NewRecords returns the loop over coll. n (an *Relay, or nil) numbers the
// entries of each write and publishes them right after it. conflict is the
// message of the apperr.Conflict that Update returns when it loses
// MaxAttempts races in a row.
func NewRecords[D any](coll *mongo.Collection, n Notifier, conflict string) *Records[D] {
	return &Records[D]{coll: coll, relay: n, recent: mongox.NewRecent[any, known](recentSize), conflict: conflict, MaxAttempts: 64}
}

// Reads counts the documents Update has read (tests of the remembered state).
func (r *Records[D]) Reads() int64 { return r.reads.Load() }

// Insert stores d as a new document at revision 0 with evs in its outbox,
// in one insert, and has the relay publish them. Errors as the driver
// reports them after mongox.Classify (a unique index's violation stays
// recognisable by mongox.IsDuplicateKey).
func (r *Records[D]) Insert(ctx context.Context, d D, evs ...events.Event) error {
	raw, err := bson.Marshal(d)
	if err != nil {
		return apperr.Wrap(apperr.Internal, "encode record", err)
	}
	entries, err := newEntries(evs...)
	if err != nil {
		return err
	}
	if err := r.stamp(ctx, entries); err != nil {
		return err
	}
	id := bson.Raw(raw).Lookup("_id")
	// D's encoding followed by the fields Records owns.
	idx, doc := bsoncore.AppendDocumentStart(make([]byte, 0, len(raw)+64))
	doc = append(doc, raw[4:len(raw)-1]...)
	doc = bsoncore.AppendInt64Element(doc, RevField, 0)
	if len(entries) > 0 {
		t, v, err := bson.MarshalValue(entries)
		if err != nil {
			r.settle(nil, entries, NotWritten, nil)
			return apperr.Wrap(apperr.Internal, "encode events", err)
		}
		doc = append(bsoncore.AppendHeader(doc, t, Field), v...)
	}
	doc, _ = bsoncore.AppendDocumentEnd(doc, idx)
	key := idKey(id)
	if _, err := r.coll.InsertOne(ctx, bson.Raw(doc)); err != nil {
		r.settle(key, entries, failed(err), nil)
		return classify(err)
	}
	r.recent.Put(key, 0, known{raw: raw, outbox: entries})
	r.settle(key, entries, Written, entries)
	return nil
}

// Update runs fn on the document id and writes what it changed with the
// events it returns, conditionally on the revision fn saw, re-running fn
// on the new state after a lost race (see Records). fn gets a fresh copy
// each time; it must not change _id. An error from fn is returned as is and
// nothing is written; a change of nothing and no events writes nothing.
// Update returns the state written (or, with fn's error or no change, the
// state fn saw). Errors: apperr.ErrNotFound when there is no document;
// apperr.Conflict after MaxAttempts lost races; a write's error after
// mongox.Classify (a unique index's violation stays recognisable by
// mongox.IsDuplicateKey).
func (r *Records[D]) Update(ctx context.Context, id any, fn func(*D) ([]events.Event, error)) (D, error) {
	var zero D
	key := idKey(mustRaw(id))
	first := true
	for lost := 0; lost < r.MaxAttempts; {
		k, rev, remembered, err := r.state(ctx, id, key, &first)
		if err != nil {
			return zero, err
		}
		var d D
		if err := bson.Unmarshal(k.raw, &d); err != nil {
			return zero, apperr.Wrap(apperr.Internal, "decode record", err)
		}
		// Compared as D encodes it: fields of the document that D does not
		// know are left as they are.
		before, err := bson.Marshal(d)
		if err != nil {
			return zero, apperr.Wrap(apperr.Internal, "encode record", err)
		}
		evs, err := fn(&d)
		if err != nil {
			if remembered {
				continue // judged on the remembered state: judge the stored one
			}
			return d, err
		}
		after, err := bson.Marshal(d)
		if err != nil {
			return zero, apperr.Wrap(apperr.Internal, "encode record", err)
		}
		set, unset := changes(before, after)
		if len(set) == 0 && len(unset) == 0 && len(evs) == 0 {
			if remembered {
				continue // "nothing to do" holds only for the stored state
			}
			return d, nil
		}
		entries, err := newEntries(evs...)
		if err != nil {
			return zero, err
		}
		if err := r.stamp(ctx, entries); err != nil {
			return zero, err
		}
		// The outbox as stored at rev, less what is published, then the
		// new entries: written only when that changes it.
		outbox := r.unpublished(ctx, k.outbox)
		if len(entries) > 0 || len(outbox) < len(k.outbox) {
			outbox = append(outbox, entries...)
			set[Field] = outbox
		} else {
			outbox = k.outbox
		}
		filter := bson.D{{Key: "_id", Value: id}, {Key: RevField, Value: rev}}
		if k.noRev {
			filter[1].Value = bson.M{"$exists": false}
		}
		update := bson.M{"$inc": bson.M{RevField: int64(1)}}
		if len(set) > 0 {
			update["$set"] = set
		}
		if len(unset) > 0 {
			update["$unset"] = unset
		}
		res, err := r.coll.UpdateOne(ctx, filter, update)
		if err != nil {
			r.recent.Forget(key, rev)
			r.settle(key, entries, failed(err), nil)
			return zero, classify(err)
		}
		if res.MatchedCount == 0 {
			r.recent.Forget(key, rev)
			r.settle(key, entries, NotWritten, nil)
			if remembered {
				continue // the remembered state was not current: read it
			}
			lost++ // another writer won: run fn again on what it wrote
			if err := backoff(ctx, lost); err != nil {
				return zero, err
			}
			continue
		}
		r.recent.Put(key, rev+1, known{raw: after, outbox: outbox})
		r.settle(key, entries, Written, outbox)
		return d, nil
	}
	return zero, apperr.New(apperr.Conflict, r.conflict)
}

// unpublished is outbox without the entries the relay reports published
// (a new slice: outbox may be a remembered state's).
func (r *Records[D]) unpublished(ctx context.Context, outbox []Entry) []Entry {
	keep := make([]Entry, 0, len(outbox)+1)
	for _, e := range outbox {
		if r.relay == nil || !r.relay.Published(ctx, e) {
			keep = append(keep, e)
		}
	}
	return keep
}

func (r *Records[D]) stamp(ctx context.Context, entries []Entry) error {
	if r.relay == nil || len(entries) == 0 {
		return nil
	}
	return r.relay.Stamp(ctx, entries)
}

func (r *Records[D]) settle(key any, entries []Entry, o Outcome, stored []Entry) {
	if r.relay != nil && (len(entries) > 0 || o == Written && len(stored) > 0) {
		r.relay.Settle(key, entries, o, stored)
	}
}

// failed is the outcome of a write that returned err: not written when the
// store refused it (a duplicate key), unknown otherwise.
func failed(err error) Outcome {
	if mongox.IsDuplicateKey(err) {
		return NotWritten
	}
	return Unknown
}

// state returns the remembered state of id on the first call (first is
// then set to false) if there is one, and else reads it.
func (r *Records[D]) state(ctx context.Context, id, key any, first *bool) (k known, rev int64, remembered bool, err error) {
	if *first {
		*first = false
		if k, rev, ok := r.recent.Get(key); ok {
			return k, rev, true, nil
		}
	}
	r.reads.Add(1)
	raw, err := r.coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return known{}, 0, false, apperr.ErrNotFound
	}
	if err != nil {
		return known{}, 0, false, mongox.Classify(err)
	}
	var stored struct {
		Outbox []Entry `bson:"outbox"`
	}
	if err := bson.Unmarshal(raw, &stored); err != nil {
		return known{}, 0, false, apperr.Wrap(apperr.Internal, "decode outbox", err)
	}
	k = known{raw: raw, outbox: stored.Outbox}
	v, err := raw.LookupErr(RevField)
	if err != nil {
		k.noRev = true
		return k, 0, false, nil
	}
	rev, _ = v.AsInt64OK()
	return k, rev, false, nil
}

// newEntries encodes evs as entries.
func newEntries(evs ...events.Event) ([]Entry, error) {
	entries := make([]Entry, 0, len(evs))
	for _, e := range evs {
		en, err := newEntry(e)
		if err != nil {
			return nil, apperr.Wrap(apperr.Internal, "encode event", err)
		}
		entries = append(entries, en)
	}
	return entries, nil
}

// owned are the fields Records writes itself; a D never has them.
var owned = map[string]bool{"_id": true, RevField: true, Field: true}

// changes compares the top-level fields of two encodings of a D: what
// after sets anew or differently, and what it no longer has.
func changes(before, after bson.Raw) (set, unset bson.M) {
	set, unset = bson.M{}, bson.M{}
	was := map[string]bson.RawValue{}
	elems, _ := before.Elements()
	for _, e := range elems {
		if !owned[e.Key()] {
			was[e.Key()] = e.Value()
		}
	}
	elems, _ = after.Elements()
	for _, e := range elems {
		k, v := e.Key(), e.Value()
		if owned[k] {
			continue
		}
		if old, ok := was[k]; !ok || old.Type != v.Type || !bytes.Equal(old.Value, v.Value) {
			set[k] = v
		}
		delete(was, k)
	}
	for k := range was {
		unset[k] = ""
	}
	return set, unset
}

// idKey is the comparable form of a document id, as the relay and the
// remembered states key documents: the decoded value for the id types the
// services use (ObjectID, string, number).
func idKey(v bson.RawValue) any {
	var out any
	if err := v.Unmarshal(&out); err != nil {
		return string(v.Value)
	}
	return out
}

// mustRaw encodes id as a BSON value (ids are plain values).
func mustRaw(id any) bson.RawValue {
	t, b, err := bson.MarshalValue(id)
	if err != nil {
		panic(fmt.Sprintf("outbox: id %v: %v", id, err))
	}
	return bson.RawValue{Type: t, Value: b}
}

func classify(err error) error {
	if mongox.IsDuplicateKey(err) {
		return err
	}
	return mongox.Classify(err)
}

// backoff waits a little, randomised so that racing writers spread out:
// the one retry policy of lost races.
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
