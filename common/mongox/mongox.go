// Package mongox holds the MongoDB helpers every service shares: connecting
// with timeouts, readiness, error classification (a database outage is a
// 503, not a 500), index creation and the cache of recently written states
// (Recent). The optimistic-concurrency write itself is common/outbox.Records.
package mongox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/x/mongo/driver"
	"go.mongodb.org/mongo-driver/x/mongo/driver/connstring"
	"go.mongodb.org/mongo-driver/x/mongo/driver/topology"

	"github.com/ticketing-go/ticketing/common/apperr"
)

// Timeouts used by Connect.
const (
	ConnectTimeout         = 5 * time.Second
	ServerSelectionTimeout = 5 * time.Second
	pingTimeout            = 5 * time.Second
)

// Connection pool defaults used by Connect; maxPoolSize and maxIdleTimeMS
// in the URI win. The driver's defaults (100 connections, kept for ever)
// suit a large client; a service replica here sends at most a few dozen
// operations at once, and each open connection costs it memory (buffers)
// and the server a connection. Idle connections left by a burst close
// after MaxConnIdleTime.
const (
	MaxPoolSize     = 32
	MaxConnIdleTime = time.Minute
)

// Connect connects to uri, pings the server and returns the client and the
// database (database, or the one named in the URI when database is "").
func Connect(ctx context.Context, uri, database string) (*mongo.Client, *mongo.Database, error) {
	// Defaults first, so that timeouts given in the URI win.
	opts := options.Client().
		SetConnectTimeout(ConnectTimeout).
		SetServerSelectionTimeout(ServerSelectionTimeout).
		SetMaxPoolSize(MaxPoolSize).
		SetMaxConnIdleTime(MaxConnIdleTime).
		ApplyURI(uri)
	if database == "" {
		cs, err := connstringDatabase(uri)
		if err != nil {
			return nil, nil, err
		}
		database = cs
	}
	if database == "" {
		return nil, nil, errors.New("mongox: no database named (argument or URI path)")
	}
	client, err := mongo.Connect(ctx, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("mongox: connect: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := client.Ping(pctx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, nil, Classify(fmt.Errorf("mongox: ping: %w", err))
	}
	return client, client.Database(database), nil
}

func connstringDatabase(uri string) (string, error) {
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		return "", fmt.Errorf("mongox: bad uri: %w", err)
	}
	return cs.Database, nil
}

// Ping returns a readiness check that pings the server.
func Ping(c *mongo.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := c.Ping(ctx, nil); err != nil {
			return Classify(err)
		}
		return nil
	}
}

// ObjectID parses a 24-hex id; ok is false for anything else (answer 404).
func ObjectID(hex string) (primitive.ObjectID, bool) {
	if len(hex) != 24 {
		return primitive.NilObjectID, false
	}
	id, err := primitive.ObjectIDFromHex(hex)
	return id, err == nil
}

// IsDuplicateKey reports whether err is a unique-index violation.
func IsDuplicateKey(err error) bool { return mongo.IsDuplicateKeyError(err) }

// Classify turns failures to reach the database (network errors, server
// selection timeouts, timeouts talking to it, a connection pool cleared
// because the server was found gone) into apperr.Unavailable, so
// that HTTP answers 503 and event handlers retry; other errors are
// returned unchanged. Already-classified apperr errors pass through.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return err
	}
	var sse topology.ServerSelectionError
	var netErr net.Error
	var poolErr driver.RetryablePoolError // the pool was cleared: the server was found gone
	switch {
	case mongo.IsNetworkError(err),
		errors.As(err, &poolErr),
		mongo.IsTimeout(err),
		errors.As(err, &sse),
		errors.Is(err, topology.ErrServerSelectionTimeout),
		errors.Is(err, mongo.ErrClientDisconnected),
		errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr):
		return apperr.Wrap(apperr.Unavailable, "The database is unavailable", err)
	}
	return err
}
