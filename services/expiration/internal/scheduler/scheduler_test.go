package scheduler

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/services/expiration/internal/domain"
	"github.com/ticketing-go/ticketing/testenv"
)

// memStore is an in-memory Store: this unit test is about when the
// scheduler looks at its store, not about the store (the app tests run the
// scheduler on the real one).
type memStore struct {
	mu    sync.Mutex
	due   map[string]time.Time
	looks int // NextDue calls: one per look at the store
	// hold, when set, keeps the next look in Due (after a send on entered)
	// until it is closed.
	hold, entered chan struct{}
}

func (m *memStore) Due(_ context.Context, now time.Time, _ int) ([]domain.Expiration, error) {
	m.mu.Lock()
	if hold := m.hold; hold != nil {
		m.hold = nil
		m.mu.Unlock()
		m.entered <- struct{}{}
		<-hold
		m.mu.Lock()
	}
	defer m.mu.Unlock()
	var out []domain.Expiration
	for id, at := range m.due {
		if !at.After(now) {
			out = append(out, domain.Expiration{OrderID: id, ExpiresAt: at})
		}
	}
	return out, nil
}

func (m *memStore) NextDue(context.Context) (time.Time, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.looks++
	var next time.Time
	for _, at := range m.due {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, !next.IsZero(), nil
}

func (m *memStore) Fire(_ context.Context, id string, _ time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.due[id]
	delete(m.due, id)
	return ok, nil
}

func (m *memStore) add(id string, at time.Time) {
	m.mu.Lock()
	m.due[id] = at
	m.mu.Unlock()
}

func (m *memStore) lookCount() int { m.mu.Lock(); defer m.mu.Unlock(); return m.looks }

func (m *memStore) pending(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.due[id]
	return ok
}

// runScheduler runs a scheduler on st, polling hourly, until the test ends.
func runScheduler(t *testing.T, st *memStore) *Scheduler {
	s := New(st, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s
}

// An expiration due after the one the scheduler sleeps towards does not
// make it look at the store; an earlier one does, and fires on time.
func TestWakeForLooksOnlyForAnEarlierExpiration(t *testing.T) {
	st := &memStore{due: map[string]time.Time{"first": time.Now().Add(time.Hour)}}
	s := runScheduler(t, st)
	testenv.Eventually(t, 5*time.Second, "the first look", func() bool { return st.lookCount() == 1 })
	testenv.Eventually(t, 5*time.Second, "a target", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return !s.target.IsZero() })

	woken := wakeups.Value()
	for i := 0; i < 10; i++ {
		at := time.Now().Add(2 * time.Hour)
		st.add("later"+string(rune('a'+i)), at)
		s.WakeFor(at)
	}
	// WakeFor decides at once: no look was asked for, so (its timer an
	// hour away) the scheduler has nothing that makes it look now.
	if n := wakeups.Value() - woken; n != 0 {
		t.Fatalf("%v looks asked for by 10 later expirations, want none", n)
	}
	if n := st.lookCount(); n != 1 {
		t.Fatalf("%d looks after 10 later expirations, want 1", n)
	}

	soon := time.Now().Add(30 * time.Millisecond)
	st.add("soon", soon)
	s.WakeFor(soon)
	testenv.Eventually(t, 5*time.Second, "the earlier expiration fired", func() bool { return !st.pending("soon") })
	if n := st.lookCount(); n < 2 {
		t.Fatalf("%d looks, want a look for the earlier expiration", n)
	}
}

// holdNextLook makes the scheduler's next look wait in Due; the returned
// function lets it go on.
func (m *memStore) holdNextLook() (entered <-chan struct{}, release func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hold := make(chan struct{})
	m.hold, m.entered = hold, make(chan struct{}, 1)
	return m.entered, func() { close(hold) }
}

// Orders created while the scheduler looks at the store do not make it look
// again at once (under a steady stream of orders, looks would run back to
// back): a later expiry asks for nothing, an earlier one shortens the sleep
// that follows the look, and fires on time.
func TestWakeForDuringALookBoundsTheNextSleep(t *testing.T) {
	st := &memStore{due: map[string]time.Time{"first": time.Now().Add(time.Hour)}}
	s := runScheduler(t, st)
	sleeping := func() bool { s.mu.Lock(); defer s.mu.Unlock(); return !s.looking && !s.target.IsZero() }
	testenv.Eventually(t, 5*time.Second, "the first look", func() bool { return st.lookCount() == 1 && sleeping() })

	entered, release := st.holdNextLook()
	s.Wake()
	<-entered
	woken := wakeups.Value()
	for i := 0; i < 10; i++ {
		at := time.Now().Add(2 * time.Hour)
		st.add("later"+string(rune('a'+i)), at)
		s.WakeFor(at)
	}
	release()
	testenv.Eventually(t, 5*time.Second, "the look's end", func() bool { return st.lookCount() == 2 && sleeping() })
	// Nothing asked for another look: no wake-up counted, none queued, and
	// the timer is set to the hour of the earliest expiry.
	if n := wakeups.Value() - woken; n != 0 {
		t.Fatalf("%v looks asked for by 10 later expirations during a look, want none", n)
	}
	if len(s.wake) != 0 {
		t.Fatal("a look is queued after the look")
	}
	s.mu.Lock()
	target := s.target
	s.mu.Unlock()
	if until := time.Until(target); until < 50*time.Minute {
		t.Fatalf("next look in %v, want about an hour (the first expiry)", until)
	}

	entered, release = st.holdNextLook()
	s.Wake()
	<-entered
	soon := time.Now().Add(30 * time.Millisecond)
	st.add("soon", soon)
	s.WakeFor(soon)
	release()
	testenv.Eventually(t, 5*time.Second, "the expiration stored during the look fired", func() bool { return !st.pending("soon") })
}
