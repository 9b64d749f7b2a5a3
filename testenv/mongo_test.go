package testenv_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"

	"github.com/ticketing-go/ticketing/testenv"
)

func mongoDatabase(t *testing.T) *mongo.Database { return testenv.MongoDatabase(t) }

func TestMongoDatabasePerTest(t *testing.T) {
	a, b := testenv.Mongo(t), testenv.Mongo(t)
	if a.Database == b.Database || a.Database == "" {
		t.Fatalf("databases %q and %q: want two distinct names", a.Database, b.Database)
	}
	if a.URI != b.URI {
		t.Errorf("shared server expected: %s != %s", a.URI, b.URI)
	}
	db := testenv.MongoDatabase(t)
	ctx := context.Background()
	if _, err := db.Collection("c").InsertOne(ctx, bson.M{"_id": "x", "n": 1}); err != nil {
		t.Fatal(err)
	}
	var doc struct{ N int }
	if err := db.Collection("c").FindOne(ctx, bson.M{"_id": "x"}).Decode(&doc); err != nil || doc.N != 1 {
		t.Fatalf("read back n=%d err=%v", doc.N, err)
	}
	other := testenv.MongoDatabase(t)
	if n, err := other.Collection("c").CountDocuments(ctx, bson.M{}); err != nil || n != 0 {
		t.Fatalf("another test's database sees %d documents (err %v), want 0", n, err)
	}
}
