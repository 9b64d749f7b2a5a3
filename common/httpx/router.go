package httpx

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/ticketing-go/ticketing/common/apperr"
)

// RouterOptions configures the base router every service starts from.
type RouterOptions struct {
	Service string       // the service's name, for logs and metrics
	Log     *slog.Logger // request and error log
	Ready   []Check      // readiness checks served on /readyz
}

// NewRouter returns a chi router with what every service needs: request ids,
// panic recovery into the common 500 body, JSON 404/405 bodies, /healthz and
// /readyz, Prometheus /metrics (request latency by route and status) and a
// log line per request with its request id. Services mount their API routes
// on it.
func NewRouter(o RouterOptions) chi.Router {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	r := chi.NewRouter()
	r.Use(middleware.RequestID)
	r.Use(observe(o.Service, log))
	r.Use(recoverer(log))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { WriteError(w, r, log, apperr.ErrNotFound) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusMethodNotAllowed, ErrorBody{Errors: []apperr.FieldError{{Message: "Method not allowed"}}})
	})
	r.Get("/healthz", Healthz)
	r.Get("/readyz", Readyz(o.Ready...))
	r.Method(http.MethodGet, "/metrics", MetricsHandler())
	return r
}

// recoverer turns a panic into a logged 500 in the common format; a panic is
// a bug, but one request's bug must not take the process down.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					WriteError(w, r, log, fmt.Errorf("panic: %v\n%s", v, debug.Stack()))
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}
