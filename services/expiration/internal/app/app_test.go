package app

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/expiration/internal/domain"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// world is the servers one test shares between its expiration instances.
type world struct {
	mongo testenv.MongoDB
	nats  testenv.NATS
	db    *mongo.Database
	conn  *events.Conn // the test's connection: publishes orders, observes expirations
	log   *slog.Logger

	mu       sync.Mutex
	received map[string][]time.Time // orderId -> arrivals of expiration:complete
}

func mustWorld(tb testing.TB) *world {
	tb.Helper()
	w := &world{mongo: testenv.Mongo(tb), nats: testenv.EventBus(tb), received: map[string][]time.Time{}}
	w.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		w.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, db, err := mongox.Connect(ctx, w.mongo.URI, w.mongo.Database)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	w.db = db
	w.conn, err = events.Connect(ctx, w.natsConfig("expiration-test-client"), w.log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = w.conn.Close() })
	err = w.conn.Subscribe(events.Subscription{Subject: events.SubjectExpirationComplete, QueueGroup: "test-observer"},
		events.Decode(func(_ context.Context, e events.ExpirationComplete, _ *events.Msg) error {
			w.mu.Lock()
			w.received[e.OrderID] = append(w.received[e.OrderID], time.Now())
			w.mu.Unlock()
			return nil
		}))
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

func (w *world) natsConfig(name string) events.Config {
	return events.Config{Bus: w.nats.Bus, URL: w.nats.URL, ClusterID: w.nats.ClusterID, ClientID: events.NewClientID(name), SubjectPrefix: w.nats.SubjectPrefix}
}

// instance is one running expiration service.
type instance struct {
	url    string
	cancel context.CancelFunc
	done   chan error
}

// start runs an expiration service on the world's servers until Stop or the
// end of the test.
func (w *world) start(tb testing.TB) *instance {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	cfg := Config{MongoURI: w.mongo.URI, MongoDB: w.mongo.Database, NATS: w.natsConfig("expiration"),
		Poll: time.Second, AckWait: 5 * time.Second}
	go func() { in.done <- Run(ctx, cfg, ln, w.log) }()
	tb.Cleanup(func() { in.Stop(tb) })
	testenv.Eventually(tb, 30*time.Second, "expiration ready", func() bool {
		select {
		case err := <-in.done:
			in.done <- err
			tb.Fatalf("expiration service stopped: %v", err)
		default:
		}
		res, err := http.Get(in.url + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return in
}

// Stop shuts the instance down and waits until it has (idempotent).
func (in *instance) Stop(tb testing.TB) {
	tb.Helper()
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.cancel = nil
	if err := <-in.done; err != nil {
		tb.Errorf("expiration service: %v", err)
	}
}

// firedTotal reads this process's expiration_fired_total from /metrics of
// any running instance (the instances of one test process share the metric
// registry, so it is the sum over all of them).
func (in *instance) firedTotal(tb testing.TB) int {
	tb.Helper()
	res, err := http.Get(in.url + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "expiration_fired_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return int(f)
		}
	}
	tb.Fatal("no expiration_fired_total in /metrics")
	return 0
}

func (w *world) orderCreated(tb testing.TB, id string, expiresAt time.Time) {
	tb.Helper()
	w.publish(tb, events.OrderCreatedEvent{ID: id, Version: 0, Status: events.OrderCreated, UserID: "u1",
		ExpiresAt: expiresAt, Ticket: events.OrderTicket{ID: newID(), Price: 10}})
}

func (w *world) publish(tb testing.TB, e events.Event) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.conn.Publish(ctx, e); err != nil {
		tb.Fatal(err)
	}
}

func (w *world) arrivals(id string) []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Time(nil), w.received[id]...)
}

// state returns the stored expiration state of an order ("" when unknown).
func (w *world) state(tb testing.TB, id string) (domain.State, bson.M) {
	tb.Helper()
	var d bson.M
	err := w.db.Collection("expirations").FindOne(context.Background(), bson.M{"_id": id}).Decode(&d)
	if err == mongo.ErrNoDocuments {
		return "", nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	s, _ := d["state"].(string)
	return domain.State(s), d
}

func (w *world) count(tb testing.TB, filter bson.M) int64 {
	tb.Helper()
	n, err := w.db.Collection("expirations").CountDocuments(context.Background(), filter)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// backlog counts the entries of the expirations not published, as the
// relays' checkpoints tell.
func (w *world) backlog(tb testing.TB) int64 {
	tb.Helper()
	n, err := outbox.Backlog(context.Background(), w.db.Collection("expirations"))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func newID() string { return primitive.NewObjectID().Hex() }

// TestExpires: an order's expiration:complete is published once it is due,
// never before.
func TestExpires(t *testing.T) {
	w := mustWorld(t)
	in := w.start(t)
	before := in.firedTotal(t)
	id := newID()
	expiresAt := time.Now().Add(1500 * time.Millisecond)
	w.orderCreated(t, id, expiresAt)

	testenv.Eventually(t, 20*time.Second, "expiration:complete", func() bool { return len(w.arrivals(id)) > 0 })
	got := w.arrivals(id)[0]
	// Stored times have millisecond precision.
	if got.Before(expiresAt.Truncate(time.Millisecond)) {
		t.Fatalf("published at %s, before expiresAt %s", got.Format(time.StampMilli), expiresAt.Format(time.StampMilli))
	}
	t.Logf("published %s after expiresAt", got.Sub(expiresAt).Round(time.Millisecond))
	if s, _ := w.state(t, id); s != domain.Fired {
		t.Fatalf("state %q, want fired", s)
	}
	testenv.Eventually(t, 10*time.Second, "every event published", func() bool { return w.backlog(t) == 0 })
	if n := in.firedTotal(t) - before; n != 1 {
		t.Fatalf("fired %d times, want 1", n)
	}
}

// TestDuplicateOrderCreatedSchedulesOnce: redelivered or republished
// order:created keeps the first schedule, even one with another expiresAt
// arriving after it. (Only after it: a subscription handles several
// messages at once, so of events published together any may be handled
// first; the one handled first is the schedule.)
func TestDuplicateOrderCreatedSchedulesOnce(t *testing.T) {
	w := mustWorld(t)
	in := w.start(t)
	before := in.firedTotal(t)
	id := newID()
	expiresAt := time.Now().Add(2 * time.Second)
	w.orderCreated(t, id, expiresAt)
	w.orderCreated(t, id, expiresAt)
	// Scheduled (pending, or fired already on a slow machine).
	testenv.Eventually(t, 10*time.Second, "scheduled", func() bool { s, _ := w.state(t, id); return s != "" })
	w.orderCreated(t, id, expiresAt.Add(time.Hour))

	testenv.Eventually(t, 20*time.Second, "expiration:complete", func() bool { return len(w.arrivals(id)) > 0 })
	testenv.Eventually(t, 10*time.Second, "every event published", func() bool { return w.backlog(t) == 0 })
	if n := w.count(t, bson.M{"_id": id}); n != 1 {
		t.Fatalf("%d documents, want 1", n)
	}
	if n := in.firedTotal(t) - before; n != 1 {
		t.Fatalf("fired %d times, want 1", n)
	}
	if n := len(w.arrivals(id)); n != 1 {
		t.Fatalf("%d expiration:complete received, want 1", n)
	}
}

// TestRestartStillFires: the service is down from before the order is due
// until after: the expiration fires late, after the restart, not never.
func TestRestartStillFires(t *testing.T) {
	w := mustWorld(t)
	first := w.start(t)
	id := newID()
	expiresAt := time.Now().Add(2500 * time.Millisecond) // scheduled well before it, even on a loaded machine
	w.orderCreated(t, id, expiresAt)
	testenv.Eventually(t, 10*time.Second, "scheduled", func() bool { s, _ := w.state(t, id); return s == domain.Pending })
	first.Stop(t)

	testenv.Eventually(t, 10*time.Second, "due time passes", func() bool { return time.Now().After(expiresAt.Add(200 * time.Millisecond)) })
	if n := len(w.arrivals(id)); n != 0 {
		t.Fatalf("%d expiration:complete while the service was down", n)
	}
	if s, _ := w.state(t, id); s != domain.Pending {
		t.Fatalf("state %q while down, want pending", s)
	}

	w.start(t)
	testenv.Eventually(t, 20*time.Second, "expiration:complete after restart", func() bool { return len(w.arrivals(id)) > 0 })
	t.Logf("fired %s after expiresAt (down until after it)", w.arrivals(id)[0].Sub(expiresAt).Round(time.Millisecond))
}

// TestTwoInstancesFireOnce: two replicas sharing the database and queue
// group fire every expiration exactly once between them.
func TestTwoInstancesFireOnce(t *testing.T) {
	w := mustWorld(t)
	a := w.start(t)
	w.start(t)
	before := a.firedTotal(t)
	const n = 30
	ids := make([]string, n)
	due := make([]time.Time, n)
	base := time.Now().Add(time.Second)
	for i := range ids {
		ids[i] = newID()
		// Many share a due time, so both replicas race for them.
		due[i] = base.Add(time.Duration(i%3) * 100 * time.Millisecond)
		w.orderCreated(t, ids[i], due[i])
	}
	testenv.Eventually(t, 30*time.Second, "every expiration:complete", func() bool {
		for _, id := range ids {
			if len(w.arrivals(id)) == 0 {
				return false
			}
		}
		return true
	})
	testenv.Eventually(t, 10*time.Second, "every event published", func() bool { return w.backlog(t) == 0 })
	if got := w.count(t, bson.M{"state": domain.Fired}); got != n {
		t.Fatalf("%d fired, want %d", got, n)
	}
	if fired := a.firedTotal(t) - before; fired != n {
		t.Fatalf("the two instances fired %d times for %d orders", fired, n)
	}
	dups := 0
	var worst time.Duration
	for i, id := range ids {
		got := w.arrivals(id)
		dups += len(got) - 1
		if got[0].Before(due[i].Truncate(time.Millisecond)) {
			t.Errorf("order %d published before it was due", i)
		}
		worst = max(worst, got[0].Sub(due[i]))
	}
	t.Logf("latest publication %s after expiresAt", worst.Round(time.Millisecond))
	// The outbox relays are at-least-once across replicas; the orders
	// service ignores a second expiration:complete.
	t.Logf("%d duplicate deliveries by the relays", dups)
}

// TestCancelledOrderDoesNotFire: order:cancelled drops a pending
// expiration, and leaves a tombstone when it arrives before order:created.
func TestCancelledOrderDoesNotFire(t *testing.T) {
	w := mustWorld(t)
	in := w.start(t)
	before := in.firedTotal(t)
	due := time.Now().Add(2 * time.Second) // both cancellations land well before it, even on a loaded machine

	cancelled := newID()
	w.orderCreated(t, cancelled, due)
	testenv.Eventually(t, 10*time.Second, "scheduled", func() bool { s, _ := w.state(t, cancelled); return s == domain.Pending })
	w.publish(t, events.OrderCancelledEvent{ID: cancelled, Version: 1, Ticket: events.OrderTicket{ID: newID()}})

	early := newID()
	w.publish(t, events.OrderCancelledEvent{ID: early, Version: 1, Ticket: events.OrderTicket{ID: newID()}})
	testenv.Eventually(t, 10*time.Second, "tombstone", func() bool { s, _ := w.state(t, early); return s == domain.Dropped })
	w.orderCreated(t, early, due)

	// A sentinel due after both: once it has fired, they would have too.
	sentinel := newID()
	w.orderCreated(t, sentinel, due.Add(500*time.Millisecond))
	testenv.Eventually(t, 20*time.Second, "sentinel fired", func() bool { return len(w.arrivals(sentinel)) > 0 })
	for _, id := range []string{cancelled, early} {
		if s, _ := w.state(t, id); s != domain.Dropped {
			t.Errorf("order %s: state %q, want dropped", id, s)
		}
		if n := len(w.arrivals(id)); n != 0 {
			t.Errorf("order %s: %d expiration:complete", id, n)
		}
	}
	if fired := in.firedTotal(t) - before; fired != 1 {
		t.Fatalf("fired %d, want 1 (the sentinel)", fired)
	}
}
