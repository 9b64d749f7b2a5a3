package main

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// The listener receives what the publisher (go run, as docs/NATS.md says)
// sends, redelivers what it failed, and stops cleanly on cancel.
func TestListenerReceivesPublishedTickets(t *testing.T) {
	n := testenv.EventBus(t)
	t.Setenv("NATS_URL", n.URL)
	t.Setenv("NATS_CLUSTER_ID", n.ClusterID)
	t.Setenv("EVENT_BUS", n.Bus)
	t.Setenv("NATS_SUBJECT_PREFIX", n.SubjectPrefix)

	var out syncBuf
	log := slog.New(slog.NewTextHandler(&out, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, log, []string{"-fail", "1", "-ack-wait", "1s"}) }()

	pub := exec.Command("go", "run", "../publisher", "-n", "2", "-title", "from-publisher")
	if b, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("publisher: %v\n%s", err, b)
	}
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(out.String(), "event received") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("listener output:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := out.String()
	if !strings.Contains(s, "failing on purpose") || !strings.Contains(s, "redelivered=true") || !strings.Contains(s, "from-publisher") {
		t.Fatalf("listener output:\n%s", s)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("listener: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("listener did not stop")
	}
}
