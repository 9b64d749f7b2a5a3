package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-connections/nat"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/mongo/readpref"

	"github.com/ticketing-go/ticketing/standin"
)

// Default MongoDB image and the repository of the stand-in built from source
// (tagged with the hash of the standin sources).
const (
	DefaultMongoImage     = "mongo:7"
	MongoStandinImageRepo = "ticketing-testenv/mongo-standin"
	mongoStandinPkg       = "github.com/ticketing-go/ticketing/standin/cmd/mongo-standin"
)

// MongoDB holds the connection details of a MongoDB-protocol server and the
// database of one test.
type MongoDB struct {
	URI, Database string
}

type mongoServer struct {
	uri   string
	close func()
}

var sharedMongo lazy[*mongoServer]

// Mongo returns a MongoDB server shared by the tests of this process
// (started on first use) and a database name unique to this test.
func Mongo(tb testing.TB) MongoDB {
	tb.Helper()
	srv, err := sharedMongo.get(func() (*mongoServer, error) {
		s, err := newMongo(context.Background())
		if err == nil {
			atExit(s.close)
		}
		return s, err
	})
	if err != nil {
		tb.Fatalf("testenv: MongoDB: %v", err)
	}
	return MongoDB{URI: srv.uri, Database: uniqueName(tb, 60)}
}

// MongoDatabase connects to [Mongo] and returns this test's database; the
// client is disconnected in Cleanup.
func MongoDatabase(tb testing.TB) *mongo.Database {
	tb.Helper()
	m := Mongo(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(ctx, options.Client().ApplyURI(m.URI))
	if err != nil {
		tb.Fatalf("testenv: connect %s: %v", m.URI, err)
	}
	tb.Cleanup(func() { c.Disconnect(context.Background()) })
	if err := c.Ping(ctx, readpref.Primary()); err != nil {
		tb.Fatalf("testenv: ping %s: %v", m.URI, err)
	}
	return c.Database(m.Database)
}

func newMongo(ctx context.Context) (*mongoServer, error) {
	m, err := resolveMode()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if m == ModeEmbedded {
		dir, err := os.MkdirTemp(scratchDir(), "testenv-mongo-")
		if err != nil {
			return nil, err
		}
		s, err := standin.Start(ctx, standin.Options{SQLiteDir: dir})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		logf("MongoDB: in-process stand-in at %s", s.URI())
		return &mongoServer{uri: s.URI(), close: func() { s.Close(); os.RemoveAll(dir) }}, nil
	}
	img, err := mongoImage(ctx)
	if err != nil {
		return nil, err
	}
	req := testcontainers.ContainerRequest{
		Image:        img,
		ExposedPorts: []string{"27017/tcp"},
		Labels:       Labels(),
		// Both mongod and mongo-standin log this once they accept clients.
		WaitingFor: wait.ForLog("Waiting for connections").WithStartupTimeout(2 * time.Minute),
	}
	if strings.HasPrefix(img, MongoStandinImageRepo+":") {
		// The stand-in's SQLite files in memory: a test database outlives
		// no container, and on disk every write waits for an fsync (an
		// update took ~2 ms there, ~0.6 ms on tmpfs).
		req.Tmpfs = map[string]string{"/data": "rw"}
	}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if err != nil {
		if c != nil {
			c.Terminate(context.Background())
		}
		return nil, fmt.Errorf("start %s: %w", img, err)
	}
	closeC := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Terminate(ctx); err != nil {
			logf("remove MongoDB container: %v", err)
		}
	}
	host, err := c.Host(ctx)
	var port nat.Port
	if err == nil {
		port, err = c.MappedPort(ctx, "27017/tcp")
	}
	if err != nil {
		closeC()
		return nil, err
	}
	uri := "mongodb://" + net.JoinHostPort(host, strconv.Itoa(port.Int())) + "/"
	if err := waitMongo(ctx, uri); err != nil {
		closeC()
		return nil, err
	}
	return &mongoServer{uri: uri, close: closeC}, nil
}

// waitMongo returns once a ping to uri succeeds.
func waitMongo(ctx context.Context, uri string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := mongo.Connect(ctx, options.Client().ApplyURI(uri).SetServerSelectionTimeout(2*time.Second))
	if err != nil {
		return err
	}
	defer c.Disconnect(context.Background())
	for {
		err := c.Ping(ctx, readpref.Primary())
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("MongoDB at %s not ready: %v", uri, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var mongoImg lazy[string]

// mongoImage picks the MongoDB image once per process.
func mongoImage(ctx context.Context) (string, error) {
	return mongoImg.get(func() (string, error) {
		return pickImage(ctx, "TESTENV_MONGO_IMAGE", DefaultMongoImage, func(ctx context.Context) (string, error) {
			root, err := RepoRoot()
			if err != nil {
				return "", err
			}
			// go.work too: it decides the versions the workspace build uses.
			h, err := SourceHash(root, "standin", "go.work")
			if err != nil {
				return "", err
			}
			return BuildGoImage(ctx, MongoStandinImageRepo+":"+h, mongoStandinPkg, root)
		})
	})
}

// scratchDir is where the embedded stand-in keeps its files: /dev/shm (in
// memory, no fsync per write) when there is one, else the temp directory.
func scratchDir() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if f, err := os.CreateTemp("/dev/shm", "testenv-probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return "/dev/shm"
		}
	}
	return ""
}
