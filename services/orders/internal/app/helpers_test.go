package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"

	"github.com/ticketing-go/ticketing/api/apispec"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/services/orders/internal/app"
	"github.com/ticketing-go/ticketing/services/orders/internal/domain"
	"github.com/ticketing-go/ticketing/services/orders/internal/store"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const jwtKey = "orders-test-key"

// service is an orders service running in-process against real servers,
// with a NATS connection of the test's own to publish and observe events.
type service struct {
	URL      string
	Mongo    testenv.MongoDB
	NATS     testenv.NATS
	Store    *store.Store // a second view of the service's database
	DB       *mongo.Database
	Conn     *events.Conn
	observed *observer
}

// MustStartService starts the orders service on fresh servers' state and
// waits until it is ready; everything is stopped in Cleanup.
func MustStartService(tb testing.TB, window time.Duration) *service {
	tb.Helper()
	m := testenv.Mongo(tb)
	n := testenv.EventBus(tb)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	natsCfg := events.Config{Bus: n.Bus, URL: n.URL, ClusterID: n.ClusterID, ClientID: events.NewClientID("orders-test"), SubjectPrefix: n.SubjectPrefix}
	cfg := app.Config{MongoURI: m.URI, MongoDB: m.Database, JWTKey: jwtKey, NATS: natsCfg, ExpirationWindow: window}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, ln, log) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("orders service: %v", err)
		}
	})

	s := &service{URL: "http://" + ln.Addr().String(), Mongo: m, NATS: n}
	client, db, err := mongox.Connect(context.Background(), m.URI, m.Database)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	s.DB, s.Store = db, store.New(db, nil)

	testCfg := natsCfg
	testCfg.ClientID = events.NewClientID("orders-test-client")
	s.Conn, err = events.Connect(context.Background(), testCfg, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Conn.Close() })
	s.observed = observe(tb, s.Conn)

	testenv.Eventually(tb, 20*time.Second, "service ready", func() bool {
		res, err := http.Get(s.URL + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return s
}

// do sends a request as user (anonymous when "") and returns status and body.
func (s *service) do(tb testing.TB, method, path, user, body string) (int, []byte) {
	tb.Helper()
	return request(tb, s.URL, method, path, user, body)
}

// request sends a request to the service at base as user (anonymous when
// "") and checks the response against the API document.
func request(tb testing.TB, base, method, path, user, body string) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+testenv.Token(tb, []byte(jwtKey), user))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	apispec.Validator(tb)(req, res) // every response must match api/openapi.yaml
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return res.StatusCode, b
}

type orderJSON struct {
	ID        string `json:"id"`
	UserID    string `json:"userId"`
	Status    string `json:"status"`
	ExpiresAt string `json:"expiresAt"`
	Version   int64  `json:"version"`
	Ticket    struct {
		ID      string  `json:"id"`
		Title   string  `json:"title"`
		Price   float64 `json:"price"`
		Version int64   `json:"version"`
	} `json:"ticket"`
}

// mustOrder places an order of user for ticketID and returns it.
func (s *service) mustOrder(tb testing.TB, user, ticketID string) orderJSON {
	tb.Helper()
	status, body := s.do(tb, "POST", "/api/orders", user, `{"ticketId":"`+ticketID+`"}`)
	if status != http.StatusCreated {
		tb.Fatalf("create order: %d %s", status, body)
	}
	var o orderJSON
	if err := json.Unmarshal(body, &o); err != nil {
		tb.Fatal(err)
	}
	return o
}

func (s *service) order(tb testing.TB, id string) *domain.Order {
	tb.Helper()
	o, err := s.Store.Order(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	return o
}

// mustTicket publishes ticket:created (and ticket:updated up to version) and
// waits until the service's replica has it.
func (s *service) mustTicket(tb testing.TB, title string, price float64) domain.Ticket {
	tb.Helper()
	t := domain.Ticket{ID: primitive.NewObjectID().Hex(), Title: title, Price: price}
	s.publish(tb, events.TicketCreated{ID: t.ID, Title: title, Price: price, UserID: "seller"})
	s.waitTicket(tb, t)
	return t
}

func (s *service) waitTicket(tb testing.TB, want domain.Ticket) {
	tb.Helper()
	testenv.Eventually(tb, 20*time.Second, "replica of ticket "+want.ID, func() bool {
		got, err := s.Store.Ticket(context.Background(), want.ID)
		return err == nil && got == want
	})
}

func (s *service) publish(tb testing.TB, e events.Event) {
	tb.Helper()
	if err := s.Conn.Publish(context.Background(), e); err != nil {
		tb.Fatal(err)
	}
}

// observer records the order events the service publishes.
type observer struct {
	mu        sync.Mutex
	created   map[string][]events.OrderCreatedEvent
	cancelled map[string][]events.OrderCancelledEvent
}

func observe(tb testing.TB, c *events.Conn) *observer {
	tb.Helper()
	o := &observer{created: map[string][]events.OrderCreatedEvent{}, cancelled: map[string][]events.OrderCancelledEvent{}}
	group := "observer-" + primitive.NewObjectID().Hex()
	err := c.Subscribe(events.Subscription{Subject: events.SubjectOrderCreated, QueueGroup: group, AckWait: 5 * time.Second},
		events.Decode(func(_ context.Context, e events.OrderCreatedEvent, _ *events.Msg) error {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.created[e.ID] = append(o.created[e.ID], e)
			return nil
		}))
	if err != nil {
		tb.Fatal(err)
	}
	err = c.Subscribe(events.Subscription{Subject: events.SubjectOrderCancelled, QueueGroup: group, AckWait: 5 * time.Second},
		events.Decode(func(_ context.Context, e events.OrderCancelledEvent, _ *events.Msg) error {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.cancelled[e.ID] = append(o.cancelled[e.ID], e)
			return nil
		}))
	if err != nil {
		tb.Fatal(err)
	}
	return o
}

func (o *observer) counts(id string) (created, cancelled int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.created[id]), len(o.cancelled[id])
}

func (o *observer) createdEvent(id string) events.OrderCreatedEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.created[id][0]
}

func (o *observer) cancelledEvent(id string) events.OrderCancelledEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cancelled[id][0]
}

// waitCounts waits until the events of order id reach the counts given; a
// count above it fails at once.
func (s *service) waitCounts(tb testing.TB, id string, created, cancelled int) {
	tb.Helper()
	testenv.Eventually(tb, 20*time.Second, "order events", func() bool {
		cr, ca := s.observed.counts(id)
		if cr > created || ca > cancelled {
			tb.Fatalf("order %s: %d order:created, %d order:cancelled; want %d, %d", id, cr, ca, created, cancelled)
		}
		return cr == created && ca == cancelled
	})
}
