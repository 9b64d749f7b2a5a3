package standin

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// opMsgWith builds an OP_MSG: the body and, optionally, one document
// sequence (as drivers send "updates", "deletes" and "documents").
func opMsgWith(t *testing.T, body bson.D, seqName string, seq ...bson.D) []byte {
	t.Helper()
	b := make([]byte, 20)
	putU32(b[12:], opMsg)
	if seqName != "" {
		var docs []byte
		for _, d := range seq {
			raw, err := bson.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, raw...)
		}
		id := append([]byte(seqName), 0)
		b = append(b, 1)
		b = append(b, u32(uint32(4+len(id)+len(docs)))...)
		b = append(append(b, id...), docs...)
	}
	raw, err := bson.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	b = append(append(b, 0), raw...)
	putU32(b[0:], uint32(len(b)))
	return b
}

func TestWriteScope(t *testing.T) {
	a, b := primitive.NewObjectID(), primitive.NewObjectID()
	upd := func(q bson.D) bson.D {
		return bson.D{{Key: "q", Value: q}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}}}
	}
	body := func(cmd string, extra ...bson.E) bson.D {
		return append(bson.D{{Key: cmd, Value: "c"}}, append(extra, bson.E{Key: "$db", Value: "d"})...)
	}
	for _, tc := range []struct {
		name  string
		cmd   string
		msg   []byte
		whole bool
		docs  int
	}{
		{"insert", "insert", opMsgWith(t, body("insert"), "documents", bson.D{{Key: "_id", Value: a}}), false, 0},
		{"findAndModify on _id and version", "findandmodify",
			opMsgWith(t, body("findAndModify", bson.E{Key: "query", Value: bson.D{{Key: "_id", Value: a}, {Key: "rev", Value: 3}}}), ""), false, 1},
		{"findAndModify without _id", "findandmodify",
			opMsgWith(t, body("findAndModify", bson.E{Key: "query", Value: bson.D{{Key: "rev", Value: 3}}}), ""), true, 0},
		{"update statements on two documents", "update",
			opMsgWith(t, body("update"), "updates", upd(bson.D{{Key: "_id", Value: a}}), upd(bson.D{{Key: "_id", Value: b}, {Key: "outbox", Value: bson.D{{Key: "$all", Value: bson.A{1}}}}})), false, 2},
		{"update with the statements in the body", "update",
			opMsgWith(t, body("update", bson.E{Key: "updates", Value: bson.A{upd(bson.D{{Key: "_id", Value: "s"}})}}), ""), false, 1},
		{"update with _id $in", "update",
			opMsgWith(t, body("update"), "updates", upd(bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{a, b}}}}})), true, 0},
		{"update with a document _id", "update",
			opMsgWith(t, body("update"), "updates", upd(bson.D{{Key: "_id", Value: bson.D{{Key: "k", Value: 1}}}})), false, 1},
		{"one statement without _id makes it whole", "update",
			opMsgWith(t, body("update"), "updates", upd(bson.D{{Key: "_id", Value: a}}), upd(bson.D{{Key: "state", Value: "x"}})), true, 0},
		{"delete many", "delete",
			opMsgWith(t, body("delete"), "deletes", bson.D{{Key: "q", Value: bson.D{{Key: "doneAt", Value: bson.D{{Key: "$lt", Value: 1}}}}}, {Key: "limit", Value: 0}}), true, 0},
		{"delete one by _id", "delete",
			opMsgWith(t, body("delete"), "deletes", bson.D{{Key: "q", Value: bson.D{{Key: "_id", Value: a}}}, {Key: "limit", Value: 1}}), false, 1},
		{"unknown command", "create", opMsgWith(t, body("create"), ""), true, 0},
		{"not op_msg", "update", []byte{16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd4, 7, 0, 0}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := writeScope(tc.msg, tc.cmd)
			if s.whole != tc.whole || len(s.docs) != tc.docs {
				t.Fatalf("writeScope = %+v, want whole %v with %d documents", s, tc.whole, tc.docs)
			}
		})
	}
	// A document sequence whose document overruns it: the whole collection.
	bad := opMsgWith(t, body("update"), "updates", upd(bson.D{{Key: "_id", Value: a}}))
	putU32(bad[16+4+1+4+len("updates\x00"):], 0xFFFF)
	if s := writeScope(bad, "update"); !s.whole {
		t.Fatalf("writeScope of a malformed sequence = %+v, want the whole collection", s)
	}
	// The same _id gives the same key, another one another key.
	k := func(id any) string {
		return writeScope(opMsgWith(t, body("update"), "updates", upd(bson.D{{Key: "_id", Value: id}})), "update").docs[0]
	}
	if k(a) != k(a) || k(a) == k(b) || k("1") == k(1) {
		t.Fatal("document keys do not follow the _id (value and type)")
	}
}

// Races on several documents of one collection at once: document writes
// run side by side, and each race still has exactly one winner; meanwhile a
// whole-collection write (updateMany without _id) excludes them and sees a
// consistent collection.
func TestRacesOnSeveralDocumentsOfOneCollection(t *testing.T) {
	s := MustStart(t)
	db := mustConnect(t, s.URI())
	ctx := context.Background()
	coll := db.Collection("docs")
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if wins, err := versionRace(ctx, coll, 20); err != nil || wins != 1 {
				t.Errorf("updateOne on version: %d modified (err %v), want exactly 1", wins, err)
			}
			if wins, err := reserveRace(ctx, coll, 20); err != nil || wins != 1 {
				t.Errorf("findOneAndUpdate reservation: %d winners (err %v), want exactly 1", wins, err)
			}
		}()
	}
	var sweeps atomic.Int64
	stop := make(chan struct{})
	swept := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				swept <- nil
				return
			default:
			}
			if _, err := coll.UpdateMany(ctx, bson.M{"sweep": bson.M{"$exists": false}}, bson.M{"$set": bson.M{"seen": true}}); err != nil {
				swept <- err
				return
			}
			sweeps.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	close(stop)
	if err := <-swept; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d whole-collection sweeps during the races", sweeps.Load())
}

// The collection lock: writes of different documents hold it together, a
// whole-collection write waits for them and excludes them, and a wait ends
// when its context does, leaving nothing held.
func TestCollLock(t *testing.T) {
	ctx := context.Background()
	c := newCollLock()
	lock := func(ctx context.Context, s scope) func() {
		t.Helper()
		unlock, err := c.lock(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return unlock
	}
	// Whether a lock is free now: an attempt with an ended context
	// succeeds only if it does not have to wait.
	free := func(s scope) bool {
		ended, cancel := context.WithCancel(ctx)
		cancel()
		unlock, err := c.lock(ended, s)
		if err != nil {
			return false
		}
		unlock()
		return true
	}
	docA := lock(ctx, scope{docs: []string{"a"}})
	docB := lock(ctx, scope{docs: []string{"b", "a2"}}) // another document: no wait
	if free(scope{whole: true}) || free(scope{docs: []string{"a"}}) {
		t.Fatal("a write ran beside a write of the same document or beside document writes")
	}
	if !free(scope{docs: []string{"c"}}) || !free(scope{}) {
		t.Fatal("a write of another document or an insert waited for document writes")
	}
	got := make(chan func())
	go func() {
		unlock, err := c.lock(ctx, scope{whole: true})
		if err != nil {
			t.Error(err)
		}
		got <- unlock
	}()
	docA()
	docB()
	unlock := <-got
	if free(scope{docs: []string{"c"}}) || free(scope{}) {
		t.Fatal("a document write or an insert ran beside a whole-collection write")
	}
	// A wait given up leaves nothing held.
	gaveUp, cancel := context.WithCancel(ctx)
	waited := make(chan error)
	go func() { _, err := c.lock(gaveUp, scope{docs: []string{"a", "b"}}); waited <- err }()
	cancel()
	if err := <-waited; err == nil {
		t.Fatal("a lock was taken beside a whole-collection write")
	}
	unlock()
	for _, s := range []scope{{whole: true}, {docs: []string{"a"}}, {docs: []string{"b"}}, {}} {
		if !free(s) {
			t.Fatalf("%+v still held after every holder released and the waiter gave up", s)
		}
	}
}
