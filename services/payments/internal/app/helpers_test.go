package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"

	"github.com/ticketing-go/ticketing/api/apispec"
	"github.com/ticketing-go/ticketing/common/auth"
	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/mongox"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var jwtKey = []byte("test-jwt-key")

// stripeProxy stands in front of stripe-mock. stripe-mock is stateless, so
// the proxy is where the tests count the charges the service sends. It also
// answers the one thing stripe-mock cannot: a decline, for the payment
// method pm_card_chargeDeclined (Stripe's test method for a declined card),
// with the body real Stripe sends.
type stripeProxy struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []stripeCall
	// delay holds every charge this long before forwarding it (makes races
	// between requests real).
	delay time.Duration
	// hold, when set, holds every charge until it is closed.
	hold chan struct{}
	// refunds are the refund requests; failRefunds answers them 500.
	refunds     []stripeCall
	failRefunds bool
}

type stripeCall struct {
	IdempotencyKey string
	Form           url.Values
}

const declinedMessage = "Your card was declined."

func mustStripeProxy(tb testing.TB) *stripeProxy {
	tb.Helper()
	target, err := url.Parse(testenv.StripeMock(tb))
	if err != nil {
		tb.Fatal(err)
	}
	p := &stripeProxy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/payment_intents":
			call := readCall(r)
			p.mu.Lock()
			p.calls = append(p.calls, call)
			delay, hold := p.delay, p.hold
			p.mu.Unlock()
			time.Sleep(delay)
			if hold != nil {
				<-hold
			}
			if call.Form.Get("payment_method") == "pm_card_chargeDeclined" {
				stripeError(w, http.StatusPaymentRequired, fmt.Sprintf(`{"type":"card_error","code":"card_declined","decline_code":"generic_decline","message":%q}`, declinedMessage))
				return
			}
		case r.Method == http.MethodPost && r.URL.Path == "/v1/refunds":
			call := readCall(r)
			p.mu.Lock()
			p.refunds = append(p.refunds, call)
			fail := p.failRefunds
			p.mu.Unlock()
			if fail {
				stripeError(w, http.StatusInternalServerError, `{"type":"api_error","message":"refunds are down"}`)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	tb.Cleanup(p.srv.Close)
	return p
}

// readCall reads the form of a Stripe request and puts the body back for
// the proxy to forward.
func readCall(r *http.Request) stripeCall {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	r.ContentLength = int64(len(body))
	return stripeCall{IdempotencyKey: r.Header.Get("Idempotency-Key"), Form: form}
}

// stripeError answers as Stripe does when it refuses a request.
func stripeError(w http.ResponseWriter, status int, errJSON string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%s}`, errJSON)
}

func (p *stripeProxy) Calls() []stripeCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]stripeCall(nil), p.calls...)
}

func (p *stripeProxy) Refunds() []stripeCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]stripeCall(nil), p.refunds...)
}

// Hold holds every charge from now on until the returned release is called.
func (p *stripeProxy) Hold() (release func()) {
	ch := make(chan struct{})
	p.mu.Lock()
	p.hold = ch
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			p.hold = nil
			p.mu.Unlock()
			close(ch)
		})
	}
}

func (p *stripeProxy) FailRefunds(fail bool) {
	p.mu.Lock()
	p.failRefunds = fail
	p.mu.Unlock()
}

func (p *stripeProxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// harness is one payments service running in-process against real servers.
type harness struct {
	url    string
	stripe *stripeProxy
	db     *mongo.Database
	pub    *events.Conn // the test's own connection: publishes order events, observes payment events
}

// mustStartPayments starts the service; opts may change its Config.
func mustStartPayments(tb testing.TB, opts ...func(*Config)) *harness {
	tb.Helper()
	m := testenv.Mongo(tb)
	n := testenv.EventBus(tb)
	h := &harness{stripe: mustStripeProxy(tb)}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	h.url = "http://" + ln.Addr().String()
	cfg := Config{
		MongoURI: m.URI, MongoDB: m.Database, JWTKey: string(jwtKey),
		NATS:          events.Config{Bus: n.Bus, URL: n.URL, ClusterID: n.ClusterID, ClientID: events.NewClientID("payments-test"), SubjectPrefix: n.SubjectPrefix},
		StripeKey:     "sk_test_123",
		StripeAPIBase: h.stripe.srv.URL,
		StripeTimeout: 10 * time.Second,
		AckWait:       5 * time.Second,
		GapWait:       5 * time.Second,
		// Short, so the 409 case does not make the tests slow; still far
		// longer than a charge through the proxy.
		InProgressWait: 2 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, ln, log) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("payments service: %v", err)
		}
	})

	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	client, db, err := mongox.Connect(sctx, m.URI, m.Database)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	h.db = db
	pub, err := events.Connect(sctx, events.Config{Bus: n.Bus, URL: n.URL, ClusterID: n.ClusterID,
		ClientID: events.NewClientID("payments-test-client"), SubjectPrefix: n.SubjectPrefix}, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = pub.Close() })
	h.pub = pub

	testenv.Eventually(tb, 30*time.Second, "payments ready", func() bool {
		res, err := http.Get(h.url + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	select {
	case err := <-done:
		tb.Fatalf("payments service stopped: %v", err)
	default:
	}
	return h
}

func newID() string { return primitive.NewObjectID().Hex() }

// order publishes order:created for a new order of userID and waits until
// the replica has it.
func (h *harness) order(tb testing.TB, userID string, price float64) string {
	tb.Helper()
	id := newID()
	h.publish(tb, events.OrderCreatedEvent{ID: id, Version: 0, Status: events.OrderCreated, UserID: userID,
		ExpiresAt: time.Now().Add(15 * time.Minute), Ticket: events.OrderTicket{ID: newID(), Price: price}})
	h.waitOrder(tb, id, func(d bson.M) bool { return true })
	return id
}

func (h *harness) cancel(tb testing.TB, orderID string, version int64) {
	tb.Helper()
	h.publish(tb, events.OrderCancelledEvent{ID: orderID, Version: version, Ticket: events.OrderTicket{ID: newID()}})
}

func (h *harness) publish(tb testing.TB, e events.Event) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.pub.Publish(ctx, e); err != nil {
		tb.Fatal(err)
	}
}

// waitOrder waits until the replica document of id satisfies cond.
func (h *harness) waitOrder(tb testing.TB, id string, cond func(bson.M) bool) bson.M {
	tb.Helper()
	var doc bson.M
	testenv.Eventually(tb, 15*time.Second, "order replica "+id, func() bool {
		doc = nil
		err := h.db.Collection("orders").FindOne(context.Background(), bson.M{"_id": id}).Decode(&doc)
		return err == nil && cond(doc)
	})
	return doc
}

type response struct {
	Status int
	Body   map[string]any
	Raw    string
}

// errors returns the messages and fields of an error response.
func (r response) errors() []map[string]any {
	list, _ := r.Body["errors"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// pay posts body to /api/payments as userID ("" = anonymous).
func (h *harness) pay(tb testing.TB, userID, contentType, body string) response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, h.url+"/api/payments", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if userID != "" {
		req.AddCookie(&http.Cookie{Name: auth.CookieName, Value: testenv.Token(tb, jwtKey, userID)})
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	// Every answer must be the one api/openapi.yaml documents.
	if err := apispec.Check(req, res.StatusCode, res.Header, raw); err != nil {
		tb.Errorf("openapi: %v", err)
	}
	r := response{Status: res.StatusCode, Raw: string(raw)}
	if err := json.Unmarshal(raw, &r.Body); err != nil && len(raw) > 0 {
		tb.Fatalf("response %d is not JSON: %q", res.StatusCode, raw)
	}
	return r
}

func payBody(orderID, tok string) string {
	b, _ := json.Marshal(map[string]string{"orderId": orderID, "token": tok})
	return string(b)
}

// observer collects the payment:created events published.
type observer struct {
	mu   sync.Mutex
	seen []events.PaymentCreated
}

func (h *harness) observePayments(tb testing.TB) *observer {
	tb.Helper()
	o := &observer{}
	err := h.pub.Subscribe(events.Subscription{Subject: events.SubjectPaymentCreated, QueueGroup: "test-observer"},
		events.Decode(func(_ context.Context, e events.PaymentCreated, _ *events.Msg) error {
			o.mu.Lock()
			o.seen = append(o.seen, e)
			o.mu.Unlock()
			return nil
		}))
	if err != nil {
		tb.Fatal(err)
	}
	return o
}

func (o *observer) forOrder(orderID string) []events.PaymentCreated {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []events.PaymentCreated
	for _, e := range o.seen {
		if e.OrderID == orderID {
			out = append(out, e)
		}
	}
	return out
}

func (h *harness) paymentsOf(tb testing.TB, orderID string) []bson.M {
	tb.Helper()
	cur, err := h.db.Collection("payments").Find(context.Background(), bson.M{"orderId": orderID})
	if err != nil {
		tb.Fatal(err)
	}
	var docs []bson.M
	if err := cur.All(context.Background(), &docs); err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		tb.Fatal(err)
	}
	return docs
}

// metric reads the value of series (name{labels} as exposed) from the
// service's /metrics: 0 when it is not exposed (no such event yet). The
// registry is the test process's, so it counts for every service the
// package's tests run; they run one at a time.
func (h *harness) metric(tb testing.TB, series string) float64 {
	tb.Helper()
	res, err := http.Get(h.url + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return f
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return 0
}

// cancellationsHandled is how many order:cancelled deliveries the service
// has handled and acknowledged (refund included, when one was due).
func (h *harness) cancellationsHandled(tb testing.TB) float64 {
	tb.Helper()
	return h.metric(tb, `events_consumed_total{result="ack",subject="`+string(events.SubjectOrderCancelled)+`"}`)
}

// waitCancellationsHandled waits until n order:cancelled deliveries more
// than base have been handled and acknowledged.
func (h *harness) waitCancellationsHandled(tb testing.TB, base float64, n int) {
	tb.Helper()
	testenv.Eventually(tb, 15*time.Second, fmt.Sprintf("%d cancellations handled", n), func() bool {
		return h.cancellationsHandled(tb) >= base+float64(n)
	})
}

// waitSweeps waits for n refund sweeps that start after it is called (and
// for the one running then, if any, to end).
func (h *harness) waitSweeps(tb testing.TB, n int) {
	tb.Helper()
	base := h.metric(tb, "payments_refund_sweeps_total")
	testenv.Eventually(tb, 15*time.Second, fmt.Sprintf("%d refund sweeps", n), func() bool {
		return h.metric(tb, "payments_refund_sweeps_total") >= base+float64(n+1)
	})
}
