package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/mongo"

	"github.com/ticketing-go/ticketing/api/apispec"
	"github.com/ticketing-go/ticketing/common/auth"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/services/tickets/internal/app"
	"github.com/ticketing-go/ticketing/services/tickets/internal/listeners"
	"github.com/ticketing-go/ticketing/services/tickets/internal/store"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var testKey = []byte("test-jwt-key")

// natsTarget is where a test's NATS Streaming server is.
type natsTarget = testenv.NATS

func sharedNATS(tb testing.TB) natsTarget { return testenv.EventBus(tb) }

// MustConnect connects a NATS Streaming client to n, closed in Cleanup.
func MustConnect(tb testing.TB, n natsTarget, name string) *events.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := events.Connect(ctx, events.Config{
		Bus: n.Bus, URL: n.URL, ClusterID: n.ClusterID, SubjectPrefix: n.SubjectPrefix,
		ClientID: events.NewClientID(name),
	}, nil)
	if err != nil {
		tb.Fatalf("connect NATS: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// instance is one tickets service process run in-process.
type instance struct {
	parts lifecycle.Parts
	store *store.Store // a second view of the service's database
	srv   *httptest.Server
	conn  *events.Conn
	stop  func() // stops the relay and closes the NATS connection (a process exit)
	// failures counts failed event handlings (as logged by the listeners).
	failures *atomic.Int64
}

type appOptions struct {
	noRelay bool // leave the relay stopped: events stay in the outbox
	listen  listeners.Options
}

// MustStartApp runs the service on db and NATS n until Cleanup (or a.stop).
func MustStartApp(tb testing.TB, db *mongo.Database, n natsTarget, o appOptions) *instance {
	tb.Helper()
	failures := new(atomic.Int64)
	w := &testWriter{tb: tb}
	tb.Cleanup(func() { w.done.Store(true) }) // runs last: after the app stopped
	log := slog.New(countHandler{slog.NewTextHandler(w, nil), failures})
	conn := MustConnect(tb, n, "tickets-test")
	parts, err := app.Wire(context.Background(), app.Config{
		JWTKey: string(testKey), AckWait: o.listen.AckWait, GapWait: o.listen.GapWait,
		CancelWait: o.listen.CancelWait, MaxDeliveries: o.listen.MaxDeliveries,
		// A crashed instance's relay is adopted within seconds, not 30 s.
		Outbox: outbox.Options{Heartbeat: 100 * time.Millisecond, DeadAfter: 5 * time.Second},
	}, lifecycle.Deps{DB: db, Events: conn, Log: log})
	if err != nil {
		tb.Fatalf("app.Wire: %v", err)
	}
	if err := parts.Subscribe(conn); err != nil {
		tb.Fatalf("subscribe: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if o.noRelay {
		done <- nil
	} else {
		go func() { done <- parts.Relays[0].Run(ctx) }()
	}
	// Every response is checked against the public API document.
	srv := httptest.NewServer(apispec.Middleware(tb, lifecycle.Handler(app.Service, log, parts)))
	var once sync.Once
	a := &instance{parts: parts, store: store.New(db, nil), srv: srv, conn: conn, failures: failures}
	a.stop = func() {
		once.Do(func() {
			srv.Close()
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("relay: %v", err)
			}
			_ = conn.Close()
		})
	}
	tb.Cleanup(a.stop)
	return a
}

// countHandler counts the "event handling failed" records of the listeners.
type countHandler struct {
	slog.Handler
	n *atomic.Int64
}

func (h countHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "event handling failed" {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countHandler{h.Handler.WithAttrs(as), h.n}
}

func (h countHandler) WithGroup(g string) slog.Handler {
	return countHandler{h.Handler.WithGroup(g), h.n}
}

// testWriter sends the service's log to the test's log (shown when a test
// fails or with -v), and drops what a straggler logs after the test.
type testWriter struct {
	tb   testing.TB
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// env is the usual test setup: a fresh database, the shared NATS server
// with a unique subject prefix, the service, and an observer of its events.
type env struct {
	db   *mongo.Database
	nats natsTarget
	app  *instance
	obs  *observer
	pub  *events.Conn // publishes order events as the orders service would
}

func MustStart(tb testing.TB, o appOptions) *env {
	tb.Helper()
	db := testenv.MongoDatabase(tb)
	n := sharedNATS(tb)
	e := &env{db: db, nats: n}
	e.obs = MustObserve(tb, n)
	e.pub = MustConnect(tb, n, "orders-test")
	e.app = MustStartApp(tb, db, n, o)
	return e
}

// --- HTTP ---

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// req describes one request; Body is sent as is when it is a string, else
// marshalled to JSON.
type req struct {
	Method, Path string
	User         string // signed in as this user id ("" = anonymous)
	Body         any
	ContentType  string // default application/json when there is a body
	Header       map[string]string
}

func (a *instance) do(tb testing.TB, r req) response {
	tb.Helper()
	var body io.Reader
	if r.Body != nil {
		var b []byte
		switch v := r.Body.(type) {
		case string:
			b = []byte(v)
		default:
			var err error
			if b, err = json.Marshal(v); err != nil {
				tb.Fatal(err)
			}
		}
		body = bytes.NewReader(b)
		if r.ContentType == "" {
			r.ContentType = "application/json"
		}
	}
	hr, err := http.NewRequest(r.Method, a.srv.URL+r.Path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if r.ContentType != "" {
		hr.Header.Set("Content-Type", r.ContentType)
	}
	if r.User != "" {
		hr.AddCookie(&http.Cookie{Name: auth.CookieName, Value: testenv.Token(tb, testKey, r.User)})
	}
	for k, v := range r.Header {
		hr.Header.Set(k, v)
	}
	resp, err := a.srv.Client().Do(hr)
	if err != nil {
		tb.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

type ticketJSON struct {
	ID      string  `json:"id"`
	Title   string  `json:"title"`
	Price   float64 `json:"price"`
	UserID  string  `json:"userId"`
	Version int64   `json:"version"`
	OrderID string  `json:"orderId,omitempty"`
}

type errorsJSON struct {
	Errors []struct {
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"errors"`
}

func decodeJSON[T any](tb testing.TB, r response) T {
	tb.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("decode %T from %s: %v", v, r.Body, err)
	}
	return v
}

// MustCreate creates a ticket as user and returns it.
func (a *instance) MustCreate(tb testing.TB, user, title string, price float64) ticketJSON {
	tb.Helper()
	r := a.do(tb, req{Method: "POST", Path: "/api/tickets", User: user, Body: map[string]any{"title": title, "price": price}})
	if r.Status != http.StatusCreated {
		tb.Fatalf("create: %d %s", r.Status, r.Body)
	}
	return decodeJSON[ticketJSON](tb, r)
}

func (a *instance) MustGet(tb testing.TB, id string) ticketJSON {
	tb.Helper()
	r := a.do(tb, req{Method: "GET", Path: "/api/tickets/" + id})
	if r.Status != http.StatusOK {
		tb.Fatalf("get %s: %d %s", id, r.Status, r.Body)
	}
	return decodeJSON[ticketJSON](tb, r)
}

// --- events ---

// seen is one ticket event the observer received.
type seen struct {
	Subject string
	Seq     uint64
	Ticket  events.TicketUpdated // same JSON as TicketCreated
}

// observer records every ticket event published on a NATS server, as a
// consumer in a queue group of its own would (from the start of the channel).
type observer struct {
	mu   sync.Mutex
	msgs []seen
}

func MustObserve(tb testing.TB, n natsTarget) *observer {
	tb.Helper()
	conn := MustConnect(tb, n, "observer")
	o := &observer{}
	for _, s := range []events.Subject{events.SubjectTicketCreated, events.SubjectTicketUpdated} {
		err := conn.Subscribe(events.Subscription{Subject: s, QueueGroup: "test-observer", MaxInflight: 1},
			events.Decode(func(_ context.Context, t events.TicketUpdated, m *events.Msg) error {
				o.mu.Lock()
				defer o.mu.Unlock()
				o.msgs = append(o.msgs, seen{Subject: m.Subject, Seq: m.Sequence, Ticket: t})
				return nil
			}))
		if err != nil {
			tb.Fatalf("subscribe %s: %v", s, err)
		}
	}
	return o
}

// of returns the events of ticket id: its ticket:created ones, then its
// ticket:updated ones in the order of the channel (sequence).
func (o *observer) of(id string) []seen {
	o.mu.Lock()
	defer o.mu.Unlock()
	var created, updated []seen
	for _, m := range o.msgs {
		if m.Ticket.ID != id {
			continue
		}
		if m.Subject == string(events.SubjectTicketCreated) {
			created = append(created, m)
		} else {
			updated = append(updated, m)
		}
	}
	sort.Slice(updated, func(i, j int) bool { return updated[i].Seq < updated[j].Seq })
	return append(created, updated...)
}

// versions returns the versions of ticket id's events in channel order,
// after dropping repeats of a message (at-least-once delivery may repeat
// the last publish after a broker failure).
func (o *observer) versions(id string) []int64 {
	var out []int64
	for _, m := range o.of(id) {
		if n := len(out); n > 0 && out[n-1] == m.Ticket.Version {
			continue
		}
		out = append(out, m.Ticket.Version)
	}
	return out
}

// waitVersions waits until ticket id's events cover versions 0..last, then
// checks that they came exactly in version order, none missing.
func (o *observer) waitVersions(tb testing.TB, id string, last int64) []seen {
	tb.Helper()
	testenv.Eventually(tb, eventualWait, "events of ticket "+id, func() bool {
		distinct := map[int64]bool{}
		for _, m := range o.of(id) {
			distinct[m.Ticket.Version] = true
		}
		return len(distinct) >= int(last+1)
	})
	vs := o.versions(id)
	for i, v := range vs {
		if v != int64(i) || i > int(last) {
			tb.Fatalf("ticket %s: events out of order, missing or extra: versions %v, want 0..%d", id, vs, last)
		}
	}
	return o.of(id)
}

// eventualWait bounds every wait for something asynchronous (an event, a
// replica) in these tests.
const eventualWait = 30 * time.Second
