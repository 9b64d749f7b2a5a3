package inorder_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/inorder"
	"github.com/ticketing-go/ticketing/common/metrics"
	"github.com/ticketing-go/ticketing/testenv"
)

// duplicates reads events_duplicates_total{subject,queue_group} from the
// default registry, as /metrics serves it (0 when not exposed yet).
func duplicates(t *testing.T, subject, group string) float64 {
	t.Helper()
	// Labels are exposed sorted by name.
	want := `events_duplicates_total{queue_group="` + group + `",subject="` + subject + `"} `
	sc := bufio.NewScanner(bytes.NewReader(metrics.Default.Append(nil)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s%s: %v", want, v, err)
			}
			return f
		}
	}
	return 0
}

// TestRedeliveredDuplicateIsCounted: a delivery applied but not
// acknowledged (its handler fails after the write, as when the ack is
// lost) is redelivered by the server; the gate finds its version applied
// (Stale) and it counts once in events_duplicates_total.
func TestRedeliveredDuplicateIsCounted(t *testing.T) {
	n := testenv.EventBus(t)
	group := "dup-" + events.NewClientID("g")
	connect := func() *events.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := events.Connect(ctx, events.Config{Bus: n.Bus, URL: n.URL, ClusterID: n.ClusterID, ClientID: events.NewClientID("dup"),
			SubjectPrefix: n.SubjectPrefix, CloseGrace: time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	subject := string(events.SubjectTicketUpdated)
	before := duplicates(t, subject, group)

	var mu sync.Mutex
	applied := map[string]int64{} // the replica: id -> version
	deliveries := make(chan int, 4)
	gate := inorder.NewGate(5 * time.Second)
	h := events.Decode(func(ctx context.Context, e events.TicketUpdated, m *events.Msg) error {
		err := gate.ApplyVersion(ctx, e.ID, e.Version, func(context.Context, *inorder.Attempt) (inorder.Outcome, error) {
			mu.Lock()
			defer mu.Unlock()
			if v, ok := applied[e.ID]; ok && v >= e.Version {
				return inorder.Stale, nil
			}
			applied[e.ID] = e.Version
			return inorder.Applied, nil
		})
		deliveries <- m.Attempt
		if err == nil && m.Attempt == 1 {
			return errors.New("ack lost (test)") // applied, not acknowledged: redelivered
		}
		return err
	})
	sub := connect()
	if err := sub.Subscribe(events.Subscription{Subject: events.SubjectTicketUpdated, QueueGroup: group, AckWait: time.Second}, h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := connect().Publish(ctx, events.TicketUpdated{ID: "dup-1", Version: 1, Title: "one"}); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 2; want++ {
		select {
		case got := <-deliveries:
			if got != want {
				t.Fatalf("delivery attempt %d, want %d", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no delivery attempt %d within 30s (AckWait 1s)", want)
		}
		if d := duplicates(t, subject, group) - before; d != float64(want-1) {
			t.Fatalf("after delivery %d: events_duplicates_total grew by %v, want %d", want, d, want-1)
		}
	}
}
