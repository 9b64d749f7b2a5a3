package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/common/metrics"
)

var backlogGauge = metrics.NewGaugeVec(metrics.GaugeOpts{
	Name: "outbox_backlog",
	Help: "Outbox entries written but not yet published, as of the last poll.",
}, []string{"collection"})

// Options tune a Relay; zero values take the defaults.
type Options struct {
	// PollInterval: how often the relay looks for entries nobody notified
	// it of (after a crash or restart, or that failed to publish). Default 1s.
	PollInterval time.Duration
	// MaxBackoff caps the poll delay while publishing fails. Default 5s.
	MaxBackoff time.Duration
	// Workers: documents processed at once (each document by at most one
	// worker at a time, so its entries go out in order). Default 4.
	Workers int
	// PublishTimeout bounds one publish. Default 5s.
	PublishTimeout time.Duration
	// BatchSize: documents one poll picks up at most. Default 1000.
	BatchSize int
}

func (o Options) withDefaults() Options {
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.MaxBackoff < o.PollInterval {
		o.MaxBackoff = o.PollInterval
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	return o
}

// states of a document id in the relay's queue
const (
	queued = iota + 1
	running
	dirty // running, and notified again meanwhile: process once more
)

// Relay publishes the outbox entries of one collection.
type Relay struct {
	coll *mongo.Collection
	pub  Publisher
	log  *slog.Logger
	opts Options

	mu           sync.Mutex
	queue        []any
	state        map[any]int
	snaps        map[any][][]Entry           // handed-over snapshots of a document's pending entries, not yet processed
	sent         map[primitive.ObjectID]bool // entries (ids are unique) published by this relay, not to publish again (see forget); true once their removal is confirmed
	retired      []retired                   // of sent: removal confirmed, forgotten after rememberRemoved, oldest first from retiredAt
	retiredAt    int
	remember     time.Duration // rememberRemoved; tests shorten it (export_test.go)
	nextFullPoll time.Time     // see fullPollInterval (zero: the first poll); only Run's goroutine uses it
	stateHigh    int           // the most documents state held since it was last made anew (shrinkState)
	sentHigh     int           // the same for sent
	failures     int           // consecutive publish failures; drives the poll backoff
	wake         chan struct{}
	pollNow      chan struct{}

	pulls     chan pull // published entries to remove, batched by the remover
	pullsDone chan struct{}
	// The remover's queue (r.mu): documents whose removals wait for a free
	// remover, merged per document, in the order of their first removal;
	// and the documents whose removal is running (see Published).
	removeQueue []*pull
	removeByID  map[any]*pull
	removing    map[any]int

	// removeFault, if set (by tests: see export_test.go), is called before
	// each removal command; an error fails the removal as the store would.
	removeFault func() error
}

// retired is a confirmed removal whose entries stay in sent a while longer.
type retired struct {
	ids []primitive.ObjectID
	at  time.Time
}

// rememberRemoved is how long entries stay remembered as sent after their
// removal. A snapshot handed to NotifyPending (or a read) may have been
// taken just before the removal and arrive after it; were the entries
// forgotten at once, it would publish them again, after newer entries of
// the same document (harmless to version-checking consumers, but an
// avoidable out-of-order duplicate). Snapshots are handed over right after
// the write that took them, so a few seconds cover it; a snapshot older
// than this is not expected, and if one comes it only duplicates (at least
// once). Remembering costs memory per entry published in that time: a
// minute of a busy relay held tens of thousands of them.
const rememberRemoved = 10 * time.Second

// pull is the removal of one document's published entries.
type pull struct {
	id      any
	entries []bson.Raw
	ids     []primitive.ObjectID
	at      time.Time // queued (the first of merged ones)
}

// removeAfter is how long the removal of a published entry may wait for
// others to share its command (removeBatch): cleanup costs a command per
// batch, not per event, at any rate above a few events a second. A document
// written again meanwhile (a ticket edited or reserved and released, an
// order cancelled after its creation) has its published entries removed by
// that write itself (Relay.Published), which saves its statement.
// Until then a published entry only costs space in its document, and the
// poll skips it (handling). A relay that stops removes what it has queued;
// one that crashes leaves its published entries to be published again.
const removeAfter = 2 * time.Second

// NewRelay returns a relay for coll; call Run to start it. Document ids
// passed to Notify must be comparable (ObjectID, string, number).
func NewRelay(coll *mongo.Collection, pub Publisher, log *slog.Logger, opts Options) *Relay {
	if log == nil {
		log = slog.Default()
	}
	return &Relay{
		coll:    coll,
		pub:     pub,
		log:     log.With("component", "outbox", "collection", coll.Name()),
		opts:    opts.withDefaults(),
		state:   map[any]int{},
		snaps:   map[any][][]Entry{},
		sent:    map[primitive.ObjectID]bool{},
		wake:    make(chan struct{}, 1),
		pollNow: make(chan struct{}, 1),
		pulls:   make(chan pull, 1024),

		removeByID: map[any]*pull{},
		removing:   map[any]int{},
		remember:   rememberRemoved,
	}
}

// Notify asks the relay to publish the pending entries of docID now. It
// never blocks; call it after every write that pushed an entry. The relay
// reads the document first; prefer NotifyPending when the writer has the
// entries.
func (r *Relay) Notify(docID any) {
	r.NotifyPending(docID)
}

// NotifyPending is Notify for a writer that knows the document's pending
// entries as stored right after its write, in array order: the outbox of a
// document it just inserted, or the outbox returned by its update (see
// Records.Update). The relay publishes them without reading the document.
//
// It must be the whole pending outbox, not just the entries this write
// pushed: an older entry still pending (a failed publish, a concurrent
// writer whose notification comes later) must go out first. A snapshot is
// therefore always safe to publish in order: entries before its first one
// were published before they were removed. Entries this relay has already
// published (from another snapshot) are skipped; a stale snapshot arriving
// after their removal only duplicates them, which at-least-once allows.
// With no entries it is Notify.
func (r *Relay) NotifyPending(docID any, pending ...Entry) {
	r.mu.Lock()
	if len(pending) > 0 {
		r.snaps[docID] = append(r.snaps[docID], pending)
	}
	switch r.state[docID] {
	case 0:
		r.state[docID] = queued
		r.queue = append(r.queue, docID)
		r.stateHigh = max(r.stateHigh, len(r.state))
	case running:
		r.state[docID] = dirty
	}
	r.mu.Unlock()
	signal(r.wake)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run publishes until ctx is done. It starts with a poll, so entries left
// by a previous process are published first.
func (r *Relay) Run(ctx context.Context) error {
	removerDone := make(chan struct{})
	stopRemover := make(chan struct{})
	go func() { defer close(removerDone); r.remove(ctx, stopRemover) }()
	var wg sync.WaitGroup
	for range r.opts.Workers {
		wg.Add(1)
		go func() { defer wg.Done(); r.work(ctx) }()
	}
	defer func() {
		wg.Wait()
		close(stopRemover) // the workers queue no more removals: flush and stop
		<-removerDone
	}()
	delay := time.Duration(0)
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-r.pollNow:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		if err := r.poll(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("outbox poll failed", "err", err)
		}
		timer.Reset(r.nextDelay())
	}
}

// nextDelay is PollInterval, doubled per consecutive failure up to MaxBackoff.
func (r *Relay) nextDelay() time.Duration {
	r.mu.Lock()
	n := r.failures
	r.mu.Unlock()
	d := r.opts.PollInterval
	for i := 0; i < n && d < r.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.opts.MaxBackoff)
}

// fullPollInterval: how often, on average, a poll looks at the entries
// themselves rather than the pending count (the first poll after start
// does too). It is the safety net for a count that is too low, which would
// hide a document's entries from every other poll: a writer that does not
// keep the count (seen once: one overwrote the pushing write's $inc), or a hand-made
// change. On the FerretDB stand-in it decodes the whole collection: with
// 15,000 tickets, a burst of the stand-in's CPU, which every relay made at
// the same moment of every minute (they start together). Every 10 minutes
// now, each relay at its own random moment (±20 %). (Suspected of some of
// the benchmark's propagation outliers; they still occur without it, so
// that is not shown.)
const fullPollInterval = 10 * time.Minute

// nextFullPoll is when the poll after one at now looks at the entries.
func nextFullPoll(now time.Time) time.Time {
	jitter := time.Duration(rand.Int64N(int64(fullPollInterval)*2/5)) - fullPollInterval/5
	return now.Add(fullPollInterval + jitter)
}

// poll queues every document with pending entries and updates the backlog gauge.
func (r *Relay) poll(ctx context.Context) error {
	filter := pendingFilter()
	if now := time.Now(); !now.Before(r.nextFullPoll) {
		filter, r.nextFullPoll = bson.M{Field + ".0": bson.M{"$exists": true}}, nextFullPoll(now)
	}
	cur, err := r.coll.Find(ctx, filter,
		options.Find().SetProjection(bson.M{Field: 1, PendingField: 1}).SetLimit(int64(r.opts.BatchSize)))
	if err != nil {
		return err
	}
	defer cur.Close(ctx)
	r.mu.Lock()
	failing := r.failures > 0
	r.mu.Unlock()
	var backlog, notified int
	for cur.Next(ctx) {
		var doc struct {
			ID      any     `bson:"_id"`
			Outbox  []Entry `bson:"outbox"`
			Pending any     `bson:"outboxPending"`
		}
		if err := cur.Decode(&doc); err != nil {
			return err
		}
		if len(doc.Outbox) == 0 {
			r.repairCount(ctx, doc.ID, doc.Pending)
			continue
		}
		backlog += len(doc.Outbox)
		if r.handling(doc.ID, doc.Outbox) {
			continue
		}
		// While publishing fails, one document probes the broker; its
		// success triggers a full poll at once (see finish).
		if !failing || notified == 0 {
			// The entries just read are a snapshot like a writer's: the
			// relay publishes from it without reading the document again
			// (entries it has sent already are skipped).
			r.NotifyPending(doc.ID, doc.Outbox...)
			notified++
		}
	}
	backlogGauge.WithLabelValues(r.coll.Name()).Set(float64(backlog))
	return cur.Err()
}

// handling reports whether the relay already has document id in hand: it
// is queued or being published (what its queued snapshots or its read
// hold goes out, and a failure leaves it to the next poll), or every entry
// the poll read of it is published and its removal under way. The poll
// then adds nothing. A snapshot of its own, queued behind the writer's,
// was processed only after the queue ahead of it: after a burst of POSTs,
// often after the entries' removal had been confirmed and forgotten
// (rememberRemoved), so it published them again: 2.0 publishes per
// ticket:created in the bench.
func (r *Relay) handling(id any, entries []Entry) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state[id] != 0 {
		return true
	}
	for _, e := range entries {
		if _, sent := r.sent[e.ID]; !sent {
			return false
		}
	}
	return true
}

// pendingFilter matches documents with outbox entries: those whose count
// is not 0, including those without a count (see the package doc).
func pendingFilter() bson.M {
	return bson.M{PendingField: bson.M{"$ne": int64(0)}}
}

// repairCount sets the count of a document that has no entries to 0: it was
// written without one, or by a version that did not keep it. Only if the
// document still has no entries and the count read (nil: no field) is
// still there, so a concurrent push of entries is never undone. A failure only means
// the next poll reads the document again.
func (r *Relay) repairCount(ctx context.Context, id, read any) {
	filter := bson.M{"_id": id, Field + ".0": bson.M{"$exists": false}}
	if read == nil {
		filter[PendingField] = bson.M{"$exists": false}
	} else {
		filter[PendingField] = read
	}
	if _, err := r.coll.UpdateOne(ctx, filter, bson.M{"$set": bson.M{PendingField: int64(0)}}); err != nil && ctx.Err() == nil {
		r.log.Warn("outbox: resetting the pending count failed", "id", id, "err", err)
	}
}

func (r *Relay) work(ctx context.Context) {
	for {
		id, ok := r.next(ctx)
		if !ok {
			return
		}
		err := r.process(ctx, id)
		r.finish(id, err)
	}
}

func (r *Relay) next(ctx context.Context) (any, bool) {
	for {
		r.mu.Lock()
		if len(r.queue) > 0 {
			id := r.queue[0]
			r.queue[0] = nil
			r.queue = r.queue[1:]
			r.state[id] = running
			more := len(r.queue) > 0
			r.mu.Unlock()
			if more {
				signal(r.wake) // another worker may take the next one
			}
			return id, true
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-r.wake:
		}
	}
}

// publishError marks a failure of the broker (as opposed to the database
// or a bad entry): only those put the relay into backoff.
type publishError struct{ error }

func (e publishError) Unwrap() error { return e.error }

func (r *Relay) finish(id any, err error) {
	r.mu.Lock()
	wasFailing := r.failures > 0
	var pe publishError
	if errors.As(err, &pe) {
		r.failures++
	} else if err == nil {
		r.failures = 0
	}
	if (r.state[id] == dirty || len(r.snaps[id]) > 0) && err == nil {
		r.state[id] = queued
		r.queue = append(r.queue, id)
		r.mu.Unlock()
		signal(r.wake)
		return
	}
	delete(r.state, id)
	delete(r.snaps, id) // after a failure the poll reads the document again
	r.shrinkState()
	r.mu.Unlock()
	if err == nil && wasFailing {
		signal(r.pollNow) // the broker is back: deliver the rest now, not after the backoff
	}
}

// process publishes the pending entries of one document in order and
// hands the published ones to the remover. A publish failure stops at that
// entry; the poll retries it later. The entries come from a snapshot handed
// over by NotifyPending or, without one, from reading the document.
//
// Entries are removed with $pullAll of their stored form (exact match): the
// FerretDB stand-in silently ignores a $pull with a condition such as
// {id: {$in: [...]}}, and an exact match works on MongoDB and FerretDB alike.
// The same write decrements the pending count, and only matches while all
// the removed entries are still in the document ($all), so a second relay
// removing the same entries (duplicate publishing) does not count them twice.
func (r *Relay) process(ctx context.Context, id any) error {
	if err := ctx.Err(); err != nil {
		return err // shutting down: publish nothing more (a snapshot needs no read that would fail)
	}
	r.mu.Lock()
	var snap []Entry
	if q := r.snaps[id]; len(q) > 0 {
		snap = q[0]
		q[0] = nil
		if len(q) == 1 {
			delete(r.snaps, id)
		} else {
			r.snaps[id] = q[1:]
		}
	}
	r.mu.Unlock()
	var raws []bson.Raw
	if snap != nil {
		raws = make([]bson.Raw, 0, len(snap))
		for _, e := range snap {
			raw, err := bson.Marshal(e)
			if err != nil {
				return fmt.Errorf("outbox: encode entry of %v: %w", id, err)
			}
			raws = append(raws, raw)
		}
	} else {
		var doc struct {
			Outbox []bson.Raw `bson:"outbox"`
		}
		err := r.coll.FindOne(ctx, bson.M{"_id": id}, options.FindOne().SetProjection(bson.M{Field: 1})).Decode(&doc)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil
		}
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("outbox read failed", "id", id, "err", err)
			}
			return err
		}
		raws = doc.Outbox
	}
	var published []bson.Raw
	var ids []primitive.ObjectID
	var pubErr error
	for _, raw := range raws {
		var e Entry
		if err := bson.Unmarshal(raw, &e); err != nil {
			// Not ours to judge: leave it, and do not publish what follows
			// it out of order.
			pubErr = fmt.Errorf("outbox: undecodable entry in %v: %w", id, err)
			r.log.Error("outbox entry does not decode", "id", id, "err", err)
			break
		}
		if r.wasSent(e.ID) {
			continue // published from an earlier snapshot; its removal is under way
		}
		pctx, cancel := context.WithTimeout(ctx, r.opts.PublishTimeout)
		pubErr = r.pub.PublishMsg(pctx, e.Subject, e.ID.Hex(), e.Data)
		cancel()
		if pubErr != nil {
			if ctx.Err() == nil {
				r.log.Warn("outbox publish failed; will retry", "id", id, "subject", e.Subject, "err", pubErr)
			}
			pubErr = publishError{pubErr}
			break
		}
		published = append(published, raw)
		ids = append(ids, e.ID)
	}
	if len(published) > 0 {
		r.mu.Lock()
		for _, eid := range ids {
			r.sent[eid] = false
			r.sentHigh = max(r.sentHigh, len(r.sent))
		}
		r.mu.Unlock()
		// Not cancelled with ctx, and never dropped: Run flushes the
		// removals before it returns.
		r.pulls <- pull{id: id, entries: published, ids: ids}
	}
	return pubErr
}

func (r *Relay) wasSent(eid primitive.ObjectID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.sent[eid]
	return ok
}

// removeBatch is how many documents' removals one command carries: the
// remover sends one as soon as this many are queued, or when the oldest
// queued has waited removeAfter. MongoDB runs a bulk write statement by
// statement; a batch of 128 single-document updates is one round trip and
// one command. (The FerretDB stand-in runs it in parts of a few statements:
// see standin/split.go.)
const removeBatch = 128

// removers bounds the removal commands in flight at once. Removal is
// cleanup: until it runs, a published entry only costs space in its
// document, so it gets the smallest share of the store, one command (and
// one connection) at a time, and never competes with the requests and the
// consumers for more. A single remover keeps up with hot documents because
// the removals queued for one document are merged into one statement (see
// remove): a document's outbox does not grow while its removal waits.
const removers = 1

// maxQueuedRemovals bounds the documents whose removals wait (merged) for a
// free remover. Up to it, a burst of writes is published at once and its
// cleanup deferred (a few hundred bytes per document); beyond it, publishing
// waits for the removals, so memory stays bounded and a sustained load
// runs at the pace the store allows for both.
const maxQueuedRemovals = 1024

// removeRetryDelay is how long a removal that failed waits before it is
// tried again.
const removeRetryDelay = time.Second

// remove removes published entries, one command at a time (removers):
// the removals queued meanwhile are merged per document (one statement
// takes away all of a document's published entries, however many publishes
// queued them) and go out removeBatch documents to an unordered bulk write,
// when that many are queued or the oldest has waited removeAfter. A publish
// never waits for a removal unless maxQueuedRemovals documents' removals
// are queued. Until stop is closed; then it removes what is queued.
func (r *Relay) remove(ctx context.Context, stop <-chan struct{}) {
	add := func(p pull) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if q, ok := r.removeByID[p.id]; ok {
			q.entries = append(q.entries, p.entries...)
			q.ids = append(q.ids, p.ids...)
			return
		}
		q := &p
		q.at = time.Now()
		r.removeByID[p.id] = q
		r.removeQueue = append(r.removeQueue, q)
	}
	queued := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.removeQueue)
	}
	// pulls is r.pulls, or nil (never ready) while maxQueuedRemovals
	// documents wait: the workers then block handing over their removals,
	// and publishing slows to the pace of the removals.
	pulls := func() chan pull {
		if queued() >= maxQueuedRemovals {
			return nil
		}
		return r.pulls
	}
	drain := func() {
		for {
			select {
			case p := <-pulls():
				add(p)
			default:
				return
			}
		}
	}
	// untilDue: how long until the next command is due (0: now); the
	// queue is not empty.
	untilDue := func() time.Duration {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.removeQueue) >= removeBatch {
			return 0
		}
		return time.Until(r.removeQueue[0].at.Add(removeAfter))
	}
	// send removes the first removeBatch queued documents' entries.
	send := func() {
		r.mu.Lock()
		n := min(len(r.removeQueue), removeBatch)
		batch := make([]pull, 0, n)
		for _, q := range r.removeQueue[:n] {
			delete(r.removeByID, q.id)
			if len(q.ids) > 0 { // a writer may have dropped them all (Dropped)
				batch = append(batch, *q)
				r.removing[q.id]++
			}
		}
		r.removeQueue = slices.Delete(r.removeQueue, 0, n)
		if len(r.removeQueue) == 0 && cap(r.removeQueue) > shrinkAbove {
			// A burst's queue is gone: let its array and map go too (Go
			// maps keep the memory of their largest size).
			r.removeQueue, r.removeByID = nil, map[any]*pull{}
		}
		r.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		r.removeBatch(ctx, batch)
		r.mu.Lock()
		for _, p := range batch {
			if r.removing[p.id]--; r.removing[p.id] <= 0 {
				delete(r.removing, p.id)
			}
		}
		r.mu.Unlock()
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		drain()
		if queued() == 0 {
			select {
			case p := <-r.pulls:
				add(p)
				continue
			case <-stop:
			}
		} else if d := untilDue(); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
				send()
				continue
			case p := <-pulls():
				add(p)
			case <-stop:
			}
			timer.Stop()
		} else {
			send()
			continue
		}
		select {
		case <-stop:
			// The workers are done: remove everything queued.
			for drain(); queued() > 0; drain() {
				send()
			}
			return
		default:
		}
	}
}

// queueAgain queues the removal p, which failed, to be tried at due, merged
// into the document's queued removal if there is one; r.mu held.
func (r *Relay) queueAgain(p pull, due time.Time) {
	if q := r.removeByID[p.id]; q != nil {
		q.entries = append(q.entries, p.entries...)
		q.ids = append(q.ids, p.ids...)
		return
	}
	q := &p
	q.at = due.Add(-removeAfter) // due at q.at + removeAfter, see untilDue
	r.removeByID[p.id] = q
	r.removeQueue = append(r.removeQueue, q)
}

// Trim is what a writer may remove of a document's outbox in its next
// write (Relay.Published).
type Trim struct {
	Keep    []Entry              // the entries not published, in order: the outbox to write, before the new ones
	Drop    []primitive.ObjectID // the published ones the write removes (hand them to Dropped after it)
	Pending int64                // the pending count to make the write conditional on
}

// Published is for a writer about to write a document whose pending
// outbox it knows exactly as of its last write (the outbox returned by
// Records.Update, or inserted): what this relay has published of it may go
// in that write. A write conditional on Trim.Pending (and on the
// document's own revision) that sets the outbox to Keep plus its new
// entries removes the published entries in the same statement,
// saving the relay a removal; the count is what the document holds if
// nothing but this relay's confirmed removals changed it since, so if
// anything else did (another relay, a removal of this one still running),
// the write does not match and the writer falls back to a push. ok is false
// when a removal of the document is running (the count is unknown until it
// ends) or when there is nothing to remove.
func (r *Relay) Published(docID any, outbox []Entry) (t Trim, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.removing[docID] > 0 {
		return Trim{}, false
	}
	t.Pending = int64(len(outbox))
	for _, e := range outbox {
		removed, sent := r.sent[e.ID]
		switch {
		case !sent:
			t.Keep = append(t.Keep, e)
		case removed:
			t.Pending-- // gone from the document already
			t.Drop = append(t.Drop, e.ID)
		default:
			t.Drop = append(t.Drop, e.ID)
		}
	}
	return t, len(t.Drop) > 0
}

// Dropped tells the relay that a writer's conditional write (see
// Published) removed the published entries ids of docID: their queued
// removal is dropped, and they count as removed.
func (r *Relay) Dropped(docID any, ids []primitive.ObjectID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if q := r.removeByID[docID]; q != nil {
		drop := make(map[primitive.ObjectID]bool, len(ids))
		for _, id := range ids {
			drop[id] = true
		}
		entries, qids := q.entries[:0], q.ids[:0]
		for i, id := range q.ids {
			if !drop[id] {
				entries, qids = append(entries, q.entries[i]), append(qids, id)
			}
		}
		q.entries, q.ids = entries, qids
		if len(q.ids) == 0 {
			// Nothing left to remove: out of the queue, so that the
			// document's next removal waits its own removeAfter.
			delete(r.removeByID, docID)
			if i := slices.Index(r.removeQueue, q); i >= 0 {
				r.removeQueue = slices.Delete(r.removeQueue, i, i+1)
			}
		}
	}
	r.retire(ids, time.Now())
}

// removal is the guarded write that removes entries (raw, as stored) of
// document id and takes them off its pending count.
func removal(id any, entries []bson.Raw) mongo.WriteModel {
	return mongo.NewUpdateOneModel().
		SetFilter(bson.M{"_id": id, Field: bson.M{"$all": entries}}).
		SetUpdate(bson.M{"$pullAll": bson.M{Field: entries}, "$inc": bson.M{PendingField: -int64(len(entries))}})
}

func (r *Relay) removeBatch(ctx context.Context, batch []pull) {
	models := make([]mongo.WriteModel, len(batch))
	several := false
	for i, p := range batch {
		models[i] = removal(p.id, p.entries)
		several = several || len(p.entries) > 1
	}
	// Not cancelled with ctx: entries already published should not be
	// published again only because the relay is shutting down. A failure
	// only means they are published again later (the poll finds them).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.PublishTimeout)
	var res *mongo.BulkWriteResult
	var err error
	if r.removeFault != nil {
		err = r.removeFault()
	}
	if err == nil {
		res, err = r.coll.BulkWrite(cctx, models, options.BulkWrite().SetOrdered(false))
	}
	if err == nil && several && res.MatchedCount < int64(len(batch)) {
		// A removal of several entries did not match when one of them was
		// gone already (another relay published and removed it): remove
		// them one by one, each guarded. Those gone match nothing.
		var single []mongo.WriteModel
		for _, p := range batch {
			if len(p.entries) > 1 {
				for _, e := range p.entries {
					single = append(single, removal(p.id, []bson.Raw{e}))
				}
			}
		}
		_, err = r.coll.BulkWrite(cctx, single, options.BulkWrite().SetOrdered(false))
	}
	cancel()
	stopping := ctx.Err() != nil
	if err != nil && !stopping {
		r.log.Warn("outbox cleanup failed; trying again", "documents", len(batch), "err", err)
	}
	now := time.Now()
	r.mu.Lock()
	for _, p := range batch {
		if err != nil && !stopping {
			// The entries stay sent: a routine failure (a timeout, the
			// store busy or briefly away) must not publish them again.
			// Forgotten, the next poll did, and every consumer got a
			// duplicate per entry of the batch.
			r.queueAgain(p, now.Add(removeRetryDelay))
			continue
		}
		if err != nil {
			// Shutting down: the entries stay in the document and the
			// next relay publishes them again (at least once).
			r.forget(p.ids)
			continue
		}
		// A read or a snapshot taken before this removal may still hold
		// these entries: keep them as sent for a while (rememberRemoved).
		r.retire(p.ids, now)
	}
	for r.retiredAt < len(r.retired) && now.Sub(r.retired[r.retiredAt].at) > r.remember {
		r.forget(r.retired[r.retiredAt].ids)
		r.retired[r.retiredAt] = retired{}
		r.retiredAt++
	}
	// Compact once the forgotten head is the larger part (amortised O(1),
	// instead of copying the whole list at every removal).
	if r.retiredAt > len(r.retired)/2 {
		n := copy(r.retired, r.retired[r.retiredAt:])
		clear(r.retired[n:])
		r.retired = r.retired[:n]
		r.retiredAt = 0
		if cap(r.retired) > shrinkAbove && n < cap(r.retired)/8 {
			r.retired = slices.Clone(r.retired) // let a burst's large array go
		}
	}
	r.shrinkSent()
	r.mu.Unlock()
}

// Go maps keep the memory of their largest size. A burst (a few thousand
// writes a second) left the relay's bookkeeping that large for good, about
// as much as the rest of a service's heap; so a map that has fallen to an
// eighth of its high mark is copied into a new one. r.mu held.
const shrinkAbove = 256

func (r *Relay) shrinkState() {
	if r.stateHigh <= shrinkAbove || len(r.state) > r.stateHigh/8 {
		return
	}
	state := make(map[any]int, len(r.state))
	for k, v := range r.state {
		state[k] = v
	}
	snaps := make(map[any][][]Entry, len(r.snaps))
	for k, v := range r.snaps {
		snaps[k] = v
	}
	r.state, r.snaps, r.stateHigh = state, snaps, len(state)
	if len(r.queue) == 0 {
		r.queue = nil
	}
}

func (r *Relay) shrinkSent() {
	if r.sentHigh <= shrinkAbove || len(r.sent) > r.sentHigh/8 {
		return
	}
	sent := make(map[primitive.ObjectID]bool, len(r.sent))
	for k, v := range r.sent {
		sent[k] = v
	}
	r.sent, r.sentHigh = sent, len(sent)
}

// retire records the removal of ids as confirmed; r.mu held.
func (r *Relay) retire(ids []primitive.ObjectID, now time.Time) {
	for _, eid := range ids {
		if _, ok := r.sent[eid]; ok {
			r.sent[eid] = true
		}
	}
	r.retired = append(r.retired, retired{ids: ids, at: now})
}

// forget drops ids from the sent entries; r.mu held.
func (r *Relay) forget(ids []primitive.ObjectID) {
	for _, eid := range ids {
		delete(r.sent, eid)
	}
}

// Backlog counts the entries written but not yet published.
func (r *Relay) Backlog(ctx context.Context) (int64, error) {
	return Backlog(ctx, r.coll)
}

// Backlog counts the pending outbox entries of coll.
func Backlog(ctx context.Context, coll *mongo.Collection) (int64, error) {
	cur, err := coll.Find(ctx, pendingFilter(), options.Find().SetProjection(bson.M{Field: 1}))
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
		n += int64(len(doc.Outbox))
	}
	if err := cur.Err(); err != nil {
		return 0, err
	}
	backlogGauge.WithLabelValues(coll.Name()).Set(float64(n))
	return n, nil
}
