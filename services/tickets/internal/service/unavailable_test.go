package service_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/services/tickets/internal/service"
)

// TestDatabaseDown: while MongoDB cannot be reached, every route answers
// 503 with Retry-After (a clear "retry later"), never 500.
func TestDatabaseDown(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	client, err := mongo.Connect(context.Background(), options.Client().ApplyURI("mongodb://"+addr).
		SetServerSelectionTimeout(300*time.Millisecond).SetConnectTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	conn := MustConnect(t, sharedNATS(t), "tickets-down")
	svc, err := service.New(service.Deps{DB: client.Database("tickets"), Events: conn, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	a := &app{svc: svc, srv: httptest.NewServer(svc.Handler)}
	t.Cleanup(a.srv.Close)

	id := "0123456789abcdef01234567"
	for _, r := range []req{
		{Method: "GET", Path: "/api/tickets"},
		{Method: "GET", Path: "/api/tickets/" + id},
		{Method: "POST", Path: "/api/tickets", User: "u", Body: `{"title":"t","price":1}`},
		{Method: "PUT", Path: "/api/tickets/" + id, User: "u", Body: `{"title":"t","price":1}`},
	} {
		resp := a.do(t, r)
		if resp.Status != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s = %d %s, want 503 with Retry-After", r.Method, r.Path, resp.Status, resp.Body)
		}
	}
}
