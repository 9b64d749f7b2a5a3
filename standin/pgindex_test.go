package standin

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// On the PostgreSQL backend every collection table gets the GIN index that
// serves FerretDB's _id lookups, and PostgreSQL uses it for them. Needs a
// PostgreSQL database it may fill: STANDIN_TEST_POSTGRESQL_URL (.ci/run sets
// it when PostgreSQL is installed); skipped without.
func TestPostgreSQLIDLookupsUseAnIndex(t *testing.T) {
	url := os.Getenv("STANDIN_TEST_POSTGRESQL_URL")
	if url == "" {
		t.Skip("STANDIN_TEST_POSTGRESQL_URL not set")
	}
	ctx := context.Background()
	s, err := Start(ctx, Options{Handler: "postgresql", PostgreSQLURL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	db := mustConnect(t, s.URI())
	t.Cleanup(func() { db.Drop(context.Background()) })
	coll := db.Collection("lookups")
	var docs []any
	var ids []primitive.ObjectID
	for i := 0; i < 2000; i++ {
		id := primitive.NewObjectID()
		ids = append(ids, id)
		docs = append(docs, bson.M{"_id": id, "n": i})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var schema, table string
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := conn.QueryRow(ctx, `
			SELECT n.nspname, c.relname FROM pg_index i
			JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND ic.relname LIKE 'standin_id_%'`, db.Name()).Scan(&schema, &table)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no _id index on the collection's table after 10 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, `ANALYZE `+pgx.Identifier{schema, table}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	// The lookup as FerretDB sends it (key and value as parameters).
	var plan string
	err = conn.QueryRow(ctx, `EXPLAIN (FORMAT TEXT) SELECT _jsonb FROM `+pgx.Identifier{schema, table}.Sanitize()+
		` WHERE _jsonb->$1 @> $2`, "_id", `"`+ids[1234].Hex()+`"`).Scan(&plan)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan: %s", plan)
	if !strings.Contains(plan, "Bitmap") && !strings.Contains(plan, "Index") {
		t.Fatalf("the _id lookup does not use an index: %s", plan)
	}
	var got bson.M
	if err := coll.FindOne(ctx, bson.M{"_id": ids[1234]}).Decode(&got); err != nil || got["n"] != int32(1234) {
		t.Fatalf("find by _id = %v, %v", got, err)
	}
	// Writes are serialised per document: races on one document still
	// have exactly one winner.
	if wins, err := versionRace(ctx, coll, 30); err != nil || wins != 1 {
		t.Fatalf("updateOne on version: %d modified (err %v), want exactly 1", wins, err)
	}
	if wins, err := reserveRace(ctx, coll, 30); err != nil || wins != 1 {
		t.Fatalf("findOneAndUpdate reservation: %d winners (err %v), want exactly 1", wins, err)
	}
}
