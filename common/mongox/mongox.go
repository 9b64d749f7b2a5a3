// Package mongox holds the MongoDB helpers every service shares: connecting
// with timeouts, readiness, error classification (a database outage is a
// 503, not a 500) and the optimistic-concurrency update.
package mongox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.mongodb.org/mongo-driver/bson"
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

// UpdateVersioned applies update to the document {_id: id, version:
// version} and increments its version, in one conditional write: of
// concurrent writers on the same version exactly one wins, the others get
// apperr.Conflict (or apperr.NotFound when there is no document with id).
// update must not touch "version" itself.
func UpdateVersioned(ctx context.Context, coll *mongo.Collection, id any, version int64, update bson.M) error {
	ok, err := UpdateCounted(ctx, coll, id, "version", version, update)
	if err != nil || ok {
		return err
	}
	n, err := coll.CountDocuments(ctx, bson.M{"_id": id})
	if err != nil {
		return Classify(err)
	}
	if n == 0 {
		return apperr.ErrNotFound
	}
	return apperr.Errorf(apperr.Conflict, "The record was changed by someone else (version %d is stale)", version)
}

// UpdateCounted is the optimistic-concurrency write behind read-modify-write
// loops: it applies update to the document {_id: id, field: value} and
// increments field by one, in one conditional write. ok is false when no
// document matched (another writer moved field on, or the document is
// gone): the caller reads again and decides. field is the document's
// concurrency counter ("version", or an internal revision such as "rev"
// when the replicated version must not move on every write); update must
// not touch it (its "$inc", if any, must be a bson.M) and is not
// modified. Errors go through Classify; any other, such
// as a unique-index violation, is returned as the driver reported it (note:
// FerretDB v1 reports one on update as an InternalError, not as code 11000).
func UpdateCounted(ctx context.Context, coll *mongo.Collection, id any, field string, value int64, update bson.M) (ok bool, err error) {
	u := make(bson.M, len(update)+1)
	for k, v := range update {
		u[k] = v
	}
	inc := bson.M{field: int64(1)}
	if existing, isM := u["$inc"].(bson.M); isM {
		for k, v := range existing {
			inc[k] = v
		}
	}
	u["$inc"] = inc
	res, err := coll.UpdateOne(ctx, bson.M{"_id": id, field: value}, u)
	if err != nil {
		return false, Classify(err)
	}
	return res.MatchedCount == 1, nil
}
