package outbox

import (
	"context"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/common/mongox"
)

// RegistryCollection holds one record per relay that numbers entries (in
// the database of the collection it publishes): its checkpoint and when it
// last wrote it.
const RegistryCollection = "outbox_relays"

// relayRecord is a relay's record in RegistryCollection.
type relayRecord struct {
	ID   primitive.ObjectID `bson:"_id"`
	Coll string             `bson:"coll"`
	Host string             `bson:"host,omitempty"`
	// Done: every entry the relay numbered up to it is published (or was
	// never written).
	Done int64     `bson:"done"`
	At   time.Time `bson:"at"` // written by the relay's heartbeats (or by an adopter's claim)
	// Adopter: the relay publishing what this one left.
	Adopter primitive.ObjectID `bson:"adopter,omitempty"`
}

// ensureRecorded records the relay before its first number, and refreshes
// its record before numbering more when the last write of it is DeadAfter/2
// old (its heartbeats failing or stuck): entries are numbered only while no
// adopter can take the record (a claim needs it DeadAfter old, and is
// conditional on the heartbeat it read), so a write applied within
// DeadAfter/2 of its numbering is found by an adopter's scan.
func (r *Relay) ensureRecorded(ctx context.Context) error {
	r.mu.Lock()
	ok := !r.src.IsZero() && time.Now().Before(r.fresh)
	r.mu.Unlock()
	if ok {
		return nil
	}
	r.regMu.Lock()
	defer r.regMu.Unlock()
	r.mu.Lock()
	src, fresh, closed := r.src, r.fresh, r.closed
	r.mu.Unlock()
	sent := time.Now()
	switch {
	case closed:
		return errStopped
	case src.IsZero():
		host, _ := os.Hostname()
		rec := relayRecord{ID: primitive.NewObjectID(), Coll: r.coll.Name(), Host: host, At: sent.UTC()}
		if _, err := r.reg.InsertOne(ctx, rec); err != nil {
			return mongox.Classify(err)
		}
		// The scans' index (MongoDB; the stand-in scans without it).
		if err := mongox.EnsureIndexes(ctx, r.coll, mongo.IndexModel{
			Keys:    bson.D{{Key: Field + ".src", Value: 1}, {Key: Field + ".seq", Value: 1}},
			Options: options.Index().SetName("outbox_src_seq"),
		}); err != nil {
			r.log.Warn("outbox: creating the index of the scans failed; they read the whole collection", "err", err)
		}
		r.mu.Lock()
		r.src, r.fresh = rec.ID, sent.Add(r.opts.DeadAfter/2)
		r.mu.Unlock()
		r.log.Debug("outbox relay recorded", "src", rec.ID.Hex())
	case !sent.Before(fresh):
		return r.writeRecord(ctx)
	}
	return nil
}

// heartbeat writes the checkpoint into the record when it moved, or every
// idleBeats heartbeats. A record that is gone or adopted means another
// relay took this one for dead: Run stops.
func (r *Relay) heartbeat(ctx context.Context) error {
	r.mu.Lock()
	src, done := r.src, r.done
	r.beats++
	due := !src.IsZero() && (done != r.stored || r.beats >= idleBeats)
	r.mu.Unlock()
	if !due {
		return nil
	}
	if err := r.writeRecord(ctx); err != errStopped {
		return err
	}
	return nil // taken over: Run stops
}

// writeRecord writes the checkpoint and the time into the record, unless
// another relay adopted it: then nothing more is numbered, Run stops, and
// it returns errStopped. Once written, numbering needs no refresh for
// DeadAfter/2.
func (r *Relay) writeRecord(ctx context.Context) error {
	r.mu.Lock()
	src, done := r.src, r.done
	r.mu.Unlock()
	sent := time.Now()
	wctx, cancel := context.WithTimeout(ctx, r.opts.DeadAfter/4)
	defer cancel()
	res, err := r.reg.UpdateOne(wctx, bson.M{"_id": src, "adopter": bson.M{"$exists": false}},
		bson.M{"$set": bson.M{"done": done, "at": sent.UTC()}})
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		return mongox.Classify(err)
	case res.MatchedCount == 0:
		if r.takenOver == nil {
			r.log.Error(errTakenOver.Error(), "src", src.Hex())
		}
		r.takenOver = errTakenOver
		signal(r.kick)
		return errStopped
	}
	r.stored, r.beats, r.fresh = done, 0, sent.Add(r.opts.DeadAfter/2)
	return nil
}

// readRegistry reads the other relays' records of the collection. A relay
// heard of before (or asked about: its entry was seen before this read)
// that has no record any more is gone: all its entries are published.
func (r *Relay) readRegistry(ctx context.Context, asked primitive.ObjectID) error {
	recs, err := relayRecords(ctx, r.coll)
	if err != nil {
		return err
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[primitive.ObjectID]bool, len(recs))
	for _, rec := range recs {
		seen[rec.ID] = true
		if rec.ID == r.src {
			continue
		}
		r.others[rec.ID] = rec.Done
	}
	for src := range r.others {
		if !seen[src] {
			delete(r.others, src)
			r.gone[src] = true
		}
	}
	if !asked.IsZero() && !seen[asked] {
		r.gone[asked] = true
	}
	for id, s := range r.sentOther {
		if r.gone[s.src] || !s.src.IsZero() && s.seq <= r.others[s.src] ||
			s.src.IsZero() && now.Sub(s.at) > r.opts.DeadAfter {
			delete(r.sentOther, id)
		}
	}
	if asked.IsZero() {
		r.dead = r.dead[:0]
		for _, rec := range recs {
			if rec.ID != r.src && now.Sub(rec.At) > r.opts.DeadAfter {
				r.dead = append(r.dead, rec)
			}
		}
	}
	return nil
}

// scans runs what is due: the scan for unnumbered entries (once), the
// adoption of dead relays, and this relay's own scan (orphans, and writes
// whose outcome is unknown once DeadAfter has passed), with backoff while
// publishing fails.
func (r *Relay) scans(ctx context.Context) {
	now := time.Now()
	r.mu.Lock()
	if now.Before(r.nextScan) || ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	legacy := !r.legacyDone
	dead := append([]relayRecord(nil), r.dead...)
	r.dead = nil
	own := r.scanOwn
	for _, due := range r.unknown {
		own = own || now.After(due)
	}
	src, done := r.src, r.done
	// Publishing is tried again: by the scan, or else by the workers.
	r.failing = false
	r.mu.Unlock()
	if !legacy && len(dead) == 0 && !own {
		return
	}
	var err error
	if legacy {
		if err = r.scan(ctx, unnumberedFilter(), nil); err == nil {
			r.mu.Lock()
			r.legacyDone = true
			r.mu.Unlock()
		}
	}
	for _, rec := range dead {
		if err != nil {
			break
		}
		err = r.adopt(ctx, rec)
	}
	if own && err == nil && !src.IsZero() {
		err = r.scanOwnEntries(ctx, src, done, now)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.failures = 0
		return
	}
	if ctx.Err() == nil {
		r.log.Warn("outbox scan failed; trying again", "err", err)
	}
	r.failures++
	d := r.opts.Heartbeat
	for i := 1; i < r.failures && d < r.opts.MaxBackoff; i++ {
		d *= 2
	}
	r.nextScan = now.Add(min(d, r.opts.MaxBackoff))
}

// scanOwnEntries publishes this relay's orphans and settles its unknown
// writes: those the scan finds are published; those it does not were never
// applied, if their DeadAfter has passed (started: when the scan began).
func (r *Relay) scanOwnEntries(ctx context.Context, src primitive.ObjectID, done int64, started time.Time) error {
	r.mu.Lock()
	r.scanOwn = false
	orphans := map[int64]bool{} // those of before the scan: later ones may be in documents it has passed
	for seq, st := range r.open {
		if st == orphan {
			orphans[seq] = true
		}
	}
	r.mu.Unlock()
	seen := map[int64]bool{}
	if err := r.scan(ctx, relayFilter(src, done), seen); err != nil {
		r.mu.Lock()
		r.scanOwn = true
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for seq, due := range r.unknown {
		if started.After(due) {
			if !seen[seq] && r.open[seq] == unknown {
				delete(r.open, seq) // never applied
			}
			delete(r.unknown, seq)
		}
	}
	for seq := range orphans {
		if r.open[seq] == orphan && !seen[seq] {
			// Written, and in no document: a later write dropped it,
			// which it does only once published.
			delete(r.open, seq)
		}
	}
	r.advance()
	return nil
}

// adopt takes over a dead relay's record (conditionally on the heartbeat
// read, so that of several adopters one wins), publishes every entry it
// left above its checkpoint, and deletes the record: its entries count as
// published from then on.
func (r *Relay) adopt(ctx context.Context, rec relayRecord) error {
	r.mu.Lock()
	self := r.src
	r.mu.Unlock()
	if self.IsZero() {
		return nil // not recorded yet: nobody to adopt as
	}
	res, err := r.reg.UpdateOne(ctx, bson.M{"_id": rec.ID, "at": rec.At},
		bson.M{"$set": bson.M{"adopter": self, "at": time.Now().UTC()}})
	if err != nil {
		return mongox.Classify(err)
	}
	if res.MatchedCount == 0 {
		return nil // alive after all, or adopted by another
	}
	r.log.Info("outbox: adopting a relay that stopped", "src", rec.ID.Hex(), "host", rec.Host, "checkpoint", rec.Done)
	if err := r.scan(ctx, relayFilter(rec.ID, rec.Done), nil); err != nil {
		return err // the record goes stale again: adopted again later
	}
	if _, err := r.reg.DeleteOne(ctx, bson.M{"_id": rec.ID, "adopter": self}); err != nil {
		return mongox.Classify(err)
	}
	r.mu.Lock()
	delete(r.others, rec.ID)
	r.gone[rec.ID] = true
	r.mu.Unlock()
	return nil
}

// scan publishes the entries of every document matching filter that are
// not published, each document's in order; seen, if not nil, collects the
// numbers of this relay's entries found. Unnumbered entries, once
// published, are removed from their document.
func (r *Relay) scan(ctx context.Context, filter bson.M, seen map[int64]bool) error {
	cur, err := r.coll.Find(ctx, filter, options.Find().SetProjection(bson.M{Field: 1}).SetBatchSize(500))
	if err != nil {
		return mongox.Classify(err)
	}
	defer cur.Close(ctx)
	r.mu.Lock()
	src := r.src
	r.mu.Unlock()
	for cur.Next(ctx) {
		var doc struct {
			ID     any        `bson:"_id"`
			Outbox []bson.Raw `bson:"outbox"`
		}
		if err := cur.Decode(&doc); err != nil {
			return err
		}
		entries := make([]Entry, 0, len(doc.Outbox))
		var unnumbered []bson.Raw
		for _, raw := range doc.Outbox {
			var e Entry
			if err := bson.Unmarshal(raw, &e); err != nil {
				// Not ours to judge; what follows it would go out of order.
				r.log.Error("outbox entry does not decode", "id", doc.ID, "err", err)
				break
			}
			entries = append(entries, e)
			if e.Src.IsZero() {
				unnumbered = append(unnumbered, raw)
			} else if seen != nil && e.Src == src {
				seen[e.Seq] = true
			}
		}
		if err := r.publishAll(ctx, doc.ID, entries); err != nil {
			r.mu.Lock()
			r.failing = true
			r.mu.Unlock()
			return err
		}
		if len(unnumbered) > 0 {
			// Exact stored forms, guarded by their presence: the FerretDB
			// stand-in ignores a $pull with a condition.
			if _, err := r.coll.UpdateOne(ctx, bson.M{"_id": doc.ID, Field: bson.M{"$all": unnumbered}},
				bson.M{"$pullAll": bson.M{Field: unnumbered}}); err != nil {
				return mongox.Classify(err)
			}
		}
	}
	return cur.Err()
}

// close ends Run: nothing more is numbered; the record goes if everything
// is settled (the entries in documents then count as published), and
// otherwise keeps the last checkpoint for an adopter.
func (r *Relay) close() error {
	r.mu.Lock()
	r.closed = true
	src, pending, takenOver := r.src, len(r.open), r.takenOver
	r.mu.Unlock()
	if src.IsZero() || takenOver != nil {
		return takenOver
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if pending == 0 {
		_, err = r.reg.DeleteOne(ctx, bson.M{"_id": src, "adopter": bson.M{"$exists": false}})
	} else {
		r.mu.Lock()
		r.beats = idleBeats
		r.mu.Unlock()
		err = r.heartbeat(ctx)
		r.log.Warn("outbox: entries not published at shutdown; another relay adopts them", "pending", pending)
	}
	if err != nil {
		r.log.Warn("outbox: closing the relay's record failed", "err", err)
	}
	return nil
}

// Backlog counts the entries of coll not published, as the relays'
// records tell (for tests and the benchmark: it reads every document with
// an outbox).
func Backlog(ctx context.Context, coll *mongo.Collection) (int64, error) {
	recs, err := relayRecords(ctx, coll)
	if err != nil {
		return 0, err
	}
	done := map[primitive.ObjectID]int64{}
	for _, rec := range recs {
		done[rec.ID] = rec.Done
	}
	cur, err := coll.Find(ctx, bson.M{Field + ".0": bson.M{"$exists": true}}, options.Find().SetProjection(bson.M{Field: 1}))
	if err != nil {
		return 0, err
	}
	defer cur.Close(ctx)
	var n int64
	for cur.Next(ctx) {
		var doc struct {
			Outbox []Entry `bson:"outbox"`
		}
		if err := cur.Decode(&doc); err != nil {
			return 0, err
		}
		for _, e := range doc.Outbox {
			if d, ok := done[e.Src]; e.Src.IsZero() || ok && e.Seq > d {
				n++
			}
		}
	}
	return n, cur.Err()
}

// relayRecords reads the records of the relays of coll.
func relayRecords(ctx context.Context, coll *mongo.Collection) ([]relayRecord, error) {
	cur, err := coll.Database().Collection(RegistryCollection).Find(ctx, bson.M{"coll": coll.Name()})
	if err != nil {
		return nil, mongox.Classify(err)
	}
	var recs []relayRecord
	if err := cur.All(ctx, &recs); err != nil {
		return nil, mongox.Classify(err)
	}
	return recs, nil
}
