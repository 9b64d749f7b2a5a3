package httpx

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/ticketing-go/ticketing/common/logx"
	"github.com/ticketing-go/ticketing/common/metrics"
)

// requestDuration is registered once on the default registry: a test
// process builds many routers, and every one of them observes into it.
// The route label is chi's route pattern ("/api/tickets/{id}"), never the
// raw path, so ids do not blow up the number of series.
var requestDuration = metrics.NewHistogramVec(metrics.HistogramOpts{
	Name:    "http_request_duration_seconds",
	Help:    "Latency of HTTP requests by service, method, route pattern and status code.",
	Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
}, []string{"service", "method", "route", "status"})

// unmatchedRoute labels requests no route matched (404s of unknown paths).
const unmatchedRoute = "unmatched"

// MetricsHandler serves the default metrics registry in the Prometheus
// text format (NewRouter mounts it on /metrics).
func MetricsHandler() http.Handler { return metrics.Handler() }

// observe records the latency of every request and writes one log line per
// request carrying the request id (also returned in X-Request-Id and stored
// in the context for every log record of the request).
func observe(service string, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			id := middleware.GetReqID(r.Context())
			if id != "" {
				w.Header().Set(middleware.RequestIDHeader, id)
				r = r.WithContext(logx.WithAttrs(r.Context(), slog.String("request_id", id)))
			}
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			defer func() {
				status := ww.Status()
				if status == 0 {
					status = http.StatusOK // nothing written: net/http answers 200
				}
				route := unmatchedRoute
				if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
					route = rc.RoutePattern()
				}
				elapsed := time.Since(start)
				requestDuration.WithLabelValues(service, r.Method, route, strconv.Itoa(status)).Observe(elapsed.Seconds())

				// Probes and scrapes arrive every few seconds: keep them out
				// of the default level.
				level := slog.LevelInfo
				switch route {
				case "/healthz", "/readyz", "/metrics":
					level = slog.LevelDebug
				}
				if status >= 500 {
					level = slog.LevelWarn
				}
				log.LogAttrs(r.Context(), level, "request",
					slog.String("method", r.Method),
					slog.String("path", r.URL.Path),
					slog.String("route", route),
					slog.Int("status", status),
					slog.Int("bytes", ww.BytesWritten()),
					slog.Duration("duration", elapsed),
					slog.String("remote", r.RemoteAddr),
				)
			}()
			next.ServeHTTP(ww, r)
		})
	}
}
