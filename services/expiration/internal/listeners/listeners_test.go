package listeners

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/events"
)

// orderStore is an in-memory Store that holds Schedule until released and
// notes a Drop that runs while a Schedule of the same order is in flight.
// This unit test is about the order of the listener's calls; the app tests
// run the listeners on the real store.
type orderStore struct {
	mu         sync.Mutex
	scheduling bool
	overlapped bool
	dropped    chan struct{}
	entered    chan struct{}
	release    chan struct{}
}

func (s *orderStore) Schedule(context.Context, string, time.Time) (bool, error) {
	s.mu.Lock()
	s.scheduling = true
	s.mu.Unlock()
	s.entered <- struct{}{}
	<-s.release
	s.mu.Lock()
	s.scheduling = false
	s.mu.Unlock()
	return true, nil
}

func (s *orderStore) Drop(context.Context, string) error {
	s.mu.Lock()
	s.overlapped = s.overlapped || s.scheduling
	s.mu.Unlock()
	close(s.dropped)
	return nil
}

// A cancellation delivered while its order's creation is being applied
// waits for it: the drop never runs beside the schedule.
func TestCancellationWaitsForTheScheduleInFlight(t *testing.T) {
	st := &orderStore{dropped: make(chan struct{}), entered: make(chan struct{}, 1), release: make(chan struct{})}
	l := New(st, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	id := "6b1745edaa0e6f81482e202b"
	errs := make(chan error, 2)
	go func() {
		errs <- l.OrderCreated(ctx, events.OrderCreatedEvent{ID: id, ExpiresAt: time.Now().Add(time.Minute)}, nil)
	}()
	<-st.entered
	go func() { errs <- l.OrderCancelled(ctx, events.OrderCancelledEvent{ID: id, Version: 1}, nil) }()
	// The bound this checks: no drop within 200 ms while the schedule is
	// held (without the turn it runs at once).
	select {
	case <-st.dropped:
		t.Fatal("the drop ran while the schedule was in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(st.release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	<-st.dropped
	if st.overlapped {
		t.Fatal("the drop ran beside the schedule")
	}
}
