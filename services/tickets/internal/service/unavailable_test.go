package service_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ticketing-go/ticketing/services/tickets/internal/service"
	"github.com/ticketing-go/ticketing/testenv"
)

// TestDatabaseDown: while MongoDB cannot be reached, every route answers
// 503 with Retry-After (a clear "retry later"), never 500.
func TestDatabaseDown(t *testing.T) {
	conn := MustConnect(t, sharedNATS(t), "tickets-down")
	svc, err := service.New(service.Deps{DB: testenv.UnreachableMongoDatabase(t, "tickets"), Events: conn, Key: testKey})
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
