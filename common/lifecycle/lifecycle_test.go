package lifecycle_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// journal records what happened, in order.
type journal struct {
	mu    sync.Mutex
	steps []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	j.steps = append(j.steps, s)
	j.mu.Unlock()
}

func (j *journal) index(s string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i, x := range j.steps {
		if x == s {
			return i
		}
	}
	return -1
}

// fakeRelay has pending entries until it has run for a while after the
// shutdown began: Run must not be stopped before Backlog reaches 0.
type fakeRelay struct {
	j       *journal
	pending atomic.Int64
}

func (r *fakeRelay) Run(ctx context.Context) error {
	r.j.add("relay started")
	<-ctx.Done()
	r.j.add("relay stopped")
	return nil
}

func (r *fakeRelay) Backlog(context.Context) (int64, error) {
	n := r.pending.Add(-1)
	if n <= 0 {
		r.j.add("relay flushed")
		return 0, nil
	}
	return n, nil
}

// TestShutdownOrder: a request in flight at SIGTERM completes, the worker
// stops, the relay keeps running until what the drain wrote is published,
// and only then stops; Run returns nil.
func TestShutdownOrder(t *testing.T) {
	m, n := testenv.Mongo(t), testenv.EventBus(t)
	j := &journal{}
	relay := &fakeRelay{j: j}
	relay.pending.Store(3)
	inRequest := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	cfg := lifecycle.Config{
		Service: "test", MongoURI: m.URI, MongoDB: m.Database,
		NATS: &events.Config{Bus: n.Bus, URL: n.URL, ClusterID: n.ClusterID, ClientID: events.NewClientID("lifecycle-test"), SubjectPrefix: n.SubjectPrefix},
	}
	var subscribed atomic.Bool
	wire := func(ctx context.Context, d lifecycle.Deps) (lifecycle.Parts, error) {
		if d.DB == nil || d.Events == nil {
			t.Error("Wire without connections")
		}
		return lifecycle.Parts{
			Mount: func(r chi.Router) {
				r.Get("/slow", func(w http.ResponseWriter, r *http.Request) {
					close(inRequest)
					time.Sleep(300 * time.Millisecond)
					j.add("request done")
					_, _ = io.WriteString(w, "ok")
				})
			},
			Relays: []lifecycle.Relay{relay},
			Subscribe: func(events.Subscriber) error {
				subscribed.Store(true)
				return nil
			},
			Workers: []func(context.Context) error{func(ctx context.Context) error {
				<-ctx.Done()
				j.add("worker stopped")
				return ctx.Err()
			}},
		}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lifecycle.Run(ctx, cfg, ln, slog.New(slog.DiscardHandler), wire) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(url + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
			t.Logf("readyz: %d %s", res.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !subscribed.Load() {
		t.Fatal("ready before the listeners subscribed")
	}

	got := make(chan string, 1)
	go func() {
		res, err := http.Get(url + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got <- string(b)
	}()
	<-inRequest
	cancel() // SIGTERM
	if body := <-got; body != "ok" {
		t.Fatalf("request in flight at shutdown: %q, want it to complete", body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after a shutdown asked for", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	order := []string{"relay started", "request done", "relay flushed", "relay stopped"}
	for i := 1; i < len(order); i++ {
		if a, b := j.index(order[i-1]), j.index(order[i]); a < 0 || b < 0 || a > b {
			t.Fatalf("steps %v, want %v in that order", j.steps, order)
		}
	}
	if w, f := j.index("worker stopped"), j.index("relay flushed"); w < 0 || w > f {
		t.Fatalf("steps %v: the worker must stop before the relay's last flush", j.steps)
	}
}

// TestShutdownLetsHandlersFinish: a message being handled at SIGTERM is
// handled to the end before the relay's last flush, so the events its
// handling wrote go out in this process rather than at the next start.
func TestShutdownLetsHandlersFinish(t *testing.T) {
	m, n := testenv.Mongo(t), testenv.EventBus(t)
	j := &journal{}
	relay := &fakeRelay{j: j}
	relay.pending.Store(2)
	natsCfg := func(name string) *events.Config {
		return &events.Config{Bus: n.Bus, URL: n.URL, ClusterID: n.ClusterID, ClientID: events.NewClientID(name), SubjectPrefix: n.SubjectPrefix}
	}
	inHandler := make(chan struct{})
	var once sync.Once
	wire := func(ctx context.Context, d lifecycle.Deps) (lifecycle.Parts, error) {
		return lifecycle.Parts{
			Relays: []lifecycle.Relay{relay},
			Subscribe: func(sub events.Subscriber) error {
				return events.SubscribeGroup(sub, events.Group{Name: "lifecycle-test"}, events.Route{
					Subject: events.SubjectTicketCreated,
					Handler: func(context.Context, *events.Msg) error {
						once.Do(func() { close(inHandler) })
						time.Sleep(300 * time.Millisecond)
						j.add("handler done")
						return nil
					},
				})
			},
		}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- lifecycle.Run(ctx, lifecycle.Config{Service: "test", MongoURI: m.URI, MongoDB: m.Database, NATS: natsCfg("lifecycle-run")},
			ln, slog.New(slog.DiscardHandler), wire)
	}()

	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	pub, err := events.Connect(pctx, *natsCfg("lifecycle-pub"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(pctx, events.TicketCreated{ID: "t1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inHandler:
	case <-time.After(30 * time.Second):
		t.Fatal("the message was not handled")
	}
	cancel() // SIGTERM
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if h, f, s := j.index("handler done"), j.index("relay flushed"), j.index("relay stopped"); h < 0 || f < h || s < f {
		t.Fatalf("steps %v, want the handler done, then the relay flushed, then stopped", j.steps)
	}
}

// TestNoDatabase: a service without a database (the web client) starts
// with no MongoDB at all, gets a nil Deps.DB, is ready, and stops cleanly;
// a service with a database and an empty MongoURI still fails at start.
func TestNoDatabase(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var gotDB atomic.Bool
	wire := func(ctx context.Context, d lifecycle.Deps) (lifecycle.Parts, error) {
		gotDB.Store(d.DB != nil)
		return lifecycle.Parts{Mount: func(r chi.Router) {
			r.Get("/hello", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hi") })
		}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- lifecycle.Run(ctx, lifecycle.Config{Service: "test", NoDatabase: true}, ln, slog.New(slog.DiscardHandler), wire)
	}()
	base := "http://" + ln.Addr().String()
	testenv.Eventually(t, 10*time.Second, "ready", func() bool {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	res, err := http.Get(base + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "hi" || gotDB.Load() {
		t.Fatalf("/hello = %q, DB given = %v; want hi and no DB", b, gotDB.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}

	if err := lifecycle.Run(context.Background(), lifecycle.Config{Service: "test"}, nil, slog.New(slog.DiscardHandler), wire); err == nil {
		t.Fatal("Run with a database and no MongoURI succeeded")
	}
}
