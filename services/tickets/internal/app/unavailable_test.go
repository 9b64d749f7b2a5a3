package app_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ticketing-go/ticketing/common/lifecycle"
	"github.com/ticketing-go/ticketing/services/tickets/internal/app"
	"github.com/ticketing-go/ticketing/services/tickets/internal/httpapi"
	"github.com/ticketing-go/ticketing/services/tickets/internal/store"
	"github.com/ticketing-go/ticketing/testenv"
)

// TestDatabaseDown: while MongoDB cannot be reached, every route answers
// 503 with Retry-After (a clear "retry later"), never 500.
func TestDatabaseDown(t *testing.T) {
	// The API as Wire mounts it, on a database that cannot be reached (Wire
	// itself would fail creating the indexes).
	api := httpapi.New(store.New(testenv.UnreachableMongoDatabase(t, "tickets"), nil), testKey, nil)
	a := &instance{srv: httptest.NewServer(lifecycle.Handler(app.Service, nil, lifecycle.Parts{Mount: api.Mount}))}
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
