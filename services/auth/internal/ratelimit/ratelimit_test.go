package ratelimit

import (
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestLimiterBurstThenRefill(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	l := NewWithClock(3, time.Minute, c.now)
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("attempt %d refused within the burst", i+1)
		}
	}
	ok, wait := l.Allow("a")
	if ok {
		t.Fatal("4th attempt allowed; want refused")
	}
	if wait <= 0 || wait > 20*time.Second {
		t.Fatalf("retry after %v; want (0, 20s] at 3/min", wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key was limited by the first one")
	}
	c.t = c.t.Add(wait)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused after waiting the advertised time")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("allowed twice after one token refilled")
	}
}

func TestLimiterDisabled(t *testing.T) {
	l := New(0, time.Minute)
	for range 100 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatal("disabled limiter refused")
		}
	}
}

func TestLimiterSweepsIdleKeys(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	l := NewWithClock(2, time.Minute, c.now)
	for _, k := range []string{"a", "b", "c"} {
		l.Allow(k)
	}
	if l.Len() != 3 {
		t.Fatalf("tracking %d keys; want 3", l.Len())
	}
	c.t = c.t.Add(2 * time.Minute)
	l.Allow("d")
	if l.Len() != 1 {
		t.Fatalf("tracking %d keys after they refilled; want 1", l.Len())
	}
}
