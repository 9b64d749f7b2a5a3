// Package apispec checks HTTP responses against the OpenAPI document of the
// public API (api/openapi.yaml). The services' API tests wrap the handler
// they test with Middleware, so every response a test provokes is validated
// and the document cannot drift from the code: an undocumented status, a
// missing or extra field, a wrong type is reported as a test error.
package apispec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/ticketing-go/ticketing/api"
)

// Load parses and validates the embedded document.
func Load() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("apispec: parse openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("apispec: openapi.yaml is not a valid OpenAPI 3 document: %w", err)
	}
	return doc, nil
}

// spec is the document and a router over its paths, built once per process.
type spec struct {
	doc    *openapi3.T
	router routers.Router
	errors *openapi3.Schema // the common error body, for unrouted 404/405
}

var (
	once    sync.Once
	shared  *spec
	loadErr error
)

func load() (*spec, error) {
	once.Do(func() {
		doc, err := Load()
		if err != nil {
			loadErr = err
			return
		}
		// Tests serve on 127.0.0.1:<random port>: match on paths only, not
		// on the documented servers.
		doc.Servers = nil
		r, err := legacy.NewRouter(doc)
		if err != nil {
			loadErr = fmt.Errorf("apispec: router: %w", err)
			return
		}
		ref := doc.Components.Schemas["Errors"]
		if ref == nil || ref.Value == nil {
			loadErr = errors.New("apispec: openapi.yaml has no Errors schema")
			return
		}
		shared = &spec{doc: doc, router: r, errors: ref.Value}
	})
	return shared, loadErr
}

// Check validates one response (status, headers, body) to req against the
// document. It returns nil when the response is documented: the route and
// method exist, the status is listed for the operation, and the headers and
// body match their schemas. A 404 or 405 in the common error format is
// accepted for a path or method the document does not have (the routers'
// answers to unknown routes).
func Check(req *http.Request, status int, header http.Header, body []byte) error {
	s, err := load()
	if err != nil {
		return err
	}
	route, params, err := s.find(req)
	if err != nil {
		unrouted := (errors.Is(err, routers.ErrPathNotFound) && status == http.StatusNotFound) ||
			(errors.Is(err, routers.ErrMethodNotAllowed) && status == http.StatusMethodNotAllowed)
		if !unrouted {
			return fmt.Errorf("%s %s: route not in openapi.yaml (%v), answered %d", req.Method, req.URL.Path, err, status)
		}
		if verr := s.errorBody(header, body); verr != nil {
			return fmt.Errorf("%s %s: %d: %w", req.Method, req.URL.Path, status, verr)
		}
		return nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    req,
			PathParams: params,
			Route:      route,
		},
		Status: status,
		Header: header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
		},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s (%s %s): %d: %w", req.Method, req.URL.Path, route.Method, route.Path, status, err)
	}
	return nil
}

// find routes req; a trailing slash ("/api/tickets/", which chi serves like
// "/api/tickets") is tried without it.
func (s *spec) find(req *http.Request) (*routers.Route, map[string]string, error) {
	route, params, err := s.router.FindRoute(req)
	if err != nil && len(req.URL.Path) > 1 && strings.HasSuffix(req.URL.Path, "/") {
		r2 := req.Clone(req.Context())
		r2.URL.Path = strings.TrimSuffix(req.URL.Path, "/")
		r2.URL.RawPath = ""
		if route2, params2, err2 := s.router.FindRoute(r2); err2 == nil {
			return route2, params2, nil
		}
	}
	if err != nil {
		// legacy reports a *routers.RouteError carrying only the reason.
		var re *routers.RouteError
		if errors.As(err, &re) {
			switch re.Reason {
			case routers.ErrPathNotFound.Error():
				return nil, nil, routers.ErrPathNotFound
			case routers.ErrMethodNotAllowed.Error():
				return nil, nil, routers.ErrMethodNotAllowed
			}
		}
	}
	return route, params, err
}

func (s *spec) errorBody(header http.Header, body []byte) error {
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("error answer has Content-Type %q, want application/json", ct)
	}
	v, err := decodeJSON(body)
	if err != nil {
		return fmt.Errorf("error body is not JSON: %w", err)
	}
	if err := s.errors.VisitJSON(v, openapi3.VisitAsResponse()); err != nil {
		return fmt.Errorf("error body does not match the Errors schema: %w", err)
	}
	return nil
}

// Middleware returns next wrapped so that every response it writes is
// checked with Check; a mismatch is reported with tb.Errorf (the test goes
// on, and fails). The response reaches the client unchanged.
func Middleware(tb testing.TB, next http.Handler) http.Handler {
	tb.Helper()
	if _, err := load(); err != nil {
		tb.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The route is matched on the request as it arrived; handlers may
		// change r.URL (chi's Mount does), so check a copy taken now.
		orig := r.Clone(r.Context())
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if err := Check(orig, rec.statusOr200(), w.Header(), rec.body.Bytes()); err != nil {
			tb.Errorf("apispec: response does not match api/openapi.yaml: %v\nbody: %s", err, excerpt(rec.body.Bytes()))
		}
	})
}

// Validator returns a function that checks a response a client received
// (for tests that talk to a server they did not build). It reads and
// restores resp.Body.
func Validator(tb testing.TB) func(req *http.Request, resp *http.Response) {
	tb.Helper()
	if _, err := load(); err != nil {
		tb.Fatal(err)
	}
	return func(req *http.Request, resp *http.Response) {
		tb.Helper()
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			tb.Errorf("apispec: read response body: %v", err)
			return
		}
		if err := Check(req, resp.StatusCode, resp.Header, body); err != nil {
			tb.Errorf("apispec: response does not match api/openapi.yaml: %v\nbody: %s", err, excerpt(body))
		}
	}
}

// recorder passes a response through and keeps a copy of status and body.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body.Write(p)
	return r.ResponseWriter.Write(p)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) statusOr200() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

func excerpt(b []byte) string {
	const max = 512
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// decodeJSON decodes into the generic values schema validation expects
// (float64 numbers, map[string]any objects).
func decodeJSON(b []byte) (any, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}
