package listeners_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/inorder"
	"github.com/ticketing-go/ticketing/services/orders/internal/domain"
	"github.com/ticketing-go/ticketing/services/orders/internal/listeners"
	"github.com/ticketing-go/ticketing/services/orders/internal/store"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type rig struct {
	store *store.Store
	pub   *events.Conn
	rec   *recorder
}

// delivery is one handling of a message by a listener.
type delivery struct {
	subject     string
	id          string // of the event's record
	version     int64
	attempt     int
	redelivered bool
	err         error // what the handler returned
}

type deliveryKey struct{}

// recorder records the deliveries the listeners handled, and which one
// applied each ticket version to the replica.
type recorder struct {
	mu      sync.Mutex
	handled []delivery
	applied map[string]delivery // "id/version" -> the delivery whose handling applied it
	change  chan struct{}       // closed and replaced at each handled delivery
}

func newRecorder() *recorder {
	return &recorder{applied: map[string]delivery{}, change: make(chan struct{})}
}

// wait waits for a handled delivery that matches, and returns the first.
func (r *recorder) wait(tb testing.TB, what string, within time.Duration, match func(delivery) bool) delivery {
	tb.Helper()
	timeout := time.After(within)
	for {
		r.mu.Lock()
		for _, d := range r.handled {
			if match(d) {
				r.mu.Unlock()
				return d
			}
		}
		change := r.change
		r.mu.Unlock()
		select {
		case <-change:
		case <-timeout:
			tb.Fatalf("timed out after %v waiting for %s", within, what)
		}
	}
}

// appliedBy returns the delivery whose handling applied version v of id.
func (r *recorder) appliedBy(id string, v int64) (delivery, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.applied[fmt.Sprintf("%s/%d", id, v)]
	return d, ok
}

// recordingSubscriber subscribes through conn and records every delivery
// its handlers handle (the handler sees the delivery in its context).
type recordingSubscriber struct {
	conn *events.Conn
	rec  *recorder
}

func (s recordingSubscriber) Subscribe(sub events.Subscription, h events.Handler) error {
	return s.conn.Subscribe(sub, func(ctx context.Context, m *events.Msg) error {
		var e struct {
			ID      string `json:"id"`
			Version int64  `json:"version"`
		}
		_ = json.Unmarshal(m.Data, &e)
		d := delivery{subject: m.Subject, id: e.ID, version: e.Version, attempt: m.Attempt, redelivered: m.Redelivered}
		d.err = h(context.WithValue(ctx, deliveryKey{}, d), m)
		s.rec.mu.Lock()
		s.rec.handled = append(s.rec.handled, d)
		close(s.rec.change)
		s.rec.change = make(chan struct{})
		s.rec.mu.Unlock()
		return d.err
	})
}

// recordingStore is the store; it records the delivery that applied each
// ticket version.
type recordingStore struct {
	*store.Store
	rec *recorder
}

func (s recordingStore) InsertTicket(ctx context.Context, t domain.Ticket) (inorder.Outcome, error) {
	return s.record(ctx, t)(s.Store.InsertTicket(ctx, t))
}

func (s recordingStore) ApplyTicketUpdate(ctx context.Context, t domain.Ticket, a *inorder.Attempt) (inorder.Outcome, error) {
	return s.record(ctx, t)(s.Store.ApplyTicketUpdate(ctx, t, a))
}

func (s recordingStore) record(ctx context.Context, t domain.Ticket) func(inorder.Outcome, error) (inorder.Outcome, error) {
	return func(out inorder.Outcome, err error) (inorder.Outcome, error) {
		if d, ok := ctx.Value(deliveryKey{}).(delivery); ok && err == nil && out == inorder.Applied {
			s.rec.mu.Lock()
			s.rec.applied[fmt.Sprintf("%s/%d", t.ID, t.Version)] = d
			s.rec.mu.Unlock()
		}
		return out, err
	}
}

// MustStartListeners starts `instances` listener processes (each with its
// own NATS connection, all in the orders-service queue group) on one
// database, and returns the store and a publishing connection.
func MustStartListeners(tb testing.TB, instances int, o listeners.Options) *rig {
	tb.Helper()
	db := testenv.MongoDatabase(tb)
	n := testenv.EventBus(tb)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	connect := func(name string) *events.Conn {
		c, err := events.Connect(context.Background(), events.Config{
			Bus: n.Bus, URL: n.URL, ClusterID: n.ClusterID, ClientID: events.NewClientID(name), SubjectPrefix: n.SubjectPrefix,
		}, log)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = c.Close() })
		return c
	}
	r := &rig{store: store.New(db, nil), pub: connect("publisher"), rec: newRecorder()}
	o.Store, o.Log = recordingStore{r.store, r.rec}, log
	for i := 0; i < instances; i++ {
		if err := listeners.Start(recordingSubscriber{connect(fmt.Sprintf("orders-%d", i)), r.rec}, o); err != nil {
			tb.Fatal(err)
		}
	}
	return r
}

func (r *rig) publish(tb testing.TB, e events.Event) {
	tb.Helper()
	if err := r.pub.Publish(context.Background(), e); err != nil {
		tb.Fatal(err)
	}
}

// version returns the event of version v of ticket id (v 0 is ticket:created).
func version(id string, v int64) events.Event {
	title, price := fmt.Sprintf("title v%d", v), float64(10+v)
	if v == 0 {
		return events.TicketCreated{ID: id, Version: 0, Title: title, Price: price, UserID: "seller"}
	}
	return events.TicketUpdated{ID: id, Version: v, Title: title, Price: price, UserID: "seller"}
}

func want(id string, v int64) domain.Ticket {
	return domain.Ticket{ID: id, Title: fmt.Sprintf("title v%d", v), Price: float64(10 + v), Version: v}
}

// waitReplica polls until the replica of id is exactly t and returns how long that took.
func (r *rig) waitReplica(tb testing.TB, t domain.Ticket, timeout time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		got, err := r.store.Ticket(context.Background(), t.ID)
		if err == nil && got == t {
			return time.Since(start)
		}
		if got.Version > t.Version {
			tb.Fatalf("replica went past version %d: %+v", t.Version, got)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("replica of %s = %+v (%v), want %+v", t.ID, got, err, t)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// permutations of 0..n-1.
func permutations(n int) [][]int64 {
	var out [][]int64
	var rec func(p []int64, used []bool)
	rec = func(p []int64, used []bool) {
		if len(p) == n {
			out = append(out, append([]int64(nil), p...))
			return
		}
		for i := 0; i < n; i++ {
			if !used[i] {
				used[i] = true
				rec(append(p, int64(i)), used)
				used[i] = false
			}
		}
	}
	rec(nil, make([]bool, n))
	return out
}

// TestReplicaOutOfOrderAndDuplicates publishes the versions 0..3 of one
// ticket in every order (1,3,2 and the rest), each twice, to one and to two
// listener instances: the replica always ends at version 3 and never passes
// through a wrong state.
func TestReplicaOutOfOrderAndDuplicates(t *testing.T) {
	for _, instances := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d instances", instances), func(t *testing.T) {
			// AckWait far above the test's deadline: convergence must not
			// depend on redelivery.
			r := MustStartListeners(t, instances, listeners.Options{AckWait: time.Minute, MaxWait: 50 * time.Second})
			perms := permutations(4)
			ids := make([]string, len(perms))
			for i, p := range perms {
				ids[i] = primitive.NewObjectID().Hex()
				for _, v := range p {
					r.publish(t, version(ids[i], v))
				}
				for _, v := range p { // duplicate delivery of every version
					r.publish(t, version(ids[i], v))
				}
			}
			for i, p := range perms {
				took := r.waitReplica(t, want(ids[i], 3), 20*time.Second)
				if took > time.Second {
					t.Logf("order %v took %v", p, took)
				}
			}
		})
	}
}

// TestReplicaGapFallsBackToRedelivery: an update whose predecessor does not
// come within MaxWait is not acknowledged, and is applied on redelivery once
// the predecessor is there.
func TestReplicaGapFallsBackToRedelivery(t *testing.T) {
	r := MustStartListeners(t, 1, listeners.Options{AckWait: 2 * time.Second, MaxWait: 200 * time.Millisecond})
	id := primitive.NewObjectID().Hex()
	r.publish(t, version(id, 0))
	r.waitReplica(t, want(id, 0), 20*time.Second)
	r.publish(t, version(id, 2))
	// The gate gives up on version 2 after MaxWait: its handler returns
	// ErrGap, so the message is not acknowledged.
	first := r.rec.wait(t, "the end of version 2's first handling", 10*time.Second,
		func(d delivery) bool { return d.id == id && d.version == 2 })
	if !errors.Is(first.err, inorder.ErrGap) || first.attempt != 1 || first.redelivered {
		t.Fatalf("version 2's first handling: %+v, want attempt 1 given up on with inorder.ErrGap", first)
	}
	if got, _ := r.store.Ticket(context.Background(), id); got != want(id, 0) {
		t.Fatalf("version 2 applied on top of 0: %+v", got)
	}
	r.publish(t, version(id, 1))
	r.waitReplica(t, want(id, 1), 20*time.Second)
	took := r.waitReplica(t, want(id, 2), 20*time.Second)
	// The replica holds version 2 before the handling that wrote it has
	// returned and been recorded: wait for that.
	r.rec.wait(t, "the handling that applied version 2", 10*time.Second,
		func(d delivery) bool { return d.id == id && d.version == 2 && d.err == nil })
	if d, ok := r.rec.appliedBy(id, 2); !ok || !d.redelivered || d.attempt < 2 {
		t.Fatalf("version 2 applied by delivery %+v (recorded: %v), want a redelivery", d, ok)
	}
	t.Logf("version 2 applied %v after version 1 (by redelivery; AckWait 2s)", took)
}

// TestReplicaConvergence measures how long the replica takes to reach the
// last of 30 rapid ticket:updated events to one ticket published in shuffled
// order (reported, not asserted), against the same published in order.
func TestReplicaConvergence(t *testing.T) {
	const updates = 30
	for _, tc := range []struct {
		name      string
		instances int
		shuffle   bool
	}{
		{"in order, 1 instance", 1, false},
		{"shuffled, 1 instance", 1, true},
		{"shuffled, 2 instances", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := MustStartListeners(t, tc.instances, listeners.Options{AckWait: time.Minute, MaxWait: 50 * time.Second})
			const rounds = 3
			for round := 0; round < rounds; round++ {
				id := primitive.NewObjectID().Hex()
				r.publish(t, version(id, 0))
				r.waitReplica(t, want(id, 0), 20*time.Second)
				vs := make([]int64, updates)
				for i := range vs {
					vs[i] = int64(i + 1)
				}
				if tc.shuffle {
					rand.Shuffle(len(vs), func(i, j int) { vs[i], vs[j] = vs[j], vs[i] })
				}
				start := time.Now()
				for _, v := range vs {
					r.publish(t, version(id, v))
				}
				published := time.Since(start)
				r.waitReplica(t, want(id, updates), 30*time.Second)
				t.Logf("%s: %d updates converged %v after the first publish (publishing took %v)",
					tc.name, updates, time.Since(start).Round(time.Millisecond), published.Round(time.Millisecond))
			}
		})
	}
}
