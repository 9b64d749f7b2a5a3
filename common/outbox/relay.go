package outbox

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/config"
	"github.com/ticketing-go/ticketing/common/metrics"
)

var backlogGauge = metrics.NewGaugeVec(metrics.GaugeOpts{
	Name: "outbox_backlog",
	Help: "Outbox entries this process numbered that are not yet published (or known not written).",
}, []string{"collection"})

// Options tune a Relay; zero values take the defaults.
type Options struct {
	// Workers: documents published at once (each document by at most one
	// worker at a time, so its entries go out in order). Default 4.
	Workers int
	// PublishTimeout bounds one publish. Default 5s.
	PublishTimeout time.Duration
	// Heartbeat: how often the relay stores its checkpoint when it moved
	// (at least every idleBeats heartbeats) and reads the other relays'.
	// Default 1s.
	Heartbeat time.Duration
	// DeadAfter: a relay whose record was not written for this long is
	// taken for dead; another relay of the collection adopts it. It is
	// also how long after an error a write is taken for never applied.
	// Default 30s.
	DeadAfter time.Duration
	// MaxBackoff caps the delay between scans while publishing fails.
	// Default 5s.
	MaxBackoff time.Duration
}

// DefaultDeadAfter is Options.DeadAfter's default.
const DefaultDeadAfter = 30 * time.Second

// OptionsFromEnv reads OUTBOX_DEAD_AFTER (Options.DeadAfter); the rest
// keeps its defaults.
func OptionsFromEnv(env *config.Env) Options {
	return Options{DeadAfter: env.Duration("OUTBOX_DEAD_AFTER", DefaultDeadAfter)}
}

func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = time.Second
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = DefaultDeadAfter
	}
	if o.DeadAfter < 5*o.Heartbeat*idleBeats/2 {
		o.DeadAfter = 5 * o.Heartbeat * idleBeats / 2
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	return o
}

// idleBeats: an idle relay writes its record every idleBeats heartbeats
// (its checkpoint has not moved, but it shows that it is alive).
const idleBeats = 5

// states of an entry this relay numbered and has not settled (Relay.open)
const (
	inFlight = iota + 1 // numbered, its write not returned
	written             // written, handed to the workers
	orphan              // written, its publish failed: for a scan
	unknown             // its write failed: applied or not, a scan tells
)

// states of a document id in the workers' queue
const (
	queued = iota + 1
	running
	dirty // running, and notified again meanwhile: process once more
)

// Relay publishes the outbox entries of one collection (see the package doc).
type Relay struct {
	coll *mongo.Collection
	reg  *mongo.Collection // RegistryCollection, in coll's database
	pub  Publisher
	log  *slog.Logger
	opts Options

	regMu sync.Mutex // one registration or check of it at a time

	mu         sync.Mutex
	src        primitive.ObjectID  // this relay's record (zero until recorded)
	fresh      time.Time           // numbering needs no refresh of the record until then (see ensureRecorded)
	closed     bool                // Run has ended: nothing more is numbered
	takenOver  error               // another relay adopted this one: Run ends with it
	next       int64               // the last number given
	done       int64               // the checkpoint: every number up to it is settled
	stored     int64               // the checkpoint as the record holds it
	beats      int                 // heartbeats since the record was last written
	open       map[int64]int       // numbers not settled, and their state
	scanOwn    bool                // orphans wait for a scan
	unknown    map[int64]time.Time // numbers of unknown writes, and when a scan not finding them settles them
	others     map[primitive.ObjectID]int64
	gone       map[primitive.ObjectID]bool // relays whose record was deleted: all published
	sentOther  map[primitive.ObjectID]sentOther
	failing    bool // the last publish failed: the workers hand everything to the scan
	failures   int  // consecutive failed scans; drives the backoff
	nextScan   time.Time
	legacyDone bool          // the scan for unnumbered entries succeeded
	dead       []relayRecord // records not written for DeadAfter, as last read: to adopt

	queue []any
	state map[any]int
	snaps map[any][][]Entry
	grown bool // state held many documents since it was made
	wake  chan struct{}
	kick  chan struct{}
}

// sentOther is an entry of another relay (or an unnumbered one) that this
// relay published, remembered until the other relay's checkpoint passes it.
type sentOther struct {
	src primitive.ObjectID
	seq int64
	at  time.Time
}

// NewRelay returns a relay for coll; call Run to start it. Document ids
// must be comparable (ObjectID, string, number).
func NewRelay(coll *mongo.Collection, pub Publisher, log *slog.Logger, opts Options) *Relay {
	if log == nil {
		log = slog.Default()
	}
	return &Relay{
		coll:      coll,
		reg:       coll.Database().Collection(RegistryCollection),
		pub:       pub,
		log:       log.With("component", "outbox", "collection", coll.Name()),
		opts:      opts.withDefaults(),
		open:      map[int64]int{},
		unknown:   map[int64]time.Time{},
		others:    map[primitive.ObjectID]int64{},
		gone:      map[primitive.ObjectID]bool{},
		sentOther: map[primitive.ObjectID]sentOther{},
		state:     map[any]int{},
		snaps:     map[any][][]Entry{},
		wake:      make(chan struct{}, 1),
		kick:      make(chan struct{}, 1),
	}
}

var errStopped = apperr.New(apperr.Unavailable, "Events cannot be recorded now, try again")

// Stamp numbers entries and tracks them until Settle (Notifier). The first
// call records the relay in the registry (unless Run did); a record last
// written DeadAfter/2 ago is written again first (see ensureRecorded).
func (r *Relay) Stamp(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := r.ensureRecorded(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.takenOver != nil {
		return errStopped
	}
	for i := range entries {
		r.next++
		entries[i].Src, entries[i].Seq = r.src, r.next
		r.open[r.next] = inFlight
	}
	return nil
}

// Settle hears how the write of stamped entries went (Notifier).
func (r *Relay) Settle(docID any, entries []Entry, o Outcome, stored []Entry) {
	r.mu.Lock()
	for _, e := range entries {
		if e.Src != r.src || r.open[e.Seq] != inFlight {
			continue
		}
		switch o {
		case Written:
			r.open[e.Seq] = written
		case NotWritten:
			delete(r.open, e.Seq)
		default:
			r.open[e.Seq] = unknown
			r.unknown[e.Seq] = time.Now().Add(r.opts.DeadAfter)
		}
	}
	r.advance()
	r.mu.Unlock()
	if o == Written && len(stored) > 0 {
		r.NotifyPending(docID, stored...)
	}
}

// advance moves the checkpoint over settled numbers; r.mu held.
func (r *Relay) advance() {
	for r.done < r.next {
		if _, open := r.open[r.done+1]; open {
			return
		}
		r.done++
	}
}

// Published reports whether e is published (Notifier). An entry of a relay
// this one has not heard of makes it read the registry first.
func (r *Relay) Published(ctx context.Context, e Entry) bool {
	r.mu.Lock()
	pub, known := r.publishedLocked(e)
	r.mu.Unlock()
	if known {
		return pub
	}
	if err := r.readRegistry(ctx, e.Src); err != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pub, known = r.publishedLocked(e)
	return pub && known
}

// publishedLocked: whether e is published, if this relay knows; r.mu held.
func (r *Relay) publishedLocked(e Entry) (pub, known bool) {
	if _, ok := r.sentOther[e.ID]; ok {
		return true, true
	}
	switch {
	case e.Src.IsZero():
		return false, true // unnumbered: a scan publishes and removes it
	case e.Src == r.src:
		_, open := r.open[e.Seq]
		return !open, true
	case r.gone[e.Src]:
		return true, true
	}
	done, ok := r.others[e.Src]
	if !ok {
		return false, false
	}
	return e.Seq <= done, true
}

// NotifyPending hands the relay a document's whole outbox as stored right
// after a write, in array order, to publish now (Settle does it for
// Records). Entries published already are skipped, so a snapshot older
// than another one only costs the check.
func (r *Relay) NotifyPending(docID any, pending ...Entry) {
	if len(pending) == 0 {
		return
	}
	r.mu.Lock()
	r.snaps[docID] = append(r.snaps[docID], pending)
	switch r.state[docID] {
	case 0:
		r.state[docID] = queued
		r.queue = append(r.queue, docID)
		r.grown = r.grown || len(r.state) > 256
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

// Run publishes until ctx is done: the workers publish what writes hand
// over, and every heartbeat the relay stores its checkpoint, reads the
// other relays' and scans when something is left to a scan. Once ctx is
// done it stops publishing (the lifecycle waits for Backlog to reach 0
// first), and deletes its record if all it numbered is settled, or else
// stores its checkpoint for an adopter. It returns an error when another
// relay adopted this one (its heartbeats had stopped reaching the store
// for DeadAfter): the process must not go on numbering under that record.
func (r *Relay) Run(ctx context.Context) error {
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	for range r.opts.Workers {
		wg.Add(1)
		go func() { defer wg.Done(); r.work(wctx.Done()) }()
	}
	ticker := time.NewTicker(r.opts.Heartbeat)
	defer ticker.Stop()
	r.tick(ctx)
	for ctx.Err() == nil && r.takenOverErr() == nil {
		select {
		case <-ctx.Done():
		case <-ticker.C:
			r.tick(ctx)
		case <-r.kick:
			r.scans(ctx)
		}
	}
	stopWorkers()
	wg.Wait()
	return r.close()
}

func (r *Relay) takenOverErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.takenOver
}

// tick is one heartbeat: the record, the registry, the scans.
func (r *Relay) tick(ctx context.Context) {
	r.mu.Lock()
	backlogGauge.WithLabelValues(r.coll.Name()).Set(float64(len(r.open)))
	recorded := !r.src.IsZero()
	r.mu.Unlock()
	if !recorded {
		// Recorded at start, not at the first write: a relay adopts others
		// only once it has a record of its own.
		if err := r.ensureRecorded(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("outbox: recording the relay failed", "err", err)
		}
	}
	if err := r.heartbeat(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("outbox: storing the checkpoint failed", "err", err)
	}
	if err := r.readRegistry(ctx, primitive.NilObjectID); err != nil && ctx.Err() == nil {
		r.log.Warn("outbox: reading the relays' checkpoints failed", "err", err)
	}
	r.scans(ctx)
}

// work publishes queued documents until stop is closed (Run's context is
// done). What is queued then stays in its documents (the lifecycle waits
// for Backlog to reach 0 before it stops the relay; a relay stopped
// earlier leaves its record to an adopter).
func (r *Relay) work(stop <-chan struct{}) {
	for {
		id, ok := r.nextDoc(stop)
		if !ok {
			return
		}
		r.process(id)
	}
}

func (r *Relay) nextDoc(stop <-chan struct{}) (any, bool) {
	for {
		select {
		case <-stop:
			return nil, false
		default:
		}
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
		if len(r.state) == 0 && r.grown {
			// A burst is over: let its maps go (Go maps keep the memory
			// of their largest size).
			r.state, r.snaps, r.queue, r.grown = map[any]int{}, map[any][][]Entry{}, nil, false
		}
		r.mu.Unlock()
		select {
		case <-stop:
			return nil, false
		case <-r.wake:
		}
	}
}

// process publishes the snapshots queued for document id, in order. After
// a failed publish, what is left of them is for the scan (orphans).
func (r *Relay) process(id any) {
	for {
		r.mu.Lock()
		snaps := r.snaps[id]
		delete(r.snaps, id)
		failing := r.failing
		if len(snaps) == 0 {
			if r.state[id] == dirty {
				r.state[id] = running
				r.mu.Unlock()
				continue
			}
			delete(r.state, id)
			r.mu.Unlock()
			return
		}
		if failing {
			r.orphanLocked(snaps)
			r.mu.Unlock()
			continue
		}
		r.mu.Unlock()
		for i, snap := range snaps {
			if err := r.publishAll(context.Background(), id, snap); err != nil {
				r.mu.Lock()
				r.failing = true
				r.orphanLocked(snaps[i:])
				r.mu.Unlock()
				signal(r.kick)
				break
			}
		}
	}
}

// orphanLocked leaves this relay's entries in snaps to the scan; r.mu held.
func (r *Relay) orphanLocked(snaps [][]Entry) {
	for _, snap := range snaps {
		for _, e := range snap {
			if e.Src == r.src && r.open[e.Seq] == written {
				r.open[e.Seq] = orphan
				r.scanOwn = true
			}
		}
	}
}

// publishAll publishes the entries of one document's outbox that are not
// published, in order, stopping at the first failure.
func (r *Relay) publishAll(ctx context.Context, id any, outbox []Entry) error {
	for _, e := range outbox {
		if r.Published(ctx, e) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, r.opts.PublishTimeout)
		err := r.pub.PublishMsg(pctx, e.Subject, e.ID.Hex(), e.Data)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("outbox publish failed; a scan publishes it later", "id", id, "subject", e.Subject, "err", err)
			}
			return err
		}
		r.mu.Lock()
		if e.Src == r.src && !e.Src.IsZero() {
			delete(r.open, e.Seq)
			r.advance()
		} else {
			r.sentOther[e.ID] = sentOther{src: e.Src, seq: e.Seq, at: time.Now()}
		}
		r.failing = false
		r.mu.Unlock()
	}
	return nil
}

// Backlog counts the entries this relay numbered that are not settled:
// zero once everything written through it is published.
func (r *Relay) Backlog(context.Context) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int64(len(r.open)), nil
}

// errTakenOver: this relay's record was adopted by another relay.
var errTakenOver = errors.New("outbox: this relay's record was adopted by another relay (its heartbeats did not reach the store); stopping")

// unnumberedFilter matches documents whose entries have no src. (A document
// that also has numbered entries was written by Records since, and its
// relay published the unnumbered ones before those.)
func unnumberedFilter() bson.M {
	return bson.M{Field + ".0": bson.M{"$exists": true}, Field + ".src": bson.M{"$exists": false}}
}

// relayFilter matches documents with entries of relay src numbered above
// done, and some more: without $elemMatch (which the FerretDB stand-in does
// not support on arrays of documents) the two conditions may hold for two
// different entries; the scan skips what is published.
func relayFilter(src primitive.ObjectID, done int64) bson.M {
	return bson.M{Field + ".src": src, Field + ".seq": bson.M{"$gt": done}}
}
