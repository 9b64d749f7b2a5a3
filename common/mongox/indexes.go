package mongox

import (
	"context"

	"go.mongodb.org/mongo-driver/mongo"
)

// EnsureIndexes creates models on coll one createIndexes command at a time.
// Why not CreateMany: FerretDB v1.24 (the MongoDB stand-in) panics when one
// command names two or more indexes that already exist, which is every
// restart of a service. One at a time is idempotent on MongoDB and FerretDB.
func EnsureIndexes(ctx context.Context, coll *mongo.Collection, models ...mongo.IndexModel) error {
	for _, m := range models {
		if _, err := coll.Indexes().CreateOne(ctx, m); err != nil {
			return Classify(err)
		}
	}
	return nil
}
