package mongox_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestObjectID(t *testing.T) {
	good := primitive.NewObjectID()
	cases := map[string]bool{
		good.Hex():                    true,
		"":                            false,
		"abc":                         false,
		"zzzzzzzzzzzzzzzzzzzzzzzz":    false,
		good.Hex() + "00":             false,
		"64b7f0c2a1b2c3d4e5f6071":     false,
		"64B7F0C2A1B2C3D4E5F60718":    true,
		"64b7f0c2-1b2c3d4e5f60718abc": false,
	}
	for in, ok := range cases {
		id, got := mongox.ObjectID(in)
		if got != ok {
			t.Errorf("ObjectID(%q) ok = %v", in, got)
		}
		if ok && in == good.Hex() && id != good {
			t.Errorf("ObjectID(%q) = %v", in, id)
		}
	}
}

func TestClassify(t *testing.T) {
	unavailable := []error{
		context.DeadlineExceeded,
		fmt.Errorf("find: %w", context.DeadlineExceeded),
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")},
		mongo.ErrClientDisconnected,
		// What a write gets when the driver's monitor found the server gone
		// and cleared the pool while the write waited for a connection (the
		// driver's error type is unexported; this one has its method set).
		fmt.Errorf("replace: %w", poolCleared{}),
	}
	for _, err := range unavailable {
		if got := mongox.Classify(err); !apperr.Is(got, apperr.Unavailable) || !errors.Is(got, err) {
			t.Errorf("Classify(%v) = %v, want unavailable wrapping it", err, got)
		}
	}
	unchanged := []error{
		errors.New("some bug"),
		mongo.ErrNoDocuments,
		mongo.CommandError{Code: 2, Message: "bad query"},
		apperr.ErrNotFound,
		context.Canceled, // the client went away: not the database's fault
	}
	for _, err := range unchanged {
		if got := mongox.Classify(err); apperr.Is(got, apperr.Unavailable) || got.Error() != err.Error() {
			t.Errorf("Classify(%v) = %v, want unchanged", err, got)
		}
	}
	if mongox.Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
}

// poolCleared is shaped like the driver's poolClearedError.
type poolCleared struct{}

func (poolCleared) Error() string {
	return "connection pool for 127.0.0.1:1 was cleared because another operation failed with: EOF"
}
func (poolCleared) Retryable() bool { return true }

func TestConnectToNothingIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _, err := mongox.Connect(ctx, testenv.UnreachableMongoURI(t), "x")
	if !apperr.Is(err, apperr.Unavailable) {
		t.Fatalf("Connect to a closed port = %v, want unavailable", err)
	}
}

func TestConnectAndPing(t *testing.T) {
	m := testenv.Mongo(t)
	ctx := context.Background()
	client, db, err := mongox.Connect(ctx, m.URI, m.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	if db.Name() != m.Database {
		t.Fatalf("database %q", db.Name())
	}
	if err := mongox.Ping(client)(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, _, err := mongox.Connect(ctx, "not-a-uri", "x"); err == nil {
		t.Fatal("Connect accepted a bad URI")
	}
	client.Disconnect(ctx)
	if err := mongox.Ping(client)(ctx); !apperr.Is(err, apperr.Unavailable) {
		t.Fatalf("Ping after Disconnect = %v, want unavailable", err)
	}
}

// Of 30 concurrent updates on one version exactly one wins (the store
// contract the services' optimistic concurrency depends on).
func TestConditionalUpdateHasOneWinner(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("things")
	ctx := context.Background()
	for trial := range 3 {
		id := primitive.NewObjectID()
		if _, err := coll.InsertOne(ctx, bson.M{"_id": id, "version": int64(0)}); err != nil {
			t.Fatal(err)
		}
		var wins, conflicts atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := coll.UpdateOne(ctx, bson.M{"_id": id, "version": int64(0)},
					bson.M{"$set": bson.M{"winner": i}, "$inc": bson.M{"version": int64(1)}})
				switch {
				case err != nil:
					t.Errorf("update: %v", err)
				case res.MatchedCount == 1:
					wins.Add(1)
				default:
					conflicts.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != 29 {
			t.Fatalf("trial %d: %d wins, %d conflicts; want 1 and 29", trial, wins.Load(), conflicts.Load())
		}
	}
}

func TestIsDuplicateKey(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("users")
	ctx := context.Background()
	if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "email", Value: 1}}, Options: options.Index().SetUnique(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.M{"email": "a@b.c"}); err != nil {
		t.Fatal(err)
	}
	_, err := coll.InsertOne(ctx, bson.M{"email": "a@b.c"})
	if !mongox.IsDuplicateKey(err) {
		t.Fatalf("second insert: %v, want a duplicate key error", err)
	}
	if mongox.IsDuplicateKey(errors.New("other")) || mongox.IsDuplicateKey(nil) {
		t.Fatal("IsDuplicateKey on other errors")
	}
}

// A service creates its indexes at every start; the second start must not
// fail (FerretDB v1.24 crashes on a createIndexes naming several existing
// indexes, which is why EnsureIndexes sends them one at a time).
func TestEnsureIndexesTwice(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("things")
	models := []mongo.IndexModel{
		{Keys: bson.D{{Key: "a", Value: 1}}, Options: options.Index().SetUnique(true)},
		{Keys: bson.D{{Key: "b", Value: 1}, {Key: "c", Value: -1}}},
	}
	for i := 0; i < 2; i++ {
		if err := mongox.EnsureIndexes(context.Background(), coll, models...); err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
	}
	if _, err := coll.InsertOne(context.Background(), bson.M{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(context.Background(), bson.M{"a": 1}); !mongox.IsDuplicateKey(err) {
		t.Fatalf("unique index not in force: %v", err)
	}
}
