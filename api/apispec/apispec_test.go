package apispec

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestDocumentIsValid(t *testing.T) {
	doc, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	// Every public route of the issues is documented.
	for _, op := range []struct{ method, path string }{
		{"POST", "/api/users/signup"}, {"POST", "/api/users/signin"}, {"POST", "/api/users/signout"},
		{"GET", "/api/users/currentuser"},
		{"GET", "/api/tickets"}, {"POST", "/api/tickets"}, {"GET", "/api/tickets/{id}"}, {"PUT", "/api/tickets/{id}"},
		{"GET", "/api/orders"}, {"POST", "/api/orders"}, {"GET", "/api/orders/{id}"}, {"DELETE", "/api/orders/{id}"},
		{"POST", "/api/payments"},
	} {
		item := doc.Paths.Value(op.path)
		if item == nil || item.GetOperation(op.method) == nil {
			t.Errorf("%s %s is not documented", op.method, op.path)
		}
	}
}

const (
	ticketID = "5f8f8c44b54764421b7156c3"
	orderID  = "5f8f8c44b54764421b7156c4"
)

func ticket(extra string) string {
	return `{"id":"` + ticketID + `","title":"concert","price":20,"userId":"u1","version":0` + extra + `}`
}

func order(status string) string {
	return `{"id":"` + orderID + `","userId":"u1","status":"` + status + `","expiresAt":"2026-11-26T21:00:00Z","version":0,` +
		`"ticket":{"id":"` + ticketID + `","title":"concert","price":20,"version":1}}`
}

func jsonHeader(kv ...string) http.Header {
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name         string
		method, path string
		status       int
		header       http.Header
		body         string
		wantErr      string // "" = valid
	}{
		{"ticket created", "POST", "/api/tickets", 201, jsonHeader("ETag", `"0"`), ticket(""), ""},
		{"reserved ticket", "GET", "/api/tickets/" + ticketID, 200, jsonHeader(), ticket(`,"orderId":"` + orderID + `"`), ""},
		{"ticket list", "GET", "/api/tickets", 200, jsonHeader(), "[" + ticket("") + "," + ticket("") + "]", ""},
		{"list with trailing slash", "GET", "/api/tickets/", 200, jsonHeader(), "[]", ""},
		{"validation error", "POST", "/api/tickets", 400, jsonHeader(), `{"errors":[{"message":"Title is required","field":"title"}]}`, ""},
		{"unavailable", "GET", "/api/tickets", 503, jsonHeader("Retry-After", "1"), `{"errors":[{"message":"Service unavailable"}]}`, ""},
		{"order", "POST", "/api/orders", 201, jsonHeader(), order("created"), ""},
		{"order awaiting payment", "GET", "/api/orders/" + orderID, 200, jsonHeader(), order("awaiting:payment"), ""},
		{"cancel", "DELETE", "/api/orders/" + orderID, 204, http.Header{}, "", ""},
		{"signed out user", "GET", "/api/users/currentuser", 200, jsonHeader(), `{"currentUser":null}`, ""},
		{"signed in user", "GET", "/api/users/currentuser", 200, jsonHeader(), `{"currentUser":{"id":"u1","email":"a@b.co","iat":1,"exp":2}}`, ""},
		{"signout", "POST", "/api/users/signout", 200, jsonHeader(), `{}`, ""},
		{"payment", "POST", "/api/payments", 201, jsonHeader(), `{"id":"pay1"}`, ""},
		{"unknown route 404", "GET", "/api/nothing", 404, jsonHeader(), `{"errors":[{"message":"Not Found"}]}`, ""},
		{"unknown method 405", "PATCH", "/api/tickets", 405, jsonHeader(), `{"errors":[{"message":"Method not allowed"}]}`, ""},

		{"missing field", "POST", "/api/tickets", 201, jsonHeader(), `{"id":"` + ticketID + `","title":"t","price":1,"version":0}`, "userId"},
		{"extra field", "GET", "/api/tickets/" + ticketID, 200, jsonHeader(), ticket(`,"secret":1`), "secret"},
		{"wrong type", "GET", "/api/tickets/" + ticketID, 200, jsonHeader(), strings.Replace(ticket(""), `"price":20`, `"price":"20"`, 1), "price"},
		{"zero price", "GET", "/api/tickets/" + ticketID, 200, jsonHeader(), strings.Replace(ticket(""), `"price":20`, `"price":0`, 1), "price"},
		{"bad id", "GET", "/api/tickets/" + ticketID, 200, jsonHeader(), strings.Replace(ticket(""), ticketID, "42", 1), "id"},
		{"undocumented status", "POST", "/api/tickets", 418, jsonHeader(), `{"errors":[{"message":"teapot"}]}`, "status is not supported"},
		{"204 elsewhere", "GET", "/api/orders", 204, http.Header{}, "", "status is not supported"},
		{"unknown status value", "GET", "/api/orders/" + orderID, 200, jsonHeader(), order("pending"), "status"},
		{"error body without errors", "POST", "/api/tickets", 400, jsonHeader(), `{"message":"bad"}`, "errors"},
		{"empty errors", "POST", "/api/tickets", 400, jsonHeader(), `{"errors":[]}`, "errors"},
		{"error as text", "POST", "/api/tickets", 400, http.Header{"Content-Type": {"text/plain"}}, "bad", "text/plain"},
		{"undocumented route", "GET", "/api/nothing", 200, jsonHeader(), `{}`, "route not in openapi.yaml"},
		{"404 of unknown route in another format", "GET", "/api/nothing", 404, http.Header{"Content-Type": {"text/plain"}}, "404 page not found", "Content-Type"},
		{"currentUser missing", "GET", "/api/users/currentuser", 200, jsonHeader(), `{}`, "currentUser"},
		{"bad expiresAt", "GET", "/api/orders/" + orderID, 200, jsonHeader(), strings.Replace(order("created"), "2026-11-26T21:00:00Z", "tomorrow", 1), "expiresAt"},
		{"bad ETag", "POST", "/api/tickets", 201, jsonHeader("ETag", "W/abc"), ticket(""), "ETag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			err := Check(req, tc.status, tc.header, []byte(tc.body))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("want valid, got %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("want an error mentioning %q, got none", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("want an error mentioning %q, got %v", tc.wantErr, err)
			}
		})
	}
}

// fakeTB records what Middleware reports instead of failing the test.
type fakeTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) errors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.errs...)
}

func TestMiddleware(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/tickets/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.PathValue("id") == "drift" {
			io.WriteString(w, `{"id":"`+ticketID+`","title":"t","price":1,"userId":"u","version":0,"owner":"u"}`)
			return
		}
		io.WriteString(w, ticket(""))
	})
	tb := &fakeTB{TB: t}
	srv := httptest.NewServer(Middleware(tb, mux))
	t.Cleanup(srv.Close)

	get := func(path string) string {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if body := get("/api/tickets/" + ticketID); body != ticket("") {
		t.Fatalf("body changed on the way: %q", body)
	}
	if errs := tb.errors(); len(errs) != 0 {
		t.Fatalf("valid response reported: %v", errs)
	}
	get("/api/tickets/drift")
	errs := tb.errors()
	if len(errs) != 1 || !strings.Contains(errs[0], "owner") {
		t.Fatalf("drift not reported once: %v", errs)
	}

	// Validator: the same check on the client side.
	tb2 := &fakeTB{TB: t}
	check := Validator(tb2)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/tickets/drift", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	check(req, resp)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"owner"`) {
		t.Errorf("Validator did not restore the body: %q", b)
	}
	if errs := tb2.errors(); len(errs) != 1 || !strings.Contains(errs[0], "owner") {
		t.Errorf("Validator: %v", errs)
	}
}
