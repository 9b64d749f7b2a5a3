package testenv

import (
	"context"
	"net"
	"testing"

	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// UnreachableMongoURI returns a MongoDB URI at which nothing listens (a
// loopback port just closed), with server selection and connect timeouts of
// 300 ms: for tests of what code answers while the database is down.
func UnreachableMongoURI(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "mongodb://" + addr + "/?directConnection=true&serverSelectionTimeoutMS=300&connectTimeoutMS=300"
}

// UnreachableMongoDatabase returns database name on a client of
// UnreachableMongoURI (connecting does not fail; every operation does). The
// client is disconnected in Cleanup.
func UnreachableMongoDatabase(tb testing.TB, name string) *mongo.Database {
	tb.Helper()
	c, err := mongo.Connect(context.Background(), options.Client().ApplyURI(UnreachableMongoURI(tb)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c.Database(name)
}
