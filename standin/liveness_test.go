package standin

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// answerBound is how long any write may go unanswered before the stand-in
// counts as stalled. It is a bound on hanging, not a timing target: a
// healthy stand-in answers these writes in milliseconds, even on a loaded
// machine.
const answerBound = 30 * time.Second

// The stand-in answers every write, whatever else is going on: what the
// services send under load (conditional single-document writes on a few hot
// documents, the outbox relay's multi-document removals, inserts, in two
// collections of one database), with most of the clients giving up mid-
// write (a context that expires while the write runs, so the driver closes
// the connection), and with the CPU contended by busy loops. Liveness is the
// assertion: every write of a client that waits is answered within
// answerBound, and afterwards each collection still takes writes.
func TestWritesAreAlwaysAnswered(t *testing.T) { eachBackend(t, checkLiveness) }

func checkLiveness(t *testing.T, s *Server) {
	db := mustConnect(t, s.URI())
	t.Cleanup(func() { db.Drop(context.Background()) })
	// Impatient clients have a pool of their own, as a service whose
	// requests time out does: their connections are the ones closed
	// mid-write.
	impatient := mustConnect(t, s.URI()).Client().Database(db.Name())
	ctx := context.Background()

	const hot = 8
	// ballast documents make each conditional write cost what it does in
	// a service's collection after a while (FerretDB pushes only a bare
	// {_id} filter down to SQLite: the others scan); impatient clients give
	// up after 1 to impatientMaxMS, so that many give up while their write
	// waits or runs.
	const ballast, impatientMaxMS = 1000, 300
	colls := []string{"records", "replica"}
	ids := map[string][]primitive.ObjectID{}
	for _, c := range colls {
		for range hot {
			id := primitive.NewObjectID()
			ids[c] = append(ids[c], id)
			if _, err := db.Collection(c).InsertOne(ctx, bson.M{"_id": id, "version": 0, "outbox": bson.A{}, "outboxPending": 0}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Ballast: conditional filters ({_id, version}) are not pushed down
	// to SQLite, so each such write scans the collection, as in a service's
	// database after a while.
	for _, c := range colls {
		var docs []any
		for range ballast {
			docs = append(docs, bson.M{"_id": primitive.NewObjectID(), "version": 3, "title": "ballast", "outbox": bson.A{}, "outboxPending": 0})
		}
		if _, err := db.Collection(c).InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}

	stopBusy := make(chan struct{})
	var busy sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)/2) {
		busy.Add(1)
		go func() {
			defer busy.Done()
			for x := 0; ; x++ {
				if x%1_000_000 == 0 {
					select {
					case <-stopBusy:
						return
					default:
					}
				}
			}
		}()
	}
	defer func() { close(stopBusy); busy.Wait() }()

	var (
		answered, gaveUp atomic.Int64
		slowest          atomic.Int64 // longest a patient write waited, in ns
		errMu            sync.Mutex
		failures         []error
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, err)
		}
	}
	// op runs one write. A patient client waits up to answerBound; an
	// impatient one gives up after 1 to 20 ms, usually mid-write.
	op := func(patient bool, kind string, write func(ctx context.Context, db *mongo.Database) error) {
		d, on := answerBound, db
		if !patient {
			d, on = time.Duration(1+rand.IntN(impatientMaxMS))*time.Millisecond, impatient
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		start := time.Now()
		err := write(ctx, on)
		if took := int64(time.Since(start)); patient && took > slowest.Load() {
			slowest.Store(took) // racy max: a report, not an assertion
		}
		switch {
		case err == nil || mongo.IsDuplicateKeyError(err):
			answered.Add(1)
		case !patient:
			gaveUp.Add(1)
		case errors.Is(err, context.DeadlineExceeded) || mongo.IsTimeout(err):
			fail(fmt.Errorf("%s: not answered within %v (stalled): %w", kind, time.Since(start).Round(time.Millisecond), err))
		default:
			fail(fmt.Errorf("%s: %w", kind, err))
		}
	}
	pick := func() (*mongo.Collection, primitive.ObjectID, string) {
		c := colls[rand.IntN(len(colls))]
		return db.Collection(c), ids[c][rand.IntN(hot)], c
	}
	writes := map[string]func(ctx context.Context, db *mongo.Database) error{
		// The stores' compare-and-swap: read the version, write on it.
		"conditional update": func(ctx context.Context, on *mongo.Database) error {
			coll, id, name := pick()
			var doc struct{ Version int }
			if err := coll.FindOne(ctx, bson.M{"_id": id}).Decode(&doc); err != nil {
				return err
			}
			entry := bson.M{"id": primitive.NewObjectID(), "subject": "record:updated", "data": "x"}
			_, err := on.Collection(name).UpdateOne(ctx, bson.M{"_id": id, "version": doc.Version},
				bson.M{"$inc": bson.M{"version": 1, "outboxPending": 1}, "$push": bson.M{"outbox": entry}})
			return err
		},
		// A reservation: findAndModify on a condition.
		"findAndModify": func(ctx context.Context, on *mongo.Database) error {
			_, id, name := pick()
			err := on.Collection(name).FindOneAndUpdate(ctx, bson.M{"_id": id, "version": bson.M{"$gte": 0}},
				bson.M{"$set": bson.M{"orderId": primitive.NewObjectID()}}).Err()
			if errors.Is(err, mongo.ErrNoDocuments) {
				return nil
			}
			return err
		},
		// The relay's removal: one bulk write over up to 8 documents.
		"bulk removal": func(ctx context.Context, on *mongo.Database) error {
			_, _, name := pick()
			var models []mongo.WriteModel
			for _, i := range rand.Perm(hot)[:1+rand.IntN(hot)] {
				models = append(models, mongo.NewUpdateOneModel().
					SetFilter(bson.M{"_id": ids[name][i], "outboxPending": bson.M{"$gt": 0}}).
					SetUpdate(bson.M{"$pop": bson.M{"outbox": -1}, "$inc": bson.M{"outboxPending": -1}}))
			}
			_, err := on.Collection(name).BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
			return err
		},
		"insert": func(ctx context.Context, on *mongo.Database) error {
			_, _, name := pick()
			_, err := on.Collection(name).InsertOne(ctx, bson.M{"_id": primitive.NewObjectID(), "version": 0})
			return err
		},
	}
	kinds := []string{"conditional update", "findAndModify", "bulk removal", "insert"}

	const patientWorkers, impatientWorkers, runFor = 2, 8, 15 * time.Second
	stop := time.Now().Add(runFor)
	var wg sync.WaitGroup
	for w := range patientWorkers + impatientWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			patient := w < patientWorkers
			for n := 0; time.Now().Before(stop); n++ {
				kind := kinds[(w+n)%len(kinds)]
				op(patient, kind, writes[kind])
			}
		}()
	}
	// If a write hangs past its bound, its worker reports it; this watchdog
	// only keeps the test from hanging with it when the driver does not
	// give up (a server that never answers).
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(runFor + 2*answerBound):
		t.Fatalf("workers still waiting %v after the run: the stand-in stalled", 2*answerBound)
	}
	for _, err := range failures {
		t.Error(err)
	}
	if answered.Load() == 0 {
		t.Fatal("no write was answered")
	}
	t.Logf("%d writes answered, %d abandoned by impatient clients; the slowest answer took %v",
		answered.Load(), gaveUp.Load(), time.Duration(slowest.Load()).Round(time.Millisecond))

	// Abandoned writes leave no turn behind: each kind of write is
	// answered again once the load is gone.
	failures = nil
	for _, kind := range kinds {
		for range len(colls) {
			op(true, kind+" after the run", writes[kind])
		}
	}
	for _, err := range failures {
		t.Error(err)
	}
}

// The root cause of the stall, deterministically: a write whose client gave
// up while it waited for its turn is never run. The front used to run each
// such write once its turn came, for nobody; under load they queued faster
// than they ran, and every write of the collection waited behind the queue
// (TestWritesAreAlwaysAnswered). Here the test holds the collection's turn
// itself, so that the abandoned writes certainly wait, then checks that a
// patient write is answered at once after the turn is given back and that
// none of the abandoned writes changed the document.
func TestAbandonedWritesNeverRun(t *testing.T) { eachBackend(t, checkAbandonedWrites) }

func checkAbandonedWrites(t *testing.T, s *Server) {
	db := mustConnect(t, s.URI())
	t.Cleanup(func() { db.Drop(context.Background()) })
	ctx := context.Background()
	coll := db.Collection("abandoned")
	id := primitive.NewObjectID()
	if _, err := coll.InsertOne(ctx, bson.M{"_id": id, "runs": 0}); err != nil {
		t.Fatal(err)
	}
	release, err := s.front.collLock(db.Name()+".abandoned").lock(ctx, scope{whole: true})
	if err != nil {
		t.Fatal(err)
	}
	const abandoned = 20
	var wg sync.WaitGroup
	for range abandoned {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each has a pool of its own, as clients of several services do.
			own := mustConnect(t, s.URI()).Collection("abandoned")
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			if _, err := own.UpdateOne(ctx, bson.M{"_id": id}, bson.M{"$inc": bson.M{"runs": 1}}); err == nil {
				t.Error("a write was answered while the collection's turn was held")
			}
		}()
	}
	wg.Wait() // every abandoned client has given up and closed its connection
	// The front notices a client's close on its own goroutine: wait until
	// no write waits for its turn any more (or fail after the bound).
	for deadline := time.Now().Add(answerBound); s.front.waiting.Load() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d abandoned writes still wait for their turn %v after their clients left", s.front.waiting.Load(), answerBound)
		}
		time.Sleep(10 * time.Millisecond) // polling the count, not standing in for an event
	}
	answered := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, answerBound)
		defer cancel()
		_, err := coll.UpdateOne(ctx, bson.M{"_id": id}, bson.M{"$set": bson.M{"patient": true}})
		answered <- err
	}()
	release()
	if err := <-answered; err != nil {
		t.Fatalf("the patient write, queued after %d abandoned ones: %v", abandoned, err)
	}
	var doc struct {
		Runs    int
		Patient bool
	}
	if err := coll.FindOne(ctx, bson.M{"_id": id}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Runs != 0 || !doc.Patient {
		t.Errorf("after the patient write: %+v; want runs 0 (no abandoned write ran) and patient true", doc)
	}
}

// On SQLite every collection table gets the index on FerretDB's own _id
// expression, and SQLite uses it for the statement every FerretDB write
// ends with (UPDATE ... WHERE _ferretdb_sjson->'$._id' = ?).
func TestSQLiteIDLookupsUseAnIndex(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(context.Background(), Options{SQLiteDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	db := mustConnect(t, s.URI())
	ctx := context.Background()
	if _, err := db.Collection("lookups").InsertOne(ctx, bson.M{"_id": primitive.NewObjectID()}); err != nil {
		t.Fatal(err)
	}
	conn, err := sql.Open("sqlite", "file:"+filepath.Join(dir, db.Name()+".sqlite")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var table string
	if err := conn.QueryRow(`SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'lookups%'`).Scan(&table); err != nil {
		t.Fatal(err)
	}
	// The indexer runs every second: wait for its index, observably.
	deadline := time.Now().Add(answerBound)
	for {
		var n int
		if err := conn.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?`, "standin_id_"+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no _id index on %s after %v", table, answerBound)
		}
		time.Sleep(50 * time.Millisecond) // polling the catalogue, not standing in for an event
	}
	var plan strings.Builder
	rows, err := conn.Query(fmt.Sprintf(`EXPLAIN QUERY PLAN UPDATE %s SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?`, quoteSQLite(table)), "{}", `"x"`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(detail + "; ")
	}
	rows.Close()
	if !strings.Contains(plan.String(), "USING INDEX standin_id_"+table) {
		t.Fatalf("FerretDB's update by _id does not use the index: %s", plan.String())
	}
}
