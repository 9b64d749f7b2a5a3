package httpx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/httpx"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func errorBody(t *testing.T, rec *httptest.ResponseRecorder) []apperr.FieldError {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q", ct)
	}
	var body struct {
		Errors []apperr.FieldError `json:"errors"`
	}
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body is not {\"errors\":[...]}: %v", err)
	}
	if len(body.Errors) == 0 {
		t.Fatal("error body has no errors")
	}
	return body.Errors
}

func TestWriteError(t *testing.T) {
	cases := []struct {
		name       string
		err        error
		wantStatus int
		want       []apperr.FieldError
	}{
		{"not found", apperr.ErrNotFound, 404, []apperr.FieldError{{Message: "Not Found"}}},
		{"not authorized", apperr.ErrNotAuthorized, 401, []apperr.FieldError{{Message: "Not authorized"}}},
		{"fields", apperr.Fields(
			apperr.FieldError{Field: "title", Message: "Title is required"},
			apperr.FieldError{Field: "price", Message: "Price must be greater than 0"}), 400,
			[]apperr.FieldError{{Field: "title", Message: "Title is required"}, {Field: "price", Message: "Price must be greater than 0"}}},
		{"conflict", apperr.New(apperr.Conflict, "changed"), 409, []apperr.FieldError{{Message: "changed"}}},
		{"unknown error hides details", errors.New("pq: secret table exploded"), 500, []apperr.FieldError{{Message: "Something went wrong"}}},
		{"internal hides message", apperr.New(apperr.Internal, "secret detail"), 500, []apperr.FieldError{{Message: "Something went wrong"}}},
		{"unavailable", apperr.New(apperr.Unavailable, "The database is unavailable"), 503, []apperr.FieldError{{Message: "The database is unavailable"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			httpx.WriteError(rec, httptest.NewRequest("GET", "/x", nil), quiet, c.err)
			if rec.Code != c.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, c.wantStatus)
			}
			got := errorBody(t, rec)
			if len(got) != len(c.want) {
				t.Fatalf("errors = %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("errors = %+v, want %+v", got, c.want)
				}
			}
			if c.wantStatus == 503 && rec.Header().Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		})
	}
}

func TestWriteErrorOmitsEmptyField(t *testing.T) {
	rec := httptest.NewRecorder()
	httpx.WriteError(rec, httptest.NewRequest("GET", "/x", nil), quiet, apperr.ErrNotFound)
	if got := strings.TrimSpace(rec.Body.String()); got != `{"errors":[{"message":"Not Found"}]}` {
		t.Fatalf("body = %s", got)
	}
}

type ticketInput struct {
	Title string  `json:"title"`
	Price float64 `json:"price"`
}

func TestDecode(t *testing.T) {
	cases := []struct {
		name        string
		contentType string
		body        string
		max         int64
		wantCode    apperr.Code // "" means success
		wantField   string
	}{
		{"valid", "application/json", `{"title":"concert","price":10}`, 0, "", ""},
		{"valid with charset", "application/json; charset=utf-8", `{"title":"concert","price":10}`, 0, "", ""},
		{"vendor json", "application/vnd.api+json", `{"title":"a"}`, 0, "", ""},
		{"malformed", "application/json", `{"title":`, 0, apperr.Invalid, ""},
		{"not json at all", "application/json", `title=concert`, 0, apperr.Invalid, ""},
		{"empty body", "application/json", ``, 0, apperr.Invalid, ""},
		{"wrong type", "application/json", `{"title":"a","price":"ten"}`, 0, apperr.Invalid, "price"},
		{"array instead of object", "application/json", `[1,2]`, 0, apperr.Invalid, ""},
		{"two objects", "application/json", `{"title":"a"}{"title":"b"}`, 0, apperr.Invalid, ""},
		{"text/plain", "text/plain", `{"title":"a"}`, 0, apperr.UnsupportedType, ""},
		{"form", "application/x-www-form-urlencoded", `title=a`, 0, apperr.UnsupportedType, ""},
		{"bad content type", "%%%", `{}`, 0, apperr.UnsupportedType, ""},
		{"body without content type", "", `{"title":"a"}`, 0, apperr.UnsupportedType, ""},
		{"too large", "application/json", `{"title":"` + strings.Repeat("x", 100) + `"}`, 50, apperr.TooLarge, ""},
		{"too large after a valid object", "application/json", `{"title":"a"}` + strings.Repeat(" ", 100), 20, apperr.TooLarge, ""},
		{"default limit is 1 MiB", "application/json", `{"title":"` + strings.Repeat("x", 1<<20) + `"}`, 0, apperr.TooLarge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/api/tickets", strings.NewReader(c.body))
			if c.contentType != "" {
				r.Header.Set("Content-Type", c.contentType)
			}
			var dst ticketInput
			err := httpx.Decode(r, &dst, c.max)
			if c.wantCode == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			if got := apperr.CodeOf(err); got != c.wantCode {
				t.Fatalf("Decode error = %v (code %q), want code %q", err, got, c.wantCode)
			}
			var e *apperr.Error
			errors.As(err, &e)
			if c.wantField != "" && (len(e.Fields) == 0 || e.Fields[0].Field != c.wantField) {
				t.Fatalf("fields = %+v, want field %q", e.Fields, c.wantField)
			}
			// and it is answered in the common format with the mapped status
			rec := httptest.NewRecorder()
			httpx.WriteError(rec, r, quiet, err)
			if rec.Code != apperr.Status(c.wantCode) {
				t.Fatalf("status = %d", rec.Code)
			}
			errorBody(t, rec)
		})
	}
}

func TestDecodeEmptyBodyWithoutContentType(t *testing.T) {
	r := httptest.NewRequest("POST", "/", http.NoBody)
	var dst ticketInput
	if err := httpx.Decode(r, &dst, 0); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("Decode(empty, no type) = %v, want invalid (empty body)", err)
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	httpx.WriteJSON(rec, 201, map[string]int{"a": 1})
	if rec.Code != 201 || strings.TrimSpace(rec.Body.String()) != `{"a":1}` {
		t.Fatalf("got %d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	httpx.WriteJSON(rec, 204, map[string]int{"a": 1})
	if rec.Code != 204 || rec.Body.Len() != 0 {
		t.Fatalf("204 with body %q", rec.Body.String())
	}
}

func TestRouterBasics(t *testing.T) {
	r := httpx.NewRouter(httpx.RouterOptions{Service: "test", Log: quiet})
	r.Get("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	r.Post("/only-post", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })

	cases := []struct {
		method, path string
		want         int
		wantMessage  string
	}{
		{"GET", "/healthz", 200, ""},
		{"GET", "/readyz", 200, ""},
		{"GET", "/nope", 404, "Not Found"},
		{"GET", "/only-post", 405, "Method not allowed"},
		{"GET", "/panic", 500, "Something went wrong"},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.want {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, rec.Code, c.want)
			continue
		}
		if c.wantMessage != "" {
			if got := errorBody(t, rec); got[0].Message != c.wantMessage {
				t.Errorf("%s %s message = %q", c.method, c.path, got[0].Message)
			}
		}
	}
}

func TestReadyzReportsFailingChecks(t *testing.T) {
	h := httpx.Readyz(
		httpx.Check{Name: "mongo", Fn: func(context.Context) error { return nil }},
		httpx.Check{Name: "nats", Fn: func(context.Context) error { return errors.New("down") }},
	)
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !bytes.Contains(rec.Body.Bytes(), []byte(`"nats":"down"`)) || bytes.Contains(rec.Body.Bytes(), []byte(`"mongo"`)) {
		t.Fatalf("readyz = %d %s", rec.Code, rec.Body.String())
	}
}
