package main

import (
	"context"
	"errors"
	"log/slog"
)

// startMongo runs the MongoDB stand-in in this process with its SQLite data
// in dir and returns its URI and a stop function. Port 0 picks a free port.
func startMongo(ctx context.Context, dir string, port int, log *slog.Logger) (string, func() error, error) {
	return "", nil, errors.New("TODO: standin not available yet")
}
