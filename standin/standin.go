// Package standin runs a MongoDB stand-in for machines where no MongoDB
// server can be had: FerretDB v1 (SQLite or PostgreSQL backend) in-process,
// behind a MongoDB wire-protocol front of ours that serialises write commands.
//
// Why the front: FerretDB v1 does not make a conditional write atomic. With
// 30 concurrent updateOne({_id, version: 0}, {$inc: {version: 1}}) on one
// document, several report "modified"; the same for findOneAndUpdate. MongoDB
// lets exactly one through, and optimistic concurrency depends on it. The
// front gives each write command (insert, update, delete, findAndModify) a
// turn, from sending the request to receiving its reply, against the writes
// that could interfere with it (the documents it names by _id, or else the
// whole collection); reads stay parallel. See README.md for what FerretDB
// v1 supports.
//
// FerretDB never becomes a dependency of a service binary: only the local
// stack (devstack), the tests (testenv) and cmd/mongo-standin import this.
package standin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Options configure a stand-in server.
type Options struct {
	// Listen is the TCP address of the front (default "127.0.0.1:0").
	Listen string
	// Handler is the FerretDB backend: "sqlite" (default) or "postgresql".
	Handler string
	// SQLiteDir holds the SQLite databases (one file per database); created
	// if missing. Empty: a temporary directory removed by Close.
	SQLiteDir string
	// PostgreSQLURL is the backend for the "postgresql" handler.
	PostgreSQLURL string
	// CountEvery, when positive, logs how many commands of each kind each
	// collection received in every such interval (what a workload costs the
	// store; the benchmark reads it).
	CountEvery time.Duration
	// CountTotals keeps the number of commands of each kind each collection
	// received since the start, for Server.Counts (the benchmark reads them
	// before and after each workload).
	CountTotals bool
	// Log receives the front's log and FerretDB's warnings and errors
	// (default: discarded).
	Log *slog.Logger
}

// Server is a running stand-in.
type Server struct {
	front   *front
	ferret  *ferretdb.FerretDB
	cancel  context.CancelFunc
	done    chan struct{}
	tempDir string
	uri     string
	direct  string
	// indexing is closed when the _id indexer stopped.
	indexing chan struct{}
}

// Start starts FerretDB on a private loopback port and the front on
// o.Listen. ctx bounds the start only; Close stops the server.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Handler == "" {
		o.Handler = "sqlite"
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{done: make(chan struct{})}
	var sqliteDir string
	cfg := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Logger:   slog.New(MinLevel(log.Handler(), slog.LevelWarn)),
		Handler:  o.Handler,
	}
	switch o.Handler {
	case "sqlite":
		dir := o.SQLiteDir
		if dir == "" {
			d, err := os.MkdirTemp("", "mongo-standin-")
			if err != nil {
				return nil, err
			}
			dir, s.tempDir = d, d
		} else if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		sqliteDir = abs
		cfg.SQLiteURL = "file:" + filepath.ToSlash(abs) + "/"
	case "postgresql":
		if o.PostgreSQLURL == "" {
			return nil, errors.New("standin: handler postgresql needs PostgreSQLURL")
		}
		cfg.PostgreSQLURL = o.PostgreSQLURL
	default:
		return nil, fmt.Errorf("standin: unknown handler %q (want sqlite or postgresql)", o.Handler)
	}
	fail := func(err error) (*Server, error) {
		if s.tempDir != "" {
			os.RemoveAll(s.tempDir)
		}
		return nil, err
	}
	f, err := ferretdb.New(cfg)
	if err != nil {
		return fail(fmt.Errorf("standin: ferretdb: %w", err))
	}
	s.ferret = f
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		f.Run(runCtx)
	}()
	s.direct = f.MongoDBURI()
	backend := hostOf(s.direct)

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", o.Listen)
	if err != nil {
		cancel()
		<-s.done
		return fail(fmt.Errorf("standin: listen %s: %w", o.Listen, err))
	}
	s.front = newFront(ln, backend, log)
	s.front.wg.Add(1)
	go s.front.serve()
	s.indexing = make(chan struct{})
	go func() {
		defer close(s.indexing)
		if o.Handler == "postgresql" {
			indexIDs(runCtx, o.PostgreSQLURL, time.Second, log)
		} else {
			indexSQLiteIDs(runCtx, sqliteDir, time.Second, log)
		}
	}()
	if o.CountEvery > 0 {
		s.front.counts = map[string]int64{}
		s.front.wg.Add(1)
		go s.front.logCounts(o.CountEvery)
	}
	if o.CountTotals {
		s.front.mu.Lock()
		s.front.totals = map[string]int64{}
		s.front.mu.Unlock()
	}
	s.uri = "mongodb://" + uriHost(ln.Addr()) + "/"
	log.Info("mongo-standin ready", "addr", ln.Addr().String(), "handler", o.Handler)
	return s, nil
}

// URI is a mongodb:// URI of the front, for mongo-driver.
func (s *Server) URI() string { return s.uri }

// Counts returns the commands each collection received since the start,
// keyed "db.collection command" (as the CountEvery log names them); nil
// unless Options.CountTotals.
func (s *Server) Counts() map[string]int64 { return s.front.copyTotals() }

// Addr is the front's listening address.
func (s *Server) Addr() net.Addr { return s.front.ln.Addr() }

// Close stops the front and FerretDB, and removes the temporary directory
// if Start made one.
func (s *Server) Close() error {
	err := s.front.close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	s.cancel()
	<-s.done
	<-s.indexing
	if s.tempDir != "" {
		if rerr := os.RemoveAll(s.tempDir); err == nil {
			err = rerr
		}
	}
	return err
}

// hostOf returns host:port of a mongodb:// URI.
func hostOf(uri string) string {
	h := uri[len("mongodb://"):]
	for i, c := range h {
		if c == '/' {
			return h[:i]
		}
	}
	return h
}

// uriHost makes a listening address dialable: an unspecified IP becomes loopback.
func uriHost(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}

// MinLevel returns h without the records below min. The stand-in uses it
// for FerretDB, which logs every connection at info level (and warns about
// every command it does not implement).
func MinLevel(h slog.Handler, min slog.Level) slog.Handler { return minLevel{h, min} }

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}

func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }
