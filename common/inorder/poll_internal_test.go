package inorder

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/events"
)

// The lowest waiter polls at a fifth of the interval while the record is
// moving; the ones behind it, and any waiter while nothing moves, at the
// rank-based rate.
func TestPollDelay(t *testing.T) {
	g := NewGate(time.Minute, WithPoll(100*time.Millisecond))
	e := &key{waiting: map[int64]int{5: 1, 6: 1, 7: 1, 9: 2}}
	cases := []struct {
		version int64
		moving  bool
		want    time.Duration
	}{
		{5, false, 100 * time.Millisecond},
		{5, true, 20 * time.Millisecond},
		{6, true, 200 * time.Millisecond},
		{7, false, 300 * time.Millisecond},
		{9, true, 400 * time.Millisecond},
		{-1, true, 100 * time.Millisecond}, // Apply without versions
	}
	for _, c := range cases {
		if got := g.pollDelay(e, c.version, -1, c.moving, 0); got != c.want {
			t.Errorf("pollDelay(version %d, moving %v) = %v, want %v", c.version, c.moving, got, c.want)
		}
	}
	// Without versions: doubled per idle poll, at most 8x; versioned
	// waiters are ranked instead.
	for idle, want := range []time.Duration{100, 200, 400, 800, 800} {
		if got := g.pollDelay(e, -1, -1, false, idle); got != want*time.Millisecond {
			t.Errorf("pollDelay(no version, %d idle polls) = %v, want %v", idle, got, want*time.Millisecond)
		}
	}
	// ... times one plus the Apply waiters that arrived earlier (at most 4x),
	// at most 16 intervals.
	ranked := &key{arrivals: map[int64]*waiter{3: {}, 4: {}, 7: {}}}
	for _, c := range []struct {
		seq  int64
		idle int
		want time.Duration
	}{{3, 0, 100}, {4, 0, 200}, {7, 1, 600}, {9, 3, 1600}} {
		if got := g.pollDelay(ranked, -1, c.seq, false, c.idle); got != c.want*time.Millisecond {
			t.Errorf("pollDelay(no version, arrival %d, %d idle) = %v, want %v", c.seq, c.idle, got, c.want*time.Millisecond)
		}
	}
	if got := g.pollDelay(e, 5, -1, false, 3); got != 100*time.Millisecond {
		t.Errorf("versioned pollDelay after idle polls = %v, want the ranked 100ms", got)
	}
	if got := NewGate(time.Minute, WithPoll(2*time.Millisecond)).pollDelay(&key{}, 1, -1, true, 0); got != time.Millisecond {
		t.Errorf("fast poll of a 2ms interval = %v, want the 1ms floor", got)
	}
}

// Seen records the version for the gate.
func TestSeenRecordsTheVersion(t *testing.T) {
	a := &Attempt{seen: -1}
	a.Seen(7)
	if a.seen != 7 {
		t.Fatalf("seen = %d", a.seen)
	}
}

// ErrGap is an events.ErrEarly: the subscription redelivers such a message
// without counting it towards MaxDeliveries.
func TestErrGapIsEarly(t *testing.T) {
	if !errors.Is(fmt.Errorf("ticket 7: %w", ErrGap), events.ErrEarly) {
		t.Fatal("ErrGap does not wrap events.ErrEarly")
	}
}
