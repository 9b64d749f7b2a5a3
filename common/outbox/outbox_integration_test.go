package outbox_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/event"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func testLog() *slog.Logger {
	if os.Getenv("TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func MustConnect(tb testing.TB, n testenv.NATS) *events.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := events.Connect(ctx, events.Config{Bus: n.Bus, URL: n.URL, ClusterID: n.ClusterID, ClientID: events.NewClientID("outbox-test"),
		SubjectPrefix: n.SubjectPrefix, PingInterval: time.Second, PingMaxOut: 2, PubAckWait: 2 * time.Second, CloseGrace: time.Second}, testLog())
	if err != nil {
		tb.Fatalf("Connect: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// MustRunRelay runs a relay until the test ends (or stop is called).
func MustRunRelay(tb testing.TB, coll *mongo.Collection, pub outbox.Publisher, opts outbox.Options) (r *outbox.Relay, stop func()) {
	tb.Helper()
	r = outbox.NewRelay(coll, pub, testLog(), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			tb.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	tb.Cleanup(stop)
	return r, stop
}

// collector records the ticket versions received per ticket id, in the
// order of the stream (handlers run concurrently, so arrival order at the
// handler is not publish order; the server's sequence is).
type collector struct {
	mu   sync.Mutex
	got  map[string]map[uint64]int64 // id -> sequence -> version
	when map[string]time.Time        // "id/version" -> first arrival
}

func collect(tb testing.TB, c *events.Conn) *collector {
	tb.Helper()
	col := &collector{got: map[string]map[uint64]int64{}, when: map[string]time.Time{}}
	err := c.Subscribe(events.Subscription{Subject: events.SubjectTicketUpdated, QueueGroup: "collector", AckWait: 2 * time.Second},
		events.Decode(func(_ context.Context, e events.TicketUpdated, m *events.Msg) error {
			col.mu.Lock()
			defer col.mu.Unlock()
			if col.got[e.ID] == nil {
				col.got[e.ID] = map[uint64]int64{}
			}
			col.got[e.ID][m.Sequence] = e.Version
			k := e.ID + "/" + itoa(e.Version)
			if _, ok := col.when[k]; !ok {
				col.when[k] = time.Now()
			}
			return nil
		}))
	if err != nil {
		tb.Fatal(err)
	}
	return col
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// versions returns the versions published for id in stream order.
func (c *collector) versions(id string) []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	seqs := make([]uint64, 0, len(c.got[id]))
	for s := range c.got[id] {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	out := make([]int64, len(seqs))
	for i, s := range seqs {
		out[i] = c.got[id][s]
	}
	return out
}

// firstOccurrences drops repeats (a relay may publish an entry twice).
func firstOccurrences(vs []int64) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for _, v := range vs {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func seq(from, to int64) []int64 {
	var out []int64
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

// commands counts the commands sent on each collection through one client.
type commands struct {
	mu sync.Mutex
	n  map[string]map[string]int // collection -> command -> count
}

func (c *commands) count(coll, cmd string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[coll][cmd]
}

func (c *commands) total(coll string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := 0
	for _, k := range c.n[coll] {
		t += k
	}
	return t
}

// monitoredDatabase returns this test's database through a client of its
// own that counts the commands on each collection.
func monitoredDatabase(tb testing.TB) (*mongo.Database, *commands) {
	tb.Helper()
	c := &commands{n: map[string]map[string]int{}}
	mon := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		coll, ok := e.Command.Lookup(e.CommandName).StringValueOK()
		if !ok {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.n[coll] == nil {
			c.n[coll] = map[string]int{}
		}
		c.n[coll][e.CommandName]++
	}}
	m := testenv.Mongo(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := mongo.Connect(ctx, options.Client().ApplyURI(m.URI).SetMonitor(mon))
	if err != nil {
		tb.Fatalf("connect %s: %v", m.URI, err)
	}
	tb.Cleanup(func() { _ = cl.Disconnect(context.Background()) })
	return cl.Database(m.Database), c
}

// ticket is the record the tests write: a version and its events.
type ticket struct {
	ID      primitive.ObjectID `bson:"_id"`
	Version int64              `bson:"version"`
}

func newRecords(coll *mongo.Collection, relay *outbox.Relay) *outbox.Records[ticket] {
	if relay == nil {
		return outbox.NewRecords[ticket](coll, nil, "busy")
	}
	return outbox.NewRecords[ticket](coll, relay, "busy")
}

func event0(id primitive.ObjectID, v int64) events.Event {
	return events.TicketUpdated{ID: id.Hex(), Version: v, Title: "t", Price: 1}
}

// insert creates a ticket at version 0 with its event, as a service does.
func insert(tb testing.TB, recs *outbox.Records[ticket]) primitive.ObjectID {
	tb.Helper()
	id := primitive.NewObjectID()
	if err := recs.Insert(context.Background(), ticket{ID: id}, event0(id, 0)); err != nil {
		tb.Fatalf("insert: %v", err)
	}
	return id
}

// update sets the version to v with its event.
func update(tb testing.TB, recs *outbox.Records[ticket], id primitive.ObjectID, v int64) {
	tb.Helper()
	if _, err := recs.Update(context.Background(), id, func(t *ticket) ([]events.Event, error) {
		t.Version = v
		return []events.Event{event0(id, v)}, nil
	}); err != nil {
		tb.Fatalf("update to v%d: %v", v, err)
	}
}

// stored reads the entries stored in a document.
func stored(tb testing.TB, coll *mongo.Collection, id any) []outbox.Entry {
	tb.Helper()
	var d struct {
		Outbox []outbox.Entry `bson:"outbox"`
	}
	if err := coll.FindOne(context.Background(), bson.M{"_id": id}).Decode(&d); err != nil {
		tb.Fatalf("read %v: %v", id, err)
	}
	return d.Outbox
}

func backlog(tb testing.TB, coll *mongo.Collection) int64 {
	tb.Helper()
	n, err := outbox.Backlog(context.Background(), coll)
	if err != nil {
		tb.Fatalf("Backlog: %v", err)
	}
	return n
}

// relays counts the relays' records of coll.
func relays(tb testing.TB, coll *mongo.Collection) int64 {
	tb.Helper()
	n, err := coll.Database().Collection(outbox.RegistryCollection).CountDocuments(context.Background(), bson.M{"coll": coll.Name()})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// fast: heartbeats and adoption quick enough for a test.
var fast = outbox.Options{Heartbeat: 100 * time.Millisecond, DeadAfter: 3 * time.Second, MaxBackoff: 200 * time.Millisecond, PublishTimeout: time.Second}

func TestRelayPublishesEachDocumentInOrderOnce(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	col := collect(t, conn)
	pub := &countingPublisher{pub: conn}
	relay, stop := MustRunRelay(t, coll, pub, fast)
	recs := newRecords(coll, relay)

	const docs, updates = 4, 25
	ids := make([]primitive.ObjectID, docs)
	for i := range ids {
		ids[i] = insert(t, recs)
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := int64(1); v <= updates; v++ {
				update(t, recs, id, v)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		testenv.Eventually(t, 20*time.Second, "every version of "+id.Hex(), func() bool { return len(col.versions(id.Hex())) >= updates+1 })
		if got := col.versions(id.Hex()); !slices.Equal(got, seq(0, updates)) {
			t.Fatalf("ticket %s: published %v, want 0..%d in order", id.Hex(), got, updates)
		}
	}
	testenv.Eventually(t, 10*time.Second, "the checkpoint stored", func() bool { return backlog(t, coll) == 0 })
	// Everything published: the next write of a document drops its entries
	// and stores its own alone.
	for _, id := range ids {
		update(t, recs, id, updates+1)
		if s := stored(t, coll, id); len(s) != 1 || s[0].Seq == 0 {
			t.Fatalf("ticket %s stores %+v after a write on a published outbox, want the write's entry alone, numbered", id.Hex(), s)
		}
	}
	testenv.Eventually(t, 10*time.Second, "the last writes' checkpoint stored", func() bool { return backlog(t, coll) == 0 })
	// Several heartbeats later nothing more was published: no event without
	// a fault is published twice.
	time.Sleep(10 * fast.Heartbeat) // the bound of "nothing more": 10 heartbeats, each of which may scan
	if p, want := pub.n.Load(), int32(docs*(updates+2)); p != want {
		t.Fatalf("%d publishes for %d entries, want one each", p, want)
	}
	// A relay that stops with everything published deletes its record:
	// its entries left in documents count as published.
	stop()
	if r := relays(t, coll); r != 0 {
		t.Fatalf("%d relay records after a clean stop, want 0", r)
	}
	if b := backlog(t, coll); b != 0 {
		t.Fatalf("backlog %d after a clean stop", b)
	}
}

func TestWritesSucceedWhileNATSIsDownAndArriveInOrderAfter(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	srv := testenv.DedicatedEventBus(t)
	conn := MustConnect(t, srv.NATS)
	relay, _ := MustRunRelay(t, coll, conn, fast)
	recs := newRecords(coll, relay)

	srv.Stop(t)
	testenv.Eventually(t, 30*time.Second, "the relay's connection to notice", func() bool { return conn.Ready(context.Background()) != nil })
	id := insert(t, recs)
	const updates = 10
	for v := int64(1); v <= updates; v++ {
		update(t, recs, id, v) // the write succeeds although NATS is down
	}
	if n := backlog(t, coll); n != updates+1 {
		t.Fatalf("backlog while NATS is down = %d, want %d", n, updates+1)
	}
	if s := stored(t, coll, id); len(s) != updates+1 {
		t.Fatalf("the document stores %d entries while NATS is down, want all %d", len(s), updates+1)
	}
	srv.Start(t)
	col := collect(t, MustConnect(t, srv.NATS))
	testenv.Eventually(t, 60*time.Second, "every event after NATS came back", func() bool {
		return len(firstOccurrences(col.versions(id.Hex()))) == updates+1
	})
	if got := col.versions(id.Hex()); !slices.Equal(firstOccurrences(got), seq(0, updates)) {
		t.Fatalf("published %v, want 0..%d in order", got, updates)
	}
	testenv.Eventually(t, 10*time.Second, "the checkpoint stored", func() bool { return backlog(t, coll) == 0 })
}

// hangingPublisher publishes the first n entries, then hangs like a process
// that froze mid-way (until its context ends, as when it is killed).
type hangingPublisher struct {
	pub  outbox.Publisher
	left atomic.Int64
}

func (h *hangingPublisher) PublishMsg(ctx context.Context, subject, msgID string, data []byte) error {
	if h.left.Add(-1) < 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	return h.pub.PublishMsg(ctx, subject, msgID, data)
}

// A relay that stops with entries unpublished (here its broker hangs, as
// in a process that froze; a crash leaves the same: a record whose
// heartbeats stopped) is adopted by another relay of the collection once
// its record is DeadAfter old: the adopter publishes the rest in order and
// deletes the record.
func TestADeadRelaysEntriesArePublishedByAnother(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	col := collect(t, conn)

	hang := &hangingPublisher{pub: conn}
	hang.left.Store(7)
	first, stopFirst := MustRunRelay(t, coll, hang, fast)
	recs := newRecords(coll, first)
	id := insert(t, recs)
	const updates = 20
	for v := int64(1); v <= updates; v++ {
		update(t, recs, id, v)
	}
	testenv.Eventually(t, 20*time.Second, "the first relay to publish 7 entries", func() bool { return len(col.versions(id.Hex())) >= 7 })
	stopFirst()
	if b := backlog(t, coll); b < updates+1-7 {
		t.Fatalf("backlog after the first relay = %d, want at least %d", b, updates+1-7)
	}
	if r := relays(t, coll); r != 1 {
		t.Fatalf("%d relay records after the first stopped with entries left, want its own", r)
	}
	MustRunRelay(t, coll, conn, fast)
	testenv.Eventually(t, 30*time.Second, "every event", func() bool {
		return len(firstOccurrences(col.versions(id.Hex()))) == updates+1
	})
	if got := col.versions(id.Hex()); !slices.Equal(firstOccurrences(got), seq(0, updates)) {
		t.Fatalf("published %v, want 0..%d in order", got, updates)
	}
	testenv.Eventually(t, 10*time.Second, "the first relay's record adopted and deleted", func() bool { return relays(t, coll) == 1 })
	testenv.Eventually(t, 10*time.Second, "nothing left", func() bool { return backlog(t, coll) == 0 })
}

// A relay whose heartbeats stop reaching the store is adopted while it
// still runs; its next heartbeat finds its record gone, and it stops: it
// numbers nothing more under a record whose entries now count as published.
func TestAnAdoptedRelayStops(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	slowBeat := fast
	slowBeat.Heartbeat = time.Hour // only its first heartbeat, at start
	a := outbox.NewRelay(coll, conn, testLog(), slowBeat)
	recs := newRecords(coll, a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	id := insert(t, recs)
	MustRunRelay(t, coll, conn, fast) // adopts a once its record is DeadAfter old
	reg := coll.Database().Collection(outbox.RegistryCollection)
	testenv.Eventually(t, 20*time.Second, "a adopted", func() bool {
		n, err := reg.CountDocuments(context.Background(), bson.M{"_id": outbox.Src(a)})
		return err == nil && n == 0
	})
	// a learns it at its next heartbeat; here the check a write makes after
	// a failed heartbeat is not needed: Run is told by a kick.
	outbox.Heartbeat(a)
	select {
	case err := <-ran:
		if err == nil {
			t.Fatal("Run of an adopted relay returned nil, want an error")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the adopted relay still runs")
	}
	if _, err := recs.Update(context.Background(), id, func(t *ticket) ([]events.Event, error) {
		t.Version = 1
		return []events.Event{event0(id, 1)}, nil
	}); err == nil {
		t.Fatal("an adopted relay numbered an entry")
	}
}

// A write whose outcome is unknown (an error after which the store may or
// may not have applied it) is settled by the relay's scan once DeadAfter
// has passed: published if the document holds it, dropped otherwise.
func TestUnknownWritesAreSettledByAScan(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	col := collect(t, conn)
	relay, _ := MustRunRelay(t, coll, conn, fast)
	ctx := context.Background()
	applied, lost := primitive.NewObjectID(), primitive.NewObjectID()
	entries := outbox.MustEntries(t, event0(applied, 0), event0(lost, 0))
	if err := relay.Stamp(ctx, entries); err != nil {
		t.Fatal(err)
	}
	// The first write reached the store, the second did not; both writers
	// got an error.
	if _, err := coll.InsertOne(ctx, bson.M{"_id": applied, "version": int64(0), outbox.Field: entries[:1]}); err != nil {
		t.Fatal(err)
	}
	relay.Settle(applied, entries[:1], outbox.Unknown, nil)
	relay.Settle(lost, entries[1:], outbox.Unknown, nil)
	testenv.Eventually(t, 20*time.Second, "the applied write's event", func() bool { return len(col.versions(applied.Hex())) == 1 })
	testenv.Eventually(t, 20*time.Second, "both settled", func() bool {
		b, _ := relay.Backlog(ctx)
		return b == 0
	})
	if got := col.versions(lost.Hex()); len(got) != 0 {
		t.Fatalf("published %v for a write never applied", got)
	}
}

// countingPublisher counts the publishes that the server acknowledged.
type countingPublisher struct {
	pub outbox.Publisher
	n   atomic.Int32
}

func (c *countingPublisher) PublishMsg(ctx context.Context, subject, msgID string, data []byte) error {
	err := c.pub.PublishMsg(ctx, subject, msgID, data)
	if err == nil {
		c.n.Add(1)
	}
	return err
}

// Two processes (two relays, each with its own Records) write one document
// in turns: an entry may go out twice, but the first copies are in order.
func TestTwoRelaysMayDuplicateButNeverReorder(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	col := collect(t, conn)
	a, _ := MustRunRelay(t, coll, MustConnect(t, n), fast)
	b, _ := MustRunRelay(t, coll, MustConnect(t, n), fast)
	recA, recB := newRecords(coll, a), newRecords(coll, b)
	id := insert(t, recA)
	const updates = 30
	for v := int64(1); v <= updates; v++ {
		if v%2 == 0 {
			update(t, recA, id, v)
		} else {
			update(t, recB, id, v)
		}
	}
	testenv.Eventually(t, 20*time.Second, "every event", func() bool {
		return len(firstOccurrences(col.versions(id.Hex()))) == updates+1
	})
	got := col.versions(id.Hex())
	if !slices.Equal(firstOccurrences(got), seq(0, updates)) {
		t.Fatalf("first occurrences %v, want 0..%d in order", firstOccurrences(got), updates)
	}
	t.Logf("%d deliveries for %d entries", len(got), updates+1)
	testenv.Eventually(t, 10*time.Second, "the checkpoints stored", func() bool { return backlog(t, coll) == 0 })
}

// Entries written before relays numbered them (no src, next to the count
// the former relay kept) are published in order by a relay's first scan and
// removed from their documents.
func TestUnnumberedEntriesArePublishedAndRemoved(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	col := collect(t, MustConnect(t, n))
	ctx := context.Background()
	id := primitive.NewObjectID()
	old := outbox.MustEntries(t, event0(id, 0), event0(id, 1), event0(id, 2))
	if _, err := coll.InsertOne(ctx, bson.M{"_id": id, "version": int64(2), outbox.Field: old, "outboxPending": int64(3)}); err != nil {
		t.Fatal(err)
	}
	MustRunRelay(t, coll, MustConnect(t, n), fast)
	testenv.Eventually(t, 20*time.Second, "the old entries published", func() bool { return len(col.versions(id.Hex())) == 3 })
	if got := col.versions(id.Hex()); !slices.Equal(got, seq(0, 2)) {
		t.Fatalf("published %v, want 0..2 in order", got)
	}
	testenv.Eventually(t, 10*time.Second, "the old entries removed", func() bool { return len(stored(t, coll, id)) == 0 })
}

// Snapshots handed to the relay arrive in any order (here: the insert's
// last, after every update's): entries published already are skipped, so
// the first copies go out in version order, each once.
func TestStaleSnapshotsPublishNothingAgain(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	col := collect(t, conn)
	pub := &countingPublisher{pub: conn}
	relay := outbox.NewRelay(coll, pub, testLog(), fast)
	recs := newRecords(coll, relay)
	id := insert(t, recs) // queued: the relay does not run yet
	first := stored(t, coll, id)
	const updates = 20
	for v := int64(1); v <= updates; v++ {
		update(t, recs, id, v)
	}
	relay.NotifyPending(id, first...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = relay.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.Eventually(t, 20*time.Second, "every version", func() bool { return len(col.versions(id.Hex())) >= updates+1 })
	testenv.Eventually(t, 10*time.Second, "the checkpoint stored", func() bool { return backlog(t, coll) == 0 })
	if got := col.versions(id.Hex()); !slices.Equal(got, seq(0, updates)) {
		t.Fatalf("published %v, want 0..%d in order, once each", got, updates)
	}
	if p := pub.n.Load(); p != updates+1 {
		t.Fatalf("%d publishes for %d entries", p, updates+1)
	}
}

// The store commands of a burst of inserts: the inserts themselves, and
// on the relays' records a few writes per heartbeat, whatever the number
// of events; nothing per event after the write (counted, not timed).
func TestCleanupCostsNoWritePerEvent(t *testing.T) {
	db, cmds := monitoredDatabase(t)
	coll := db.Collection("tickets")
	n := testenv.EventBus(t)
	pub := &countingPublisher{pub: MustConnect(t, n)}
	relay, stop := MustRunRelay(t, coll, pub, outbox.Options{}) // the production heartbeat
	recs := newRecords(coll, relay)
	const docs = 1000
	for range docs {
		insert(t, recs)
	}
	testenv.Eventually(t, 60*time.Second, "every entry published", func() bool {
		b, _ := relay.Backlog(context.Background())
		return b == 0 && pub.n.Load() == docs
	})
	stop()
	// The inserts, the scans' index, and the scan for unnumbered entries
	// at start.
	if c := cmds.total("tickets"); c != docs+2 || cmds.count("tickets", "insert") != docs {
		t.Fatalf("%d commands on the collection (%v) for %d inserts, want the inserts, one createIndexes and one find", c, cmds.n["tickets"], docs)
	}
	if c := cmds.total(outbox.RegistryCollection); c > docs/10 {
		t.Fatalf("%d commands on the relays' records for %d events, want well under one per ten", c, docs)
	}
	t.Logf("%d events: %d commands on the collection, %d on the relays' records", docs, cmds.total("tickets"), cmds.total(outbox.RegistryCollection))
}

// A relay whose record was last written DeadAfter/2 ago (its heartbeats
// stuck) writes it again before it numbers another entry, so that no
// adopter can take the record under a write it numbers.
func TestNumberingRefreshesAStaleRecord(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	stuck := fast
	r := outbox.NewRelay(coll, MustConnect(t, testenv.EventBus(t)), testLog(), stuck) // not run: no heartbeats
	recs := newRecords(coll, r)
	insert(t, recs) // records the relay
	reg := coll.Database().Collection(outbox.RegistryCollection)
	at := func() time.Time {
		var rec struct {
			At time.Time `bson:"at"`
		}
		if err := reg.FindOne(context.Background(), bson.M{"_id": outbox.Src(r)}).Decode(&rec); err != nil {
			t.Fatal(err)
		}
		return rec.At
	}
	first := at()
	insert(t, recs)
	if got := at(); !got.Equal(first) {
		t.Fatalf("the record was written again at %v within DeadAfter/2", got)
	}
	time.Sleep(stuck.DeadAfter/2 + 100*time.Millisecond) // the record's age is the condition under test
	insert(t, recs)
	if got := at(); !got.After(first) {
		t.Fatalf("numbering after DeadAfter/2 left the record at %v", got)
	}
}
