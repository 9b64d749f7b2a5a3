// Package ratelimit is an in-memory token-bucket limiter keyed by string
// (here: client IP and email of a sign-in attempt). It is per process: with
// several replicas each allows the configured rate, which still bounds
// password guessing to rate × replicas.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Limiter allows Rate events per Per for each key, with bursts up to Rate.
type Limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter of n events per period per key. n <= 0 disables it.
func New(n int, per time.Duration) *Limiter {
	return NewWithClock(n, per, time.Now)
}

// NewWithClock is New with a clock, for tests.
func NewWithClock(n int, per time.Duration, now func() time.Time) *Limiter {
	l := &Limiter{burst: float64(n), now: now, buckets: map[string]*bucket{}}
	if n > 0 && per > 0 {
		l.rate = float64(n) / per.Seconds()
	}
	return l
}

// Allow takes a token for key. When none is left it returns false and how
// long until the next one is available (for Retry-After).
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if l.rate == 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// sweep drops buckets that have refilled completely (they hold no state a
// fresh bucket would not), at most once per refill period, so memory stays
// bounded by the keys active in the last period.
func (l *Limiter) sweep(now time.Time) {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	if now.Sub(l.lastSweep) < full {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, k)
		}
	}
}

// Len returns the number of keys tracked (for tests and metrics).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
