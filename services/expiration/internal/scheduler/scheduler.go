// Package scheduler fires due expirations: it sleeps until the earliest
// pending expiry (woken early when a new one is scheduled, and at least every
// poll interval for expiries scheduled by other replicas), then fires every
// due one.
package scheduler

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ticketing-go/ticketing/common/metrics"
	"github.com/ticketing-go/ticketing/services/expiration/internal/domain"
)

// Store is what the scheduler needs of the expirations store.
type Store interface {
	Due(ctx context.Context, now time.Time, limit int) ([]domain.Expiration, error)
	NextDue(ctx context.Context) (time.Time, bool, error)
	// Fire records expiration:complete once, and has it published; false
	// when already fired or dropped.
	Fire(ctx context.Context, id string, now time.Time) (fired bool, err error)
}

// Scheduler fires expirations when they are due.
type Scheduler struct {
	store Store
	poll  time.Duration
	log   *slog.Logger
	wake  chan struct{}

	mu sync.Mutex
	// target is when the scheduler looks at the store next (its timer);
	// zero before its first look.
	target time.Time
	// looking: a look is under way. It may miss an expiration stored
	// meanwhile, so WakeFor keeps the earliest such expiry in seen, and the
	// look's end sleeps no later than it.
	looking bool
	seen    time.Time
	// Now is the clock (tests may replace it before Run).
	Now func() time.Time
}

var (
	firedTotal = metrics.NewCounter(metrics.CounterOpts{
		Name: "expiration_fired_total",
		Help: "Expirations fired (expiration:complete recorded for publishing) by this process.",
	})
	lateness = metrics.NewHistogram(metrics.HistogramOpts{
		Name:    "expiration_fire_lateness_seconds",
		Help:    "How long after its expiresAt an expiration fired.",
		Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 300},
	})
	wakeups = metrics.NewCounter(metrics.CounterOpts{
		Name: "expiration_scheduler_wakeups_total",
		Help: "Looks at the store asked for before the scheduler's next one (Wake: a new expiration earlier than that).",
	})
)

// batch is how many due expirations one query fetches.
const batch = 100

// New returns a Scheduler.
func New(store Store, poll time.Duration, log *slog.Logger) *Scheduler {
	if poll <= 0 {
		poll = 5 * time.Second
	}
	return &Scheduler{store: store, poll: poll, log: log, wake: make(chan struct{}, 1), Now: time.Now}
}

// Wake makes the scheduler look at the store again now (a new expiration
// may be earlier than the one it sleeps towards).
func (s *Scheduler) Wake() {
	wakeups.Inc()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// WakeFor is Wake for a new expiration due at at: it wakes the scheduler
// only if at is before the time it looks at the store next anyway. Each
// look is two queries (what is due, what is next); an order whose
// expiration is later than the next one due (the usual case: a fixed
// window) costs none. During a look, at only bounds the sleep that follows
// it: waking for every order created during a look would chain looks back
// to back under a steady stream of orders.
func (s *Scheduler) WakeFor(at time.Time) {
	s.mu.Lock()
	if s.looking {
		if s.seen.IsZero() || at.Before(s.seen) {
			s.seen = at
		}
		s.mu.Unlock()
		return
	}
	later := !s.target.IsZero() && !at.Before(s.target)
	s.mu.Unlock()
	if !later {
		s.Wake()
	}
}

func (s *Scheduler) startLook() {
	s.mu.Lock()
	s.looking, s.seen = true, time.Time{}
	s.mu.Unlock()
}

// endLook returns how long to sleep after a look that asked for wait: no
// later than an expiry WakeFor reported during the look.
func (s *Scheduler) endLook(wait time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	if !s.seen.IsZero() {
		wait = min(wait, untilDue(s.seen, now))
	}
	s.looking, s.seen, s.target = false, time.Time{}, now.Add(wait)
	return wait
}

// untilDue is how long from now until at is due. Stored times have
// millisecond precision: a millisecond late is never too early.
func untilDue(at, now time.Time) time.Duration {
	return max(at.Sub(now)+time.Millisecond, 0)
}

// Run fires due expirations until ctx is done.
func (s *Scheduler) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.wake:
		}
		s.startLook()
		wait, err := s.tick(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("firing expirations", "err", err)
			wait = min(s.poll, time.Second)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(s.endLook(wait))
	}
}

// tick fires everything due and returns how long to sleep.
func (s *Scheduler) tick(ctx context.Context) (time.Duration, error) {
	for {
		now := s.Now()
		due, err := s.store.Due(ctx, now, batch)
		if err != nil {
			return 0, err
		}
		for _, e := range due {
			fired, err := s.store.Fire(ctx, e.OrderID, now)
			if err != nil {
				return 0, err
			}
			if fired {
				firedTotal.Inc()
				lateness.Observe(now.Sub(e.ExpiresAt).Seconds())
				s.log.Info("expiration fired", "orderId", e.OrderID, "expiresAt", e.ExpiresAt,
					"lateBy", now.Sub(e.ExpiresAt).Round(time.Millisecond))
			}
		}
		if len(due) < batch {
			break
		}
	}
	next, ok, err := s.store.NextDue(ctx)
	if err != nil {
		return 0, err
	}
	wait := s.poll
	if ok {
		wait = min(wait, untilDue(next, s.Now()))
	}
	return wait, nil
}
