package app_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/services/orders/internal/app"
	"github.com/ticketing-go/ticketing/services/orders/internal/httpapi"
	"github.com/ticketing-go/ticketing/services/orders/internal/store"
	"github.com/ticketing-go/ticketing/testenv"
)

// TestDatabaseDown: while MongoDB cannot be reached, every route answers
// 503 (retry later), never 500; input that is refused before any database
// access still gets its 4xx.
func TestDatabaseDown(t *testing.T) {
	api := httpapi.New(httpapi.Options{
		Store: store.New(testenv.UnreachableMongoDatabase(t, "orders"), nil), JWTKey: []byte(jwtKey), ExpirationWindow: time.Minute,
	})
	srv := httptest.NewServer(lifecycle.Handler(app.Service, nil, lifecycle.Parts{Mount: api.Mount}))
	t.Cleanup(srv.Close)

	id := primitive.NewObjectID().Hex()
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/api/orders", `{"ticketId":"` + id + `"}`, http.StatusServiceUnavailable},
		{"GET", "/api/orders", "", http.StatusServiceUnavailable},
		{"GET", "/api/orders/" + id, "", http.StatusServiceUnavailable},
		{"DELETE", "/api/orders/" + id, "", http.StatusServiceUnavailable},
		{"POST", "/api/orders", `{"ticketId":"abc"}`, http.StatusBadRequest},
		{"GET", "/api/orders/not-an-id", "", http.StatusNotFound},
	} {
		if status, body := request(t, srv.URL, c.method, c.path, "alice", c.body); status != c.status {
			t.Errorf("%s %s = %d %s, want %d", c.method, c.path, status, body, c.status)
		}
	}
}
