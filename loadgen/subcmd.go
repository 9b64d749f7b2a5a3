package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// ServiceDatabases are the databases the services and the floor write;
// `loadgen reset` drops them so a run starts from empty databases.
var ServiceDatabases = []string{"auth", "tickets", "orders", "expiration", "payments", "loadgen_floor"}

// reset drops the service databases of a MongoDB server (a real MongoDB
// named by MONGO_URI; the stand-in starts on a fresh PostgreSQL database).
func reset(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("reset", flag.ContinueOnError)
	uri := fs.String("mongo", env("MONGO_URI", ""), "MongoDB URI")
	dbs := fs.String("dbs", strings.Join(ServiceDatabases, ","), "databases to drop")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the server to answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := Loopback(*uri); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *wait+time.Minute)
	defer cancel()
	c, err := mongo.Connect(ctx, options.Client().ApplyURI(*uri).SetServerSelectionTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Disconnect(context.Background())
	// The server may still be starting (bench.sh starts it just before).
	deadline := time.Now().Add(*wait)
	for {
		err := c.Ping(ctx, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer: %w", *uri, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, db := range strings.Split(*dbs, ",") {
		if db = strings.TrimSpace(db); db == "" {
			continue
		}
		if err := c.Database(db).Drop(ctx); err != nil {
			return fmt.Errorf("drop %s: %w", db, err)
		}
	}
	return nil
}
