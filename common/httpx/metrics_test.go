package httpx

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ticketing-go/ticketing/common/logx"
)

func TestMetricsAndRequestLog(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(logx.Handler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	r := NewRouter(RouterOptions{Service: "metricstest", Log: log})
	r.Get("/api/things/{id}", func(w http.ResponseWriter, r *http.Request) {
		log.InfoContext(r.Context(), "handler ran")
		w.WriteHeader(http.StatusTeapot)
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	for _, id := range []string{"a", "b", "c"} {
		resp, err := http.Get(srv.URL + "/api/things/" + id)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTeapot {
			t.Fatalf("status = %d", resp.StatusCode)
		}
		if resp.Header.Get("X-Request-Id") == "" {
			t.Error("no X-Request-Id in the response")
		}
	}
	if resp, err := http.Get(srv.URL + "/nowhere/at/all"); err == nil {
		resp.Body.Close()
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics status = %d", resp.StatusCode)
	}
	text := string(body)
	for _, want := range []string{
		`http_request_duration_seconds_count{method="GET",route="/api/things/{id}",service="metricstest",status="418"} 3`,
		`http_request_duration_seconds_count{method="GET",route="unmatched",service="metricstest",status="404"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(text, `route="/api/things/a"`) {
		t.Error("raw path used as a route label")
	}

	// The handler's own log line and the request line share the request id.
	var handlerID, requestID string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		id, _ := m["request_id"].(string)
		switch {
		case m["msg"] == "handler ran" && handlerID == "":
			handlerID = id
		case m["msg"] == "request" && m["route"] == "/api/things/{id}" && requestID == "":
			requestID = id
			if m["status"] != float64(418) {
				t.Errorf("request log status = %v", m["status"])
			}
		}
	}
	if handlerID == "" || handlerID != requestID {
		t.Errorf("request ids: handler %q, request log %q", handlerID, requestID)
	}
}

func TestPanicCountedAs500(t *testing.T) {
	r := NewRouter(RouterOptions{Service: "panictest", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	r.Get("/boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/boom", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := `http_request_duration_seconds_count{method="GET",route="/boom",service="panictest",status="500"} 1`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
