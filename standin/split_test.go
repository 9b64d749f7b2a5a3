package standin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// A bulk write of more statements than FerretDB may run in one command is
// run in parts, and answered as MongoDB answers it: counts over every
// statement, error and upsert indexes of the client's statements, an
// ordered bulk stopping at its first error.
func TestLargeBulkWritesAnswerAsOne(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		coll := mustConnect(t, s.URI()).Collection(fmt.Sprintf("bulk_%d", time.Now().UnixNano()))
		t.Cleanup(func() { coll.Drop(context.Background()) })
		const n = 100
		docs := make([]any, n)
		for i := range docs {
			docs[i] = bson.M{"_id": i, "v": 0, "s": "x"}
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
		incs := func(bad int) []mongo.WriteModel {
			var ms []mongo.WriteModel
			for i := range n {
				field := "v"
				if i == bad {
					field = "s" // $inc of a string: a write error
				}
				ms = append(ms, mongo.NewUpdateOneModel().SetFilter(bson.M{"_id": i}).SetUpdate(bson.M{"$inc": bson.M{field: 1}}))
			}
			return ms
		}
		sum := func() (total, past int64) { // past: of the documents after the bad statement's
			cur, err := coll.Find(ctx, bson.M{})
			if err != nil {
				t.Fatal(err)
			}
			var all []struct {
				ID int   `bson:"_id"`
				V  int64 `bson:"v"`
			}
			if err := cur.All(ctx, &all); err != nil {
				t.Fatal(err)
			}
			for _, d := range all {
				total += d.V
				if d.ID > 48 {
					past += d.V
				}
			}
			return
		}

		res, err := coll.BulkWrite(ctx, incs(-1), options.BulkWrite().SetOrdered(false))
		if err != nil {
			t.Fatal(err)
		}
		if res.MatchedCount != n || res.ModifiedCount != n {
			t.Fatalf("matched %d, modified %d; want %d each", res.MatchedCount, res.ModifiedCount, n)
		}
		if total, _ := sum(); total != n {
			t.Fatalf("sum of v = %d after one $inc each, want %d", total, n)
		}

		// The bad statement is the first of a part: FerretDB v1 reports
		// index 0 for a statement's error wherever it is in its command
		// (measured: 0 for the sixth of 8), and stops the command there
		// even when it is unordered, so only an ordered bulk's error at a
		// part's start has an answer that the front can get right.
		const bad = 48
		_, err = coll.BulkWrite(ctx, incs(bad), options.BulkWrite().SetOrdered(true))
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || len(bwe.WriteErrors) != 1 || bwe.WriteErrors[0].Index != bad {
			t.Fatalf("ordered bulk with a bad statement %d: err = %v, want one write error at that index", bad, err)
		}
		if total, past := sum(); total != n+bad || past != n-bad-1 {
			t.Fatalf("after the ordered bulk: sum %d (want %d), past the error %d (want %d: untouched)", total, n+bad, past, n-bad-1)
		}

		var ups []mongo.WriteModel
		for i := range 20 {
			ups = append(ups, mongo.NewUpdateOneModel().SetFilter(bson.M{"_id": n + 10*i}).
				SetUpdate(bson.M{"$set": bson.M{"v": 0}}).SetUpsert(i%2 == 0))
		}
		res, err = coll.BulkWrite(ctx, ups, options.BulkWrite().SetOrdered(false))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.UpsertedIDs) != 10 {
			t.Fatalf("upserted %v, want the 10 even statements", res.UpsertedIDs)
		}
		// (FerretDB v1 numbers a command's upserts 0, 1, 2... rather than
		// by statement, so the indexes are not checked.)
		if got, err := coll.CountDocuments(ctx, bson.M{"_id": bson.M{"$gte": n}}); err != nil || got != 10 {
			t.Fatalf("documents upserted: %d (%v), want 10", got, err)
		}

		var dels []mongo.WriteModel
		for i := range 30 {
			dels = append(dels, mongo.NewDeleteOneModel().SetFilter(bson.M{"_id": i}))
		}
		res, err = coll.BulkWrite(ctx, dels, options.BulkWrite().SetOrdered(false))
		if err != nil {
			t.Fatal(err)
		}
		if res.DeletedCount != 30 {
			t.Fatalf("deleted %d, want 30", res.DeletedCount)
		}
	})
}

// Many large bulk writes at once, as several relays removing published
// entries send them, are all answered: before the front split them,
// FerretDB v1 held a PostgreSQL connection per statement until the command
// returned, and a few bulks of ~50 statements took the whole pool and
// waited for more. The bound is answerBound per bulk, far beyond what a
// part takes.
func TestConcurrentLargeBulksAreAnswered(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Server) {
		coll := mustConnect(t, s.URI()).Collection(fmt.Sprintf("bulks_%d", time.Now().UnixNano()))
		t.Cleanup(func() { coll.Drop(context.Background()) })
		const writers, stmts = 8, 64
		var docs []any
		for i := range writers * stmts {
			docs = append(docs, bson.M{"_id": i, "v": 0})
		}
		if _, err := coll.InsertMany(context.Background(), docs); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), answerBound)
				defer cancel()
				var ms []mongo.WriteModel
				for i := range stmts {
					ms = append(ms, mongo.NewUpdateOneModel().SetFilter(bson.M{"_id": w*stmts + i}).SetUpdate(bson.M{"$inc": bson.M{"v": 1}}))
				}
				res, err := coll.BulkWrite(ctx, ms, options.BulkWrite().SetOrdered(false))
				if err == nil && res.ModifiedCount != stmts {
					err = fmt.Errorf("modified %d of %d", res.ModifiedCount, stmts)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("a bulk of %d statements (%d at once): %v", stmts, writers, err)
			}
		}
	})
}
