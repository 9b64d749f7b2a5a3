// Command mongo-standin serves the MongoDB stand-in (FerretDB behind a front
// that serialises writes, see package standin) until SIGTERM or SIGINT.
//
// Flags (environment variable in brackets):
//
//	-listen   address of the MongoDB wire protocol [MONGO_STANDIN_LISTEN] (":27017")
//	-data     SQLite directory, created if missing [MONGO_STANDIN_DATA] ("/data")
//	-handler  sqlite or postgresql [MONGO_STANDIN_HANDLER] ("sqlite")
//	-postgresql-url  backend of the postgresql handler [MONGO_STANDIN_POSTGRESQL_URL]
//	-count-every     log the commands per collection every such interval (off)
//	-counts-listen   serve GET /counts on this address: the commands per
//	                 collection since the start, as JSON (off; the benchmark
//	                 reads it before and after each workload)
//	-pprof           serve net/http/pprof on this address (off)
//
// It logs "Waiting for connections" once it accepts clients (as mongod does,
// so one readiness check fits both).
//
// Garbage collection: unless GOGC is set, it runs with GOGC=400. FerretDB
// decodes every document it reads or writes into short-lived values, and at
// the default (100) a fifth of the stand-in's CPU went to the collector
// under the benchmark's PUT load; at 400, PUTs went from 580 to 720 a second
// on the same run (the floor on the same stand-in from 1,900 to 2,030),
// for a larger heap. mongod, which the stand-in stands in for, has no
// collector at all.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only with -pprof
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/ticketing-go/ticketing/standin"
)

// defaultGOGC: see the package doc.
const defaultGOGC = 400

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	if err := run(context.Background(), os.Args[1:], log); err != nil {
		log.Error("mongo-standin failed", "err", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("mongo-standin", flag.ContinueOnError)
	listen := fs.String("listen", env("MONGO_STANDIN_LISTEN", ":27017"), "listen address")
	data := fs.String("data", env("MONGO_STANDIN_DATA", "/data"), "SQLite data directory")
	handler := fs.String("handler", env("MONGO_STANDIN_HANDLER", "sqlite"), "sqlite or postgresql")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (profiling the stand-in under a benchmark)")
	countEvery := fs.Duration("count-every", 0, "log the commands each collection received in every such interval (0: off)")
	countsAddr := fs.String("counts-listen", "", "serve GET /counts (the commands per collection since the start, JSON) on this address (off)")
	pgURL := fs.String("postgresql-url", os.Getenv("MONGO_STANDIN_POSTGRESQL_URL"), "PostgreSQL URL for the postgresql handler")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pprofAddr != "" {
		go func() { log.Warn("pprof server stopped", "err", http.ListenAndServe(*pprofAddr, nil)) }()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := standin.Start(ctx, standin.Options{Listen: *listen, Handler: *handler, SQLiteDir: *data, PostgreSQLURL: *pgURL, CountEvery: *countEvery, CountTotals: *countsAddr != "", Log: log})
	if err != nil {
		return err
	}
	if *countsAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /counts", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(s.Counts())
		})
		go func() { log.Warn("counts server stopped", "err", http.ListenAndServe(*countsAddr, mux)) }()
	}
	log.Info("Waiting for connections", "addr", s.Addr().String(), "handler", *handler, "data", *data)
	<-ctx.Done()
	log.Info("shutting down")
	if err := s.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}
