package inorder_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/inorder"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// replicaStore is a ticket replica kept as the orders service keeps it:
// version n applies only on top of n-1, in one conditional write.
type replicaStore struct{ coll *mongo.Collection }

func (s replicaStore) apply(ctx context.Context, e events.TicketUpdated) (inorder.Outcome, error) {
	if e.Version == 0 {
		_, err := s.coll.InsertOne(ctx, bson.M{"_id": e.ID, "version": int64(0), "title": e.Title})
		if mongox.IsDuplicateKey(err) {
			return inorder.Stale, nil
		}
		if err != nil {
			return 0, mongox.Classify(err)
		}
		return inorder.Applied, nil
	}
	// Read first: a message that is still ahead costs a read per attempt,
	// not a write (writes are serialised by the stand-in).
	var cur struct {
		Version int64 `bson:"version"`
	}
	err := s.coll.FindOne(ctx, bson.M{"_id": e.ID}).Decode(&cur)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return inorder.Ahead, nil // not even created yet
	case err != nil:
		return 0, mongox.Classify(err)
	case cur.Version >= e.Version:
		return inorder.Stale, nil
	case cur.Version < e.Version-1:
		return inorder.Ahead, nil
	}
	res, err := s.coll.UpdateOne(ctx, bson.M{"_id": e.ID, "version": e.Version - 1},
		bson.M{"$set": bson.M{"version": e.Version, "title": e.Title}})
	if err != nil {
		return 0, mongox.Classify(err)
	}
	if res.ModifiedCount == 1 {
		return inorder.Applied, nil
	}
	return inorder.Stale, nil // another member applied it between our read and write
}

func (s replicaStore) version(tb testing.TB, id string) int64 {
	var cur struct {
		Version int64 `bson:"version"`
	}
	err := s.coll.FindOne(context.Background(), bson.M{"_id": id}).Decode(&cur)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return -1
	}
	if err != nil {
		tb.Fatal(err)
	}
	return cur.Version
}

type rig struct {
	store replicaStore
	pub   *events.Conn
}

// newRig starts `members` listeners of one queue group, each with its own
// connection and Gate, all applying to one replica collection.
func newRig(t *testing.T, members int) rig {
	t.Helper()
	n := testenv.EventBus(t)
	st := replicaStore{coll: testenv.MongoDatabase(t).Collection("tickets")}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	connect := func() *events.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := events.Connect(ctx, events.Config{Bus: n.Bus, URL: n.URL, ClusterID: n.ClusterID, ClientID: events.NewClientID("inorder"),
			SubjectPrefix: n.SubjectPrefix, CloseGrace: time.Second}, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	for range members {
		gate := inorder.NewGate(40 * time.Second)
		c := connect()
		h := events.Decode(func(ctx context.Context, e events.TicketUpdated, _ *events.Msg) error {
			return gate.ApplyVersion(ctx, e.ID, e.Version, func(ctx context.Context, _ *inorder.Attempt) (inorder.Outcome, error) { return st.apply(ctx, e) })
		})
		for _, subj := range []events.Subject{events.SubjectTicketCreated, events.SubjectTicketUpdated} {
			if err := c.Subscribe(events.Subscription{Subject: subj, QueueGroup: "orders-service", AckWait: time.Minute}, h); err != nil {
				t.Fatal(err)
			}
		}
	}
	return rig{store: st, pub: connect()}
}

func (r rig) publish(t *testing.T, id string, v int64) {
	t.Helper()
	var e events.Event = events.TicketUpdated{ID: id, Version: v, Title: "v" + string(rune('0'+v%10))}
	if v == 0 {
		e = events.TicketCreated{ID: id, Version: 0, Title: "v0"}
	}
	if err := r.pub.Publish(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

func waitVersion(t *testing.T, st replicaStore, id string, want int64, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for st.version(t, id) != want {
		if time.Since(start) > within {
			t.Fatalf("replica %s at version %d, want %d after %v", id, st.version(t, id), want, within)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func TestReplicaConvergesOnPermutations(t *testing.T) {
	r := newRig(t, 1)
	perms := [][]int64{{0, 1, 3, 2}, {0, 3, 2, 1}, {2, 1, 0, 3}, {3, 2, 1, 0}, {0, 2, 3, 1}, {1, 0, 0, 3, 2, 2}}
	for i, p := range perms {
		id := "perm-" + string(rune('a'+i))
		for j, v := range p {
			r.publish(t, id, v)
			if j == len(p)-1 {
				// The last missing predecessor has just been published. The
				// deadline is below AckWait (a minute): redelivery cannot be
				// what makes the replica converge.
				took := waitVersion(t, r.store, id, 3, 30*time.Second)
				t.Logf("%v converged %v after the last publish", p, took)
			}
		}
	}
}

func TestReplicaConvergesOnThirtyShuffledUpdates(t *testing.T) {
	for _, members := range []int{1, 2} {
		r := newRig(t, members)
		id := "shuffled-" + string(rune('0'+members))
		r.publish(t, id, 0)
		waitVersion(t, r.store, id, 0, 10*time.Second)
		vs := make([]int64, 30)
		for i := range vs {
			vs[i] = int64(i + 1)
		}
		rand.Shuffle(len(vs), func(i, j int) { vs[i], vs[j] = vs[j], vs[i] })
		start := time.Now()
		for _, v := range vs {
			r.publish(t, id, v)
		}
		published := time.Since(start)
		took := waitVersion(t, r.store, id, 30, 30*time.Second)
		t.Logf("%d member(s): 30 updates published in shuffled order in %v; replica at v30 %v after the last publish (%v after the first)",
			members, published, took, published+took)
	}
}
