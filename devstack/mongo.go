package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/ticketing-go/ticketing/standin"
)

// startMongo runs the MongoDB stand-in (FerretDB on SQLite behind the
// write-serialising front) in this process with its data in dir, and returns
// its URI and a stop function. Port 0 picks a free port.
func startMongo(ctx context.Context, dir string, port int, log *slog.Logger) (string, func() error, error) {
	srv, err := standin.Start(ctx, standin.Options{
		Listen:    "127.0.0.1:" + strconv.Itoa(port),
		SQLiteDir: dir,
		// FerretDB warns about every command it does not implement (the
		// driver's endSessions at each disconnect): errors only.
		Log: slog.New(standin.MinLevel(log.Handler(), slog.LevelError)).With("component", "mongo-standin"),
	})
	if err != nil {
		return "", nil, fmt.Errorf("mongodb stand-in on port %d (another stack running? set DEV_MONGO_PORT or MONGO_URI): %w", port, err)
	}
	return srv.URI(), srv.Close, nil
}
