package standin

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lookups by _id on the PostgreSQL backend.
//
// FerretDB v1 pushes a filter {_id: v} down as `_jsonb->'_id' @> v` (JSON
// containment), while the index it creates for _id is a btree on
// `_jsonb->'_id'`, which answers `=` but not `@>`. So every lookup by _id,
// and every conditional write (they look their document up first), scans
// the whole table: 2 ms of PostgreSQL time per lookup at 6,000 documents,
// growing with the collection (measured with EXPLAIN ANALYZE), where
// MongoDB does an index lookup. The benchmark's results then depended on
// how many documents its earlier phases had written.
//
// indexIDs closes that gap from outside FerretDB: it adds a GIN index on
// `_jsonb->'_id'` (which does answer `@>`; 0.7 ms for the same lookup, flat
// with size) to every FerretDB collection table that lacks one, at start
// and then every interval, so collections created later get theirs within
// a second. FerretDB does not know about the index; it only makes its
// queries faster, and it goes away with the table.
//
// The index is built with jsonb_path_ops (it answers @>, all FerretDB asks
// of it, with smaller entries) and fastupdate off. With fastupdate on (the
// default), new entries go to a pending list that every lookup scans until
// a vacuum merges it; after a burst of thousands of inserts, lookups and
// conditional writes slowed for seconds: the benchmark's propagation p99
// at 200 updates/s, run after 8,000 inserts, went from 13.8 ms to 9.3 ms
// (p50 4.2 to 2.8 ms) with fastupdate off. (An index made by an earlier
// version, same name, is kept as it is.)
func indexIDs(ctx context.Context, url string, every time.Duration, log *slog.Logger) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		log.Warn("standin: _id indexes: connect", "err", err)
		return
	}
	defer conn.Close(context.Background())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := addIDIndexes(ctx, conn); err != nil && ctx.Err() == nil {
			log.Warn("standin: _id indexes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// addIDIndexes creates the missing _id GIN indexes; it returns the first error.
func addIDIndexes(ctx context.Context, conn *pgx.Conn) error {
	// FerretDB's collection tables: a _jsonb column, not its metadata table.
	// The index name is derived from schema and table (md5: table names can
	// be long, index names may not exceed 63 bytes).
	rows, err := conn.Query(ctx, `
		SELECT n.nspname, c.relname, 'standin_id_' || substr(md5(n.nspname || '.' || c.relname), 1, 20)
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = '_jsonb' AND NOT a.attisdropped
		WHERE c.relkind = 'r' AND c.relname <> '_ferretdb_database_metadata'
		  AND NOT EXISTS (
			SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
			WHERE i.indrelid = c.oid
			  AND ic.relname = 'standin_id_' || substr(md5(n.nspname || '.' || c.relname), 1, 20))`)
	if err != nil {
		return err
	}
	type table struct{ schema, name, index string }
	var missing []table
	for rows.Next() {
		var tb table
		if err := rows.Scan(&tb.schema, &tb.name, &tb.index); err != nil {
			rows.Close()
			return err
		}
		missing = append(missing, tb)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var first error
	for _, tb := range missing {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s USING gin ((_jsonb -> '_id') jsonb_path_ops) WITH (fastupdate = off)`,
			pgx.Identifier{tb.index}.Sanitize(), pgx.Identifier{tb.schema, tb.name}.Sanitize())
		// A table dropped meanwhile (a test dropping its database) is no error worth reporting.
		if _, err := conn.Exec(ctx, q); err != nil && first == nil && ctx.Err() == nil {
			var exists bool
			if conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{tb.schema, tb.name}.Sanitize()).Scan(&exists) == nil && !exists {
				continue
			}
			first = err
		}
	}
	return first
}
