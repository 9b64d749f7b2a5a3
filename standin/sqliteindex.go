package standin

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB's SQLite backend uses (registered as "sqlite")
)

// Lookups by _id on the SQLite backend.
//
// FerretDB v1 names a document by `_ferretdb_sjson->'$._id'` in its SQL
// (every write goes back to its documents by that expression: UPDATE ...
// WHERE _ferretdb_sjson->'$._id' = ?), while the unique index it creates
// for _id is on `_ferretdb_sjson->"_id"`, another expression, which SQLite
// does not use for it. So every write and every lookup by _id scanned the
// whole table, parsing each row's JSON: the cost of a write grew with the
// collection times the size of its documents (170 documents with 20
// outbox entries each: 40 ms per update by _id on a loaded machine, 40 %
// of the stand-in's CPU in SQLite's JSON parser). Under the e2e suite's
// load a collection's writes then took longer than they arrived, and
// every write of it timed out.
//
// indexSQLiteIDs closes that gap from outside FerretDB, as indexIDs does on
// PostgreSQL: it adds an index on FerretDB's exact expression to every
// collection table that lacks one, at start and then every interval, so
// collections created later get theirs within a second. FerretDB does not
// know about the index; it only makes its statements faster, and it goes
// away with the table.
func indexSQLiteIDs(ctx context.Context, dir string, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		files, err := filepath.Glob(filepath.Join(dir, "*.sqlite"))
		if err == nil {
			for _, f := range files {
				if err := addSQLiteIDIndexes(ctx, f); err != nil && ctx.Err() == nil {
					log.Warn("standin: _id indexes", "database", f, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// addSQLiteIDIndexes creates the missing _id indexes of one database file.
// It opens the file for each pass: FerretDB removes the file when the
// database is dropped, and a connection kept open would index the removed
// one. mode=rw: a file removed meanwhile is an error, not created again.
func addSQLiteIDIndexes(ctx context.Context, file string) error {
	u := url.URL{Scheme: "file", Path: file, RawQuery: "mode=rw&_pragma=busy_timeout(10000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// FerretDB's collection tables: those with its document column; its
	// metadata table has none.
	rows, err := db.QueryContext(ctx, `
		SELECT m.name FROM sqlite_master m
		WHERE m.type = 'table'
		  AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) c WHERE c.name = '_ferretdb_sjson')
		  AND NOT EXISTS (SELECT 1 FROM sqlite_master i WHERE i.type = 'index' AND i.tbl_name = m.name AND i.name = 'standin_id_' || m.name)`)
	if err != nil {
		if strings.Contains(err.Error(), "unable to open") {
			return nil // dropped meanwhile
		}
		return err
	}
	var missing []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		missing = append(missing, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, table := range missing {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (_ferretdb_sjson->'$._id')`,
			quoteSQLite("standin_id_"+table), quoteSQLite(table))
		if _, err := db.ExecContext(ctx, q); err != nil && !strings.Contains(err.Error(), "no such table") {
			return err
		}
	}
	return nil
}

// quoteSQLite quotes an SQLite identifier.
func quoteSQLite(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }
