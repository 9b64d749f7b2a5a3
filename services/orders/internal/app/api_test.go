package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/services/orders/internal/domain"
	"github.com/ticketing-go/ticketing/services/orders/internal/store"
	"github.com/ticketing-go/ticketing/testenv"
)

type errorsJSON struct {
	Errors []struct {
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"errors"`
}

func wantError(t *testing.T, body []byte, msg, field string) {
	t.Helper()
	var e errorsJSON
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("not an error body: %s", body)
	}
	if msg != "" && e.Errors[0].Message != msg || e.Errors[0].Field != field {
		t.Fatalf("error = %+v, want message %q field %q", e.Errors[0], msg, field)
	}
}

func TestRoutes(t *testing.T) {
	s := MustStartService(t, 15*time.Minute)

	free := s.mustTicket(t, "free", 10)
	held := s.mustTicket(t, "held", 20)
	paid := s.mustTicket(t, "paid", 30)
	heldOrder := s.mustOrder(t, "alice", held.ID)
	paidOrder := s.mustOrder(t, "alice", paid.ID)
	s.publish(t, events.PaymentCreated{ID: primitive.NewObjectID().Hex(), OrderID: paidOrder.ID, StripeID: "pi_1"})
	testenv.Eventually(t, 20*time.Second, "order complete", func() bool { return s.order(t, paidOrder.ID).Status == domain.StatusComplete })
	unknown := primitive.NewObjectID().Hex()

	cases := []struct {
		name, method, path, user, body string
		status                         int
		msg, field                     string
	}{
		{"create401", "POST", "/api/orders", "", `{"ticketId":"` + free.ID + `"}`, 401, "Not authorized", ""},
		{"create400 missing", "POST", "/api/orders", "bob", `{}`, 400, "TicketId must be provided", "ticketId"},
		{"create400 empty", "POST", "/api/orders", "bob", `{"ticketId":""}`, 400, "TicketId must be provided", "ticketId"},
		{"create400 not hex", "POST", "/api/orders", "bob", `{"ticketId":"abc"}`, 400, "TicketId must be provided", "ticketId"},
		{"create400 number", "POST", "/api/orders", "bob", `{"ticketId":12}`, 400, "TicketId must be provided", "ticketId"},
		{"create400 malformed json", "POST", "/api/orders", "bob", `{"ticketId":`, 400, "", ""},
		{"create400 empty body", "POST", "/api/orders", "bob", "", 400, "Request body must not be empty", ""},
		{"create400 not an object", "POST", "/api/orders", "bob", `["` + free.ID + `"]`, 400, "Request body must be a JSON object", ""},
		{"create400 trailing data", "POST", "/api/orders", "bob", `{"ticketId":"` + free.ID + `"} {}`, 400, "Request body must be a single JSON object", ""},
		{"create404 unknown ticket", "POST", "/api/orders", "bob", `{"ticketId":"` + unknown + `"}`, 404, "Not Found", ""},
		{"create400 reserved", "POST", "/api/orders", "bob", `{"ticketId":"` + held.ID + `"}`, 400, "Ticket is already reserved", ""},
		{"create400 reserved by own order", "POST", "/api/orders", "alice", `{"ticketId":"` + held.ID + `"}`, 400, "Ticket is already reserved", ""},
		{"create400 complete order holds it", "POST", "/api/orders", "bob", `{"ticketId":"` + paid.ID + `"}`, 400, "Ticket is already reserved", ""},
		{"list401", "GET", "/api/orders", "", "", 401, "Not authorized", ""},
		{"get401 anonymous", "GET", "/api/orders/" + heldOrder.ID, "", "", 401, "Not authorized", ""},
		{"get401 another user's", "GET", "/api/orders/" + heldOrder.ID, "bob", "", 401, "Not authorized", ""},
		{"get404", "GET", "/api/orders/" + unknown, "alice", "", 404, "Not Found", ""},
		{"get404 malformed id", "GET", "/api/orders/not-an-id", "alice", "", 404, "Not Found", ""},
		{"delete401 anonymous", "DELETE", "/api/orders/" + heldOrder.ID, "", "", 401, "Not authorized", ""},
		{"delete401 another user's", "DELETE", "/api/orders/" + heldOrder.ID, "bob", "", 401, "Not authorized", ""},
		{"delete404", "DELETE", "/api/orders/" + unknown, "alice", "", 404, "Not Found", ""},
		{"delete404 malformed id", "DELETE", "/api/orders/xyz", "alice", "", 404, "Not Found", ""},
		{"delete400 completed", "DELETE", "/api/orders/" + paidOrder.ID, "alice", "", 400, "Cannot cancel a completed order", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := s.do(t, c.method, c.path, c.user, c.body)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			wantError(t, body, c.msg, c.field)
		})
	}
	t.Run("create415 not json", func(t *testing.T) {
		req, _ := http.NewRequest("POST", s.URL+"/api/orders", strings.NewReader("ticketId="+free.ID))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+testenv.Token(t, []byte(jwtKey), "bob"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d", res.StatusCode)
		}
	})
	// The refused requests changed nothing.
	if o := s.order(t, heldOrder.ID); o.Status != domain.StatusCreated || o.Version != 0 {
		t.Fatalf("held order after refused requests: %+v", o)
	}
	if o := s.order(t, paidOrder.ID); o.Status != domain.StatusComplete || o.Version != 0 {
		t.Fatalf("paid order after refused requests: %+v", o)
	}

	t.Run("create201", func(t *testing.T) {
		before := time.Now()
		o := s.mustOrder(t, "bob", free.ID)
		exp, err := time.Parse(time.RFC3339, o.ExpiresAt)
		if err != nil {
			t.Fatalf("expiresAt %q: %v", o.ExpiresAt, err)
		}
		if exp.Before(before.Add(15*time.Minute).Add(-time.Second)) || exp.After(time.Now().Add(15*time.Minute)) {
			t.Fatalf("expiresAt %v not now+15m", exp)
		}
		if o.UserID != "bob" || o.Status != "created" || o.Version != 0 ||
			o.Ticket.ID != free.ID || o.Ticket.Title != "free" || o.Ticket.Price != 10 || o.Ticket.Version != 0 {
			t.Fatalf("order = %+v", o)
		}
		s.waitCounts(t, o.ID, 1, 0)
		e := s.observed.createdEvent(o.ID)
		if e.Version != 0 || e.Status != events.OrderCreated || e.UserID != "bob" || e.Ticket.ID != free.ID ||
			e.Ticket.Price != 10 || !e.ExpiresAt.Truncate(time.Second).Equal(exp) {
			t.Fatalf("order:created = %+v", e)
		}
	})

	t.Run("get200", func(t *testing.T) {
		status, body := s.do(t, "GET", "/api/orders/"+heldOrder.ID, "alice", "")
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		var o orderJSON
		_ = json.Unmarshal(body, &o)
		if o != heldOrder {
			t.Fatalf("got %+v, want %+v", o, heldOrder)
		}
	})

	t.Run("list200 newest first, only mine", func(t *testing.T) {
		status, body := s.do(t, "GET", "/api/orders", "alice", "")
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		var os []orderJSON
		if err := json.Unmarshal(body, &os); err != nil {
			t.Fatal(err)
		}
		if len(os) != 2 || os[0].ID != paidOrder.ID || os[1].ID != heldOrder.ID ||
			os[0].Status != "complete" || os[0].Ticket.Title != "paid" || os[1].Ticket.Price != 20 {
			t.Fatalf("list = %+v", os)
		}
		status, body = s.do(t, "GET", "/api/orders", "nobody", "")
		if status != 200 || strings.TrimSpace(string(body)) != "[]" {
			t.Fatalf("empty list: %d %s", status, body)
		}
	})

	t.Run("delete204 idempotent, one event, ticket free again", func(t *testing.T) {
		status, body := s.do(t, "DELETE", "/api/orders/"+heldOrder.ID, "alice", "")
		if status != http.StatusNoContent || len(body) != 0 {
			t.Fatalf("%d %s", status, body)
		}
		o := s.order(t, heldOrder.ID)
		if o.Status != domain.StatusCancelled || o.Version != 1 {
			t.Fatalf("after cancel: %+v", o)
		}
		s.waitCounts(t, heldOrder.ID, 1, 1)
		if e := s.observed.cancelledEvent(heldOrder.ID); e.Version != 1 || e.Ticket.ID != held.ID {
			t.Fatalf("order:cancelled = %+v", e)
		}
		rev := s.rev(t, heldOrder.ID)
		status, body = s.do(t, "DELETE", "/api/orders/"+heldOrder.ID, "alice", "")
		if status != http.StatusNoContent {
			t.Fatalf("second cancel: %d %s", status, body)
		}
		if s.rev(t, heldOrder.ID) != rev {
			t.Fatal("second cancel wrote to the order (and could have queued an event)")
		}
		again := s.mustOrder(t, "bob", held.ID)
		if again.Ticket.ID != held.ID {
			t.Fatalf("re-order = %+v", again)
		}
	})
}

// rev reads the store's internal revision of an order: it changes on every write.
func (s *service) rev(t *testing.T, id string) int64 {
	t.Helper()
	oid, _ := primitive.ObjectIDFromHex(id)
	var d struct {
		Rev int64 `bson:"rev"`
	}
	if err := s.DB.Collection(store.OrdersCollection).FindOne(context.Background(), bson.M{"_id": oid}).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d.Rev
}

func TestConcurrentReservationsOneWinner(t *testing.T) {
	s := MustStartService(t, 15*time.Minute)
	tk := s.mustTicket(t, "hot", 99)

	const n = 50
	statuses := make([]int, n)
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			statuses[i], bodies[i] = s.do(t, "POST", "/api/orders", fmt.Sprintf("user%d", i), `{"ticketId":"`+tk.ID+`"}`)
		}(i)
	}
	close(start)
	wg.Wait()
	created := 0
	for i, st := range statuses {
		switch st {
		case http.StatusCreated:
			created++
		case http.StatusBadRequest:
			wantError(t, bodies[i], "Ticket is already reserved", "")
		default:
			t.Fatalf("request %d: %d %s", i, st, bodies[i])
		}
	}
	if created != 1 {
		t.Fatalf("%d of %d concurrent reservations got 201, want exactly 1", created, n)
	}
	if c, _ := s.DB.Collection(store.OrdersCollection).CountDocuments(context.Background(), bson.M{}); c != 1 {
		t.Fatalf("%d orders stored", c)
	}
}

func TestExpirationCancelsOnlyActiveOrders(t *testing.T) {
	s := MustStartService(t, 15*time.Minute)
	active := s.mustOrder(t, "u", s.mustTicket(t, "a", 1).ID)
	awaiting := s.mustOrder(t, "u", s.mustTicket(t, "b", 1).ID)
	complete := s.mustOrder(t, "u", s.mustTicket(t, "c", 1).ID)
	cancelled := s.mustOrder(t, "u", s.mustTicket(t, "d", 1).ID)

	// awaiting:payment is never set by the API (kept for compatibility); put it there directly.
	oid, _ := primitive.ObjectIDFromHex(awaiting.ID)
	if _, err := s.DB.Collection(store.OrdersCollection).UpdateOne(context.Background(), bson.M{"_id": oid},
		bson.M{"$set": bson.M{"status": string(domain.StatusAwaitingPayment)}}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, events.PaymentCreated{ID: primitive.NewObjectID().Hex(), OrderID: complete.ID, StripeID: "pi"})
	testenv.Eventually(t, 20*time.Second, "complete", func() bool { return s.order(t, complete.ID).Status == domain.StatusComplete })
	if st, b := s.do(t, "DELETE", "/api/orders/"+cancelled.ID, "u", ""); st != 204 {
		t.Fatalf("cancel: %d %s", st, b)
	}
	s.waitCounts(t, cancelled.ID, 1, 1)
	revComplete, revCancelled := s.rev(t, complete.ID), s.rev(t, cancelled.ID)

	for _, o := range []orderJSON{active, awaiting, complete, cancelled} {
		s.publish(t, events.ExpirationComplete{OrderID: o.ID})
	}
	// An unknown and a malformed order id must not block the listener.
	s.publish(t, events.ExpirationComplete{OrderID: primitive.NewObjectID().Hex()})
	s.publish(t, events.ExpirationComplete{OrderID: "garbage"})

	for _, o := range []orderJSON{active, awaiting} {
		s.waitCounts(t, o.ID, 1, 1)
		got := s.order(t, o.ID)
		if got.Status != domain.StatusCancelled || got.Version != 1 {
			t.Fatalf("expired order = %+v", got)
		}
		if e := s.observed.cancelledEvent(o.ID); e.Version != 1 {
			t.Fatalf("order:cancelled = %+v", e)
		}
	}
	// Redelivered expiration of an expired order: no second event.
	s.publish(t, events.ExpirationComplete{OrderID: active.ID})
	// A marker published after everything above: messages of one subject
	// are delivered in order, so once the marker is handled the earlier ones
	// have been delivered (and handled alongside it).
	marker := s.mustOrder(t, "u", s.mustTicket(t, "e", 1).ID)
	s.publish(t, events.ExpirationComplete{OrderID: marker.ID})
	s.waitCounts(t, marker.ID, 1, 1)

	if got := s.order(t, complete.ID); got.Status != domain.StatusComplete || got.Version != 0 || s.rev(t, complete.ID) != revComplete {
		t.Fatalf("complete order touched by expiration: %+v", got)
	}
	if got := s.order(t, cancelled.ID); got.Version != 1 || s.rev(t, cancelled.ID) != revCancelled {
		t.Fatalf("cancelled order touched by expiration: %+v", got)
	}
	if _, ca := s.observed.counts(active.ID); ca != 1 {
		t.Fatalf("%d order:cancelled for the expired order", ca)
	}
}

func TestPaymentCompletesOrder(t *testing.T) {
	s := MustStartService(t, 15*time.Minute)
	tk := s.mustTicket(t, "show", 42)
	o := s.mustOrder(t, "payer", tk.ID)
	s.waitCounts(t, o.ID, 1, 0)

	p := events.PaymentCreated{ID: primitive.NewObjectID().Hex(), OrderID: o.ID, StripeID: "pi_123"}
	s.publish(t, p)
	s.publish(t, p) // a duplicate delivery changes nothing
	testenv.Eventually(t, 20*time.Second, "order complete", func() bool { return s.order(t, o.ID).Status == domain.StatusComplete })

	status, body := s.do(t, "GET", "/api/orders/"+o.ID, "payer", "")
	var got orderJSON
	_ = json.Unmarshal(body, &got)
	// The replicated version stays 0: completing publishes nothing, so no
	// replica may be left waiting for a version 1 it never sees.
	if status != 200 || got.Status != "complete" || got.Version != 0 {
		t.Fatalf("%d %+v", status, got)
	}
	if st, b := s.do(t, "DELETE", "/api/orders/"+o.ID, "payer", ""); st != 400 {
		t.Fatalf("cancel a paid order: %d %s", st, b)
	}
	s.publish(t, events.ExpirationComplete{OrderID: o.ID})
	if st, b := s.do(t, "POST", "/api/orders", "other", `{"ticketId":"`+tk.ID+`"}`); st != 400 {
		t.Fatalf("reserve a paid ticket: %d %s", st, b)
	}

	// A payment for an order cancelled meanwhile leaves it cancelled (the payments service refunds it).
	tk2 := s.mustTicket(t, "late", 1)
	late := s.mustOrder(t, "payer", tk2.ID)
	s.publish(t, events.ExpirationComplete{OrderID: late.ID})
	s.waitCounts(t, late.ID, 1, 1)
	s.publish(t, events.PaymentCreated{ID: primitive.NewObjectID().Hex(), OrderID: late.ID, StripeID: "pi_late"})
	// Marker on the same subject, delivered after the late payment.
	marker := s.mustOrder(t, "payer", s.mustTicket(t, "marker", 1).ID)
	s.publish(t, events.PaymentCreated{ID: primitive.NewObjectID().Hex(), OrderID: marker.ID, StripeID: "pi_m"})
	testenv.Eventually(t, 20*time.Second, "marker complete", func() bool { return s.order(t, marker.ID).Status == domain.StatusComplete })
	if got := s.order(t, o.ID); got.Status != domain.StatusComplete {
		t.Fatalf("expiration of a paid order changed it: %+v", got)
	}
	if got := s.order(t, late.ID); got.Status != domain.StatusCancelled {
		t.Fatalf("late payment revived the order: %+v", got)
	}
	if _, ca := s.observed.counts(o.ID); ca != 0 {
		t.Fatalf("paid order got %d order:cancelled", ca)
	}
}
