package outbox_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
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

// finds counts the find commands on one collection that succeeded.
type finds struct {
	mu      sync.Mutex
	running map[int64]bool // request ids of finds on the collection
	done    int
	change  chan struct{} // closed and replaced at each one done
}

// wait waits until n finds have succeeded.
func (f *finds) wait(tb testing.TB, n int) {
	tb.Helper()
	timeout := time.After(30 * time.Second)
	for {
		f.mu.Lock()
		done, change := f.done, f.change
		f.mu.Unlock()
		if done >= n {
			return
		}
		select {
		case <-change:
		case <-timeout:
			tb.Fatalf("timed out waiting for %d finds on the collection (%d done)", n, done)
		}
	}
}

// monitoredCollection returns this test's collection name through a client
// of its own that counts the finds on it (a relay's poll is one).
func monitoredCollection(tb testing.TB, name string) (*mongo.Collection, *finds) {
	tb.Helper()
	f := &finds{running: map[int64]bool{}, change: make(chan struct{})}
	mon := &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			if coll, ok := e.Command.Lookup("find").StringValueOK(); ok && e.CommandName == "find" && coll == name {
				f.mu.Lock()
				f.running[e.RequestID] = true
				f.mu.Unlock()
			}
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.running[e.RequestID] {
				delete(f.running, e.RequestID)
				f.done++
				close(f.change)
				f.change = make(chan struct{})
			}
		},
		Failed: func(_ context.Context, e *event.CommandFailedEvent) {
			f.mu.Lock()
			delete(f.running, e.RequestID)
			f.mu.Unlock()
		},
	}
	m := testenv.Mongo(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(ctx, options.Client().ApplyURI(m.URI).SetMonitor(mon))
	if err != nil {
		tb.Fatalf("connect %s: %v", m.URI, err)
	}
	tb.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c.Database(m.Database).Collection(name), f
}

func entry(tb testing.TB, id primitive.ObjectID, v int64) outbox.Entry {
	tb.Helper()
	e, err := outbox.NewEntry(events.TicketUpdated{ID: id.Hex(), Version: v, Title: "t", Price: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// insert creates a ticket at version 0 with its ticket:updated v0 entry, as a
// service writes it: the document and its event in one insert.
func insert(tb testing.TB, coll *mongo.Collection) primitive.ObjectID {
	tb.Helper()
	id := primitive.NewObjectID()
	if _, err := coll.InsertOne(context.Background(), bson.M{"_id": id, "version": int64(0),
		outbox.Field: []outbox.Entry{entry(tb, id, 0)}, outbox.PendingField: int64(1)}); err != nil {
		tb.Fatalf("insert: %v", err)
	}
	return id
}

// update bumps the version and pushes its event, in one update.
func update(tb testing.TB, coll *mongo.Collection, id primitive.ObjectID, v int64) {
	tb.Helper()
	res, err := coll.UpdateOne(context.Background(), bson.M{"_id": id, "version": v - 1},
		outbox.Push(bson.M{"$set": bson.M{"version": v}}, entry(tb, id, v)))
	if err != nil || res.MatchedCount != 1 {
		tb.Fatalf("update to v%d: %v (matched %v)", v, err, res)
	}
}

// pendingCount reads the document's outbox.PendingField (-99 when absent).
func pendingCount(tb testing.TB, coll *mongo.Collection, id any) int64 {
	tb.Helper()
	var d bson.M
	if err := coll.FindOne(context.Background(), bson.M{"_id": id}).Decode(&d); err != nil {
		tb.Fatalf("read %v: %v", id, err)
	}
	n, ok := d[outbox.PendingField].(int64)
	if !ok {
		return -99
	}
	return n
}

func backlog(tb testing.TB, coll *mongo.Collection) int64 {
	tb.Helper()
	n, err := outbox.Backlog(context.Background(), coll)
	if err != nil {
		tb.Fatalf("Backlog: %v", err)
	}
	return n
}

func TestRelayPublishesEachDocumentInOrder(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	col := collect(t, conn)
	relay, _ := MustRunRelay(t, coll, conn, outbox.Options{})

	const docs, updates = 4, 25
	ids := make([]primitive.ObjectID, docs)
	for i := range ids {
		ids[i] = insert(t, coll)
		relay.Notify(ids[i])
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := int64(1); v <= updates; v++ {
				update(t, coll, id, v)
				relay.Notify(id)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		testenv.Eventually(t, 20*time.Second, "every version of "+id.Hex(), func() bool { return len(col.versions(id.Hex())) >= updates+1 })
		// One relay: in order, and (its cleanup never failing here) once each.
		if got := col.versions(id.Hex()); !slices.Equal(got, seq(0, updates)) {
			t.Fatalf("ticket %s: published %v, want 0..%d in order", id.Hex(), got, updates)
		}
	}
	testenv.Eventually(t, 10*time.Second, "an empty outbox", func() bool { return backlog(t, coll) == 0 })
	// Removals queued for one document are merged (several entries in one
	// statement): the count must fall by as many.
	for _, id := range ids {
		if n := pendingCount(t, coll, id); n != 0 {
			t.Fatalf("ticket %s: outboxPending %d with an empty outbox", id.Hex(), n)
		}
	}
	var doc bson.M
	if err := coll.FindOne(context.Background(), bson.M{"_id": ids[0]}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc["version"] != int64(updates) {
		t.Fatalf("the relay touched the document's state: %v", doc)
	}
}

func TestNotifiedWritesPropagateWithoutWaitingForThePoll(t *testing.T) {
	coll, finds := monitoredCollection(t, "tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	col := collect(t, conn)
	// A poll of an hour: only Notify can deliver these.
	relay, _ := MustRunRelay(t, coll, conn, outbox.Options{PollInterval: time.Hour})
	// The initial poll's query has run (it is the first find on the
	// collection): the poll cannot see what is written from now on.
	finds.wait(t, 1)
	id := insert(t, coll)
	relay.Notify(id)
	const updates = 200
	written := map[int64]time.Time{0: time.Now()}
	for v := int64(1); v <= updates; v++ {
		update(t, coll, id, v)
		written[v] = time.Now()
		relay.Notify(id)
		// one at a time, so that latency, not queueing behind a burst, is measured
		testenv.Eventually(t, 10*time.Second, "the event", func() bool { return len(col.versions(id.Hex())) > int(v) })
	}
	testenv.Eventually(t, 20*time.Second, "every version", func() bool { return len(col.versions(id.Hex())) >= updates+1 })
	if got := col.versions(id.Hex()); !slices.Equal(firstOccurrences(got), seq(0, updates)) {
		t.Fatalf("published %v", got)
	}
	col.mu.Lock()
	var lat []time.Duration
	for v, w := range written {
		lat = append(lat, col.when[id.Hex()+"/"+itoa(v)].Sub(w))
	}
	col.mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("write -> consumer latency over %d notified writes (mode %s): p50 %v, p90 %v, p99 %v, max %v",
		len(lat), testenv.Mode(), lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)*99/100], lat[len(lat)-1])
}

func TestWritesSucceedWhileNATSIsDownAndArriveInOrderAfter(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	srv := testenv.DedicatedEventBus(t)
	conn := MustConnect(t, srv.NATS)
	relay, _ := MustRunRelay(t, coll, conn, outbox.Options{PollInterval: 200 * time.Millisecond, MaxBackoff: time.Second})

	srv.Stop(t)
	testenv.Eventually(t, 30*time.Second, "the relay's connection to notice", func() bool { return conn.Ready(context.Background()) != nil })
	id := insert(t, coll)
	relay.Notify(id)
	const updates = 10
	for v := int64(1); v <= updates; v++ {
		update(t, coll, id, v) // the write succeeds although NATS is down
		relay.Notify(id)
	}
	if n := backlog(t, coll); n != updates+1 {
		t.Fatalf("backlog while NATS is down = %d, want %d", n, updates+1)
	}
	srv.Start(t)
	col := collect(t, MustConnect(t, srv.NATS))
	testenv.Eventually(t, 60*time.Second, "every event after NATS came back", func() bool {
		return len(firstOccurrences(col.versions(id.Hex()))) == updates+1
	})
	if got := col.versions(id.Hex()); !slices.Equal(firstOccurrences(got), seq(0, updates)) {
		t.Fatalf("published %v, want 0..%d in order", got, updates)
	}
	testenv.Eventually(t, 10*time.Second, "an empty outbox", func() bool { return backlog(t, coll) == 0 })
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

func TestRestartedRelayResumesWithoutLosingEntries(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	col := collect(t, conn)

	id := insert(t, coll)
	const updates = 20
	for v := int64(1); v <= updates; v++ {
		update(t, coll, id, v)
	}
	hang := &hangingPublisher{pub: conn}
	hang.left.Store(7)
	first, stopFirst := MustRunRelay(t, coll, hang, outbox.Options{PollInterval: time.Hour})
	first.Notify(id)
	testenv.Eventually(t, 20*time.Second, "the first relay to publish 7 entries", func() bool { return len(col.versions(id.Hex())) >= 7 })
	stopFirst() // "killed" while hanging on the 8th
	// At least the 14 entries it never published are left (the 7 it did
	// publish may be left too: a killed relay publishes them again).
	if n := backlog(t, coll); n < updates+1-7 {
		t.Fatalf("backlog after the first relay = %d", n)
	}

	MustRunRelay(t, coll, conn, outbox.Options{}) // a new process: starts with a poll
	testenv.Eventually(t, 20*time.Second, "every event", func() bool {
		return len(firstOccurrences(col.versions(id.Hex()))) == updates+1
	})
	if got := col.versions(id.Hex()); !slices.Equal(firstOccurrences(got), seq(0, updates)) {
		t.Fatalf("published %v, want 0..%d in order", got, updates)
	}
	testenv.Eventually(t, 10*time.Second, "an empty outbox", func() bool { return backlog(t, coll) == 0 })
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

// TestFailedCleanupPublishesNothingAgain: a removal of published entries
// that fails (a timeout, the store briefly away) is tried again; the
// entries are not published again meanwhile, although polls find them
// still in the document. Only a relay that stops (a crash, a restart)
// leaves them to be published again.
func TestFailedCleanupPublishesNothingAgain(t *testing.T) {
	coll, polls := monitoredCollection(t, "tickets")
	n := testenv.EventBus(t)
	pub := &countingPublisher{pub: MustConnect(t, n)}
	r := outbox.NewRelay(coll, pub, testLog(), outbox.Options{PollInterval: 20 * time.Millisecond})
	const faults = 3
	var failed atomic.Int32
	pollsAtFault := make(chan int, 1)
	outbox.SetRemovalFault(r, func() error {
		if k := failed.Add(1); k <= faults {
			if k == 1 {
				polls.mu.Lock()
				pollsAtFault <- polls.done
				polls.mu.Unlock()
			}
			return errors.New("injected: the store did not answer in time")
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	id := insert(t, coll)
	r.Notify(id)
	var atFault int
	select {
	case atFault = <-pollsAtFault:
	case <-time.After(30 * time.Second):
		t.Fatal("no removal within 30s")
	}
	// Polls while the entry, published, is still in the document.
	polls.wait(t, atFault+3)
	testenv.Eventually(t, 30*time.Second, "an empty outbox", func() bool { return backlog(t, coll) == 0 })
	if f := failed.Load(); f <= faults {
		t.Fatalf("%d removals, want the %d failed ones and one more", f, faults)
	}
	// Publishes return once the server acknowledged, and the removal that
	// succeeded ran after the publish: the count is final.
	if p := pub.n.Load(); p != 1 {
		t.Fatalf("the entry was published %d times, want once", p)
	}
	if c := pendingCount(t, coll, id); c != 0 {
		t.Fatalf("pending count %d, want 0", c)
	}
}

// TestPollsAddNothingToWhatTheRelayHolds: a burst of documents notified by
// their writers waits in the relay's queue (the broker is slow: 20 ms a
// publish, one worker, so the queue takes 2 s) while polls every 10 ms find
// them pending, published or not. Each entry is published once. The relay
// remembers removed entries for 1 s here (10 s in production): a copy of a
// document that a poll queued behind the burst ran after its entries had
// been removed and forgotten, and published them again.
func TestPollsAddNothingToWhatTheRelayHolds(t *testing.T) {
	coll, polls := monitoredCollection(t, "tickets")
	n := testenv.EventBus(t)
	pub := &countingPublisher{pub: slowPublisher{pub: MustConnect(t, n), delay: 20 * time.Millisecond}}
	r := outbox.NewRelay(coll, pub, testLog(), outbox.Options{PollInterval: 10 * time.Millisecond, Workers: 1})
	outbox.SetRememberRemoved(r, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	const docs = 100
	for range docs {
		r.Notify(insert(t, coll))
	}
	testenv.Eventually(t, 60*time.Second, "an empty outbox", func() bool { return backlog(t, coll) == 0 })
	// A late copy would still be queued or running: every copy is
	// processed before the relay goes idle, and polls go on meanwhile.
	polls.mu.Lock()
	now := polls.done
	polls.mu.Unlock()
	polls.wait(t, now+10)
	if p := pub.n.Load(); p != docs {
		t.Fatalf("%d publishes for %d entries, want one each", p, docs)
	}
}

// slowPublisher takes delay before each publish: a slow broker.
type slowPublisher struct {
	pub   outbox.Publisher
	delay time.Duration
}

func (s slowPublisher) PublishMsg(ctx context.Context, subject, msgID string, data []byte) error {
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.pub.PublishMsg(ctx, subject, msgID, data)
}

func TestTwoRelaysMayDuplicateButNeverReorder(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	col := collect(t, conn)
	a, _ := MustRunRelay(t, coll, MustConnect(t, n), outbox.Options{PollInterval: 50 * time.Millisecond})
	b, _ := MustRunRelay(t, coll, MustConnect(t, n), outbox.Options{PollInterval: 50 * time.Millisecond})
	id := insert(t, coll)
	const updates = 30
	for v := int64(1); v <= updates; v++ {
		update(t, coll, id, v)
		a.Notify(id)
		b.Notify(id)
	}
	testenv.Eventually(t, 20*time.Second, "every event", func() bool {
		return len(firstOccurrences(col.versions(id.Hex()))) == updates+1
	})
	got := col.versions(id.Hex())
	if !slices.Equal(firstOccurrences(got), seq(0, updates)) {
		t.Fatalf("first occurrences %v, want 0..%d in order", firstOccurrences(got), updates)
	}
	t.Logf("%d deliveries for %d entries", len(got), updates+1)
	testenv.Eventually(t, 10*time.Second, "an empty outbox", func() bool { return backlog(t, coll) == 0 })
	// Both relays removed what they published; each entry came off the
	// pending count once (a count below 0 would be polled for ever, one
	// above 0 would hide nothing but cost a read per poll).
	if c := pendingCount(t, coll, id); c != 0 {
		t.Fatalf("pending count %d after the outbox emptied, want 0", c)
	}
}

// A document written without the pending count (by a version before it, or
// code that does not set it) is still found by the poll and published, and
// the relay leaves its count at 0; so is a document whose count is off
// while it has no entries.
func TestDocumentsWithAWrongCountArePublishedAndTheCountRepaired(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	col := collect(t, MustConnect(t, n))
	ctx := context.Background()
	legacy := primitive.NewObjectID()
	if _, err := coll.InsertOne(ctx, bson.M{"_id": legacy, "version": int64(0), outbox.Field: []outbox.Entry{entry(t, legacy, 0)}}); err != nil {
		t.Fatal(err)
	}
	off := primitive.NewObjectID()
	if _, err := coll.InsertOne(ctx, bson.M{"_id": off, "version": int64(0), outbox.PendingField: int64(3)}); err != nil {
		t.Fatal(err)
	}
	// A count too low hides the document from the polls on the count; the
	// poll on the entries themselves (at start, then every 10 minutes or so) finds it.
	low := primitive.NewObjectID()
	if _, err := coll.InsertOne(ctx, bson.M{"_id": low, "version": int64(0),
		outbox.Field: []outbox.Entry{entry(t, low, 0)}, outbox.PendingField: int64(0)}); err != nil {
		t.Fatal(err)
	}
	MustRunRelay(t, coll, MustConnect(t, n), outbox.Options{PollInterval: 50 * time.Millisecond})
	testenv.Eventually(t, 10*time.Second, "the legacy entry published", func() bool { return len(col.versions(legacy.Hex())) > 0 })
	testenv.Eventually(t, 10*time.Second, "the entry under a count too low published", func() bool { return len(col.versions(low.Hex())) > 0 })
	testenv.Eventually(t, 10*time.Second, "every count at 0", func() bool {
		return pendingCount(t, coll, legacy) == 0 && pendingCount(t, coll, off) == 0 && pendingCount(t, coll, low) == 0
	})
	if b := backlog(t, coll); b != 0 {
		t.Fatalf("backlog %d", b)
	}
}

func TestPushKeepsOtherOperators(t *testing.T) {
	e := outbox.Entry{ID: primitive.NewObjectID()}
	u := outbox.Push(bson.M{"$set": bson.M{"title": "x"}, "$push": bson.M{"tags": "a"}}, e)
	push := u["$push"].(bson.M)
	if u["$set"] == nil || push["tags"] != "a" || push[outbox.Field] == nil {
		t.Fatalf("Push = %v", u)
	}
	u = outbox.Push(bson.M{"$inc": bson.M{"version": int64(1)}}, e, e)
	if inc := u["$inc"].(bson.M); inc["version"] != int64(1) || inc[outbox.PendingField] != int64(2) {
		t.Fatalf("Push kept $inc %v, want version 1 and %s 2", u["$inc"], outbox.PendingField)
	}
	if got := outbox.Push(nil); len(got) != 0 {
		t.Fatalf("Push(nil) = %v", got)
	}
}

// TestNotifyPendingKeepsOrderWithReorderedAndStaleSnapshots: snapshots
// handed over by writers arrive in any order (here: newest first, the
// insert's last); each is the whole pending outbox, so the first copies
// still go out in version order and every entry is removed.
func TestNotifyPendingKeepsOrderWithReorderedAndStaleSnapshots(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	col := collect(t, conn)
	ctx := context.Background()
	id := primitive.NewObjectID()
	first := entry(t, id, 0)
	if _, err := coll.InsertOne(ctx, bson.M{"_id": id, "version": int64(0), outbox.Field: []outbox.Entry{first}}); err != nil {
		t.Fatal(err)
	}
	const updates = 20
	snaps := [][]outbox.Entry{{first}}
	for v := int64(1); v <= updates; v++ {
		pending, ok, err := outbox.UpdatePending(ctx, coll, bson.M{"_id": id, "version": v - 1},
			outbox.Push(bson.M{"$set": bson.M{"version": v}}, entry(t, id, v)))
		if err != nil || !ok {
			t.Fatalf("UpdatePending v%d: ok %v, err %v", v, ok, err)
		}
		if len(pending) != int(v)+1 || pending[0].ID != first.ID {
			t.Fatalf("UpdatePending v%d returned %d entries (first %v), want %d from %v", v, len(pending), pending, v+1, first.ID)
		}
		snaps = append(snaps, pending)
	}
	if _, ok, err := outbox.UpdatePending(ctx, coll, bson.M{"_id": id, "version": int64(0)}, bson.M{"$set": bson.M{"x": 1}}); err != nil || ok {
		t.Fatalf("UpdatePending on a stale version: ok %v, err %v; want no match", ok, err)
	}
	relay, _ := MustRunRelay(t, coll, conn, outbox.Options{PollInterval: time.Hour})
	for i := len(snaps) - 1; i >= 0; i-- {
		relay.NotifyPending(id, snaps[i]...)
	}
	testenv.Eventually(t, 20*time.Second, "every version", func() bool { return len(firstOccurrences(col.versions(id.Hex()))) >= updates+1 })
	if got := col.versions(id.Hex()); !slices.Equal(firstOccurrences(got), seq(0, updates)) {
		t.Fatalf("published %v, want first copies 0..%d in order", got, updates)
	}
	testenv.Eventually(t, 10*time.Second, "an empty outbox", func() bool { return backlog(t, coll) == 0 })
}

// TestNotifyPendingPublishesWithoutReading: the handed entries are
// published as they are, even for a document the relay could not read.
func TestNotifyPendingPublishesWithoutReading(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.EventBus(t)
	conn := MustConnect(t, n)
	col := collect(t, conn)
	relay, _ := MustRunRelay(t, coll, conn, outbox.Options{PollInterval: time.Hour})
	id := primitive.NewObjectID() // never stored
	relay.NotifyPending(id, entry(t, id, 0), entry(t, id, 1))
	testenv.Eventually(t, 10*time.Second, "both entries", func() bool { return len(col.versions(id.Hex())) >= 2 })
	if got := col.versions(id.Hex()); !slices.Equal(got, seq(0, 1)) {
		t.Fatalf("published %v, want [0 1]", got)
	}
}

// TestCleanupIsAmortised: removing published entries costs a command per
// batch of documents, not one per event, for documents that are never
// written again: 300 tickets created one after another, each notified as a
// service does, are published and removed in at most 30 update commands
// (counted by the driver's command monitor, not timed). With a command per
// 8 documents, as before, it took 38 or more.
func TestCleanupIsAmortised(t *testing.T) {
	name := "amortised"
	var updates atomic.Int64
	mon := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if coll, ok := e.Command.Lookup("update").StringValueOK(); ok && e.CommandName == "update" && coll == name {
			updates.Add(1)
		}
	}}
	m := testenv.Mongo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(ctx, options.Client().ApplyURI(m.URI).SetMonitor(mon))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	coll := c.Database(m.Database).Collection(name)
	pub := &countingPublisher{pub: MustConnect(t, testenv.NATSStreaming(t))}
	r, _ := MustRunRelay(t, coll, pub, outbox.Options{})

	const docs = 300
	for range docs {
		r.Notify(insert(t, coll))
	}
	testenv.Eventually(t, 60*time.Second, "an empty outbox", func() bool { return backlog(t, coll) == 0 })
	if p := pub.n.Load(); p != docs {
		t.Fatalf("%d publishes for %d entries, want one each", p, docs)
	}
	if u := updates.Load(); u > docs/10 {
		t.Fatalf("%d update commands removed the entries of %d documents, want at most %d (one per ten)", u, docs, docs/10)
	}
	t.Logf("%d update commands for %d documents", updates.Load(), docs)
}
