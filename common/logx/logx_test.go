package logx

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFormatAndLevel(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		json      bool
		debugSeen bool
		wantErr   bool
	}{
		{"local default is text", nil, false, false, false},
		{"cluster default is json", map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, true, false, false},
		{"explicit text in cluster", map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "LOG_FORMAT": "text"}, false, false, false},
		{"explicit json locally", map[string]string{"LOG_FORMAT": "JSON"}, true, false, false},
		{"debug level", map[string]string{"LOG_LEVEL": "debug"}, false, true, false},
		{"bad level falls back to info", map[string]string{"LOG_LEVEL": "loud"}, false, false, true},
		{"bad format falls back", map[string]string{"LOG_FORMAT": "xml"}, false, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := NewWith(env(tc.env), &buf, "tickets")
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			log.Debug("dbg")
			log.Info("hello", "k", "v")
			out := buf.String()
			if got := strings.Contains(out, "dbg"); got != tc.debugSeen {
				t.Errorf("debug record present = %v, want %v:\n%s", got, tc.debugSeen, out)
			}
			last := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
			var m map[string]any
			isJSON := json.Unmarshal([]byte(last), &m) == nil
			if isJSON != tc.json {
				t.Fatalf("json = %v, want %v: %q", isJSON, tc.json, last)
			}
			if isJSON {
				if m["service"] != "tickets" || m["msg"] != "hello" || m["k"] != "v" {
					t.Errorf("record = %v", m)
				}
			} else if !strings.Contains(last, "service=tickets") || !strings.Contains(last, "msg=hello") {
				t.Errorf("record = %q", last)
			}
		})
	}
}

func TestContextAttrs(t *testing.T) {
	var buf bytes.Buffer
	log, _ := NewWith(env(map[string]string{"LOG_FORMAT": "json"}), &buf, "orders")
	ctx := WithAttrs(context.Background(), slog.String("request_id", "abc-1"))
	ctx = WithAttrs(ctx, slog.Int("n", 2))
	log.With("x", 1).InfoContext(ctx, "in request")
	log.Info("no context")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines = %q", lines)
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["request_id"] != "abc-1" || first["n"] != float64(2) || first["x"] != float64(1) {
		t.Errorf("first = %v", first)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if _, ok := second["request_id"]; ok {
		t.Errorf("request_id leaked into a record without context: %v", second)
	}
}
