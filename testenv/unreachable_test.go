package testenv

import (
	"context"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
)

func TestUnreachableMongoFails(t *testing.T) {
	coll := UnreachableMongoDatabase(t, "x").Collection("c")
	err := coll.FindOne(context.Background(), bson.M{}).Err()
	if err == nil || errors.Is(err, mongo.ErrNoDocuments) {
		t.Fatalf("find on an unreachable server: %v", err)
	}
}
