package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// The store contract: what the services' optimistic concurrency and ticket
// reservations rely on, checked against whatever MongoDB the tests use (the
// official image, or the stand-in in a container or in-process).

const racers = 30

// race starts n copies of f at once and counts the wins.
func race(t *testing.T, n int, f func(i int) (bool, error)) int64 {
	t.Helper()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		won   atomic.Int64
		mu    sync.Mutex
		errs  error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := f(i)
			if err != nil {
				mu.Lock()
				errs = errors.Join(errs, err)
				mu.Unlock()
			}
			if ok {
				won.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if errs != nil {
		t.Fatal(errs)
	}
	return won.Load()
}

func TestStoreContractConditionalUpdateHasOneWinner(t *testing.T) {
	coll := mongoDatabase(t).Collection("tickets")
	ctx := context.Background()
	for trial := range 3 {
		id := primitive.NewObjectID()
		if _, err := coll.InsertOne(ctx, bson.M{"_id": id, "version": 0}); err != nil {
			t.Fatal(err)
		}
		wins := race(t, racers, func(int) (bool, error) {
			r, err := coll.UpdateOne(ctx, bson.M{"_id": id, "version": 0}, bson.M{"$inc": bson.M{"version": 1}})
			if err != nil {
				return false, err
			}
			return r.ModifiedCount == 1, nil
		})
		var doc struct{ Version int }
		if err := coll.FindOne(ctx, bson.M{"_id": id}).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		if wins != 1 || doc.Version != 1 {
			t.Errorf("trial %d: %d of %d updateOne({_id, version: 0}, $inc) modified, version now %d; want exactly 1 and version 1", trial, wins, racers, doc.Version)
		}
	}
}

func TestStoreContractReservationHasOneWinner(t *testing.T) {
	coll := mongoDatabase(t).Collection("tickets")
	ctx := context.Background()
	for trial := range 3 {
		id := primitive.NewObjectID()
		if _, err := coll.InsertOne(ctx, bson.M{"_id": id, "orderId": nil}); err != nil {
			t.Fatal(err)
		}
		var winner atomic.Value
		wins := race(t, racers, func(i int) (bool, error) {
			order := fmt.Sprint("order-", i)
			err := coll.FindOneAndUpdate(ctx, bson.M{"_id": id, "orderId": nil}, bson.M{"$set": bson.M{"orderId": order}}).Err()
			if errors.Is(err, mongo.ErrNoDocuments) {
				return false, nil
			}
			if err == nil {
				winner.Store(order)
			}
			return err == nil, err
		})
		var doc struct {
			OrderID string `bson:"orderId"`
		}
		if err := coll.FindOne(ctx, bson.M{"_id": id}).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		if wins != 1 || doc.OrderID != winner.Load() {
			t.Errorf("trial %d: %d of %d findOneAndUpdate({_id, orderId: null}) won, stored orderId %q (last winner %v); want exactly 1, stored", trial, wins, racers, doc.OrderID, winner.Load())
		}
	}
}

func TestStoreContractUniqueIndex(t *testing.T) {
	coll := mongoDatabase(t).Collection("users")
	ctx := context.Background()
	_, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "email", Value: 1}}, Options: options.Index().SetUnique(true)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.M{"email": "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.M{"email": "a@example.com"}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("duplicate insert: %v, want a duplicate key error", err)
	}
	// Concurrent inserts of one new key: exactly one succeeds.
	wins := race(t, racers, func(int) (bool, error) {
		_, err := coll.InsertOne(ctx, bson.M{"email": "b@example.com"})
		if mongo.IsDuplicateKeyError(err) {
			return false, nil
		}
		return err == nil, err
	})
	if wins != 1 {
		t.Fatalf("%d of %d concurrent inserts of one unique key succeeded, want 1", wins, racers)
	}
}
