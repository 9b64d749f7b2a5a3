// Package inorder applies versioned replica updates in version order
// without stalling on out-of-order delivery.
//
// NATS Streaming may deliver version n+2 of a record before n+1 (several
// publishers, redelivery, queue-group members). The original app leaves
// such a message unacknowledged and waits a whole AckWait (5 s) for its
// redelivery. Here the listener handles every message in its own goroutine
// (package events), so a message that is ahead of a gap waits in Apply:
// as soon as its predecessor is applied in this process it is woken and
// retried; a short poll covers predecessors applied by another process.
// Only after maxWait does it give up with ErrGap (not acknowledged: the
// server's redelivery after AckWait is the fallback across processes).
package inorder

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Outcome is the result of one attempt to apply an update.
type Outcome int

const (
	// Applied: the update was applied (ack).
	Applied Outcome = iota + 1
	// Stale: a duplicate or an older version; nothing to do (ack).
	Stale
	// Ahead: a predecessor is missing; try again once it is applied.
	Ahead
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Stale:
		return "stale"
	case Ahead:
		return "ahead"
	}
	return "unknown"
}

// ErrGap: the predecessor did not arrive within maxWait.
var ErrGap = errors.New("inorder: a predecessor version is missing")

// DefaultPoll is how often a waiting update retries on its own, for
// predecessors applied by another process.
const DefaultPoll = 25 * time.Millisecond

// Gate serialises nothing; it only lets out-of-order updates wait for
// their predecessors. The zero value is not usable; use NewGate.
type Gate struct {
	maxWait time.Duration
	poll    time.Duration

	mu   sync.Mutex
	keys map[string]*key
}

type key struct {
	changed chan struct{} // closed (and replaced) whenever an update on the key is applied
	users   int
}

// Option configures a Gate.
type Option func(*Gate)

// WithPoll sets the retry interval for predecessors applied elsewhere.
func WithPoll(d time.Duration) Option {
	return func(g *Gate) {
		if d > 0 {
			g.poll = d
		}
	}
}

// NewGate returns a Gate whose waiters give up after maxWait.
func NewGate(maxWait time.Duration, opts ...Option) *Gate {
	g := &Gate{maxWait: maxWait, poll: DefaultPoll, keys: map[string]*key{}}
	for _, o := range opts {
		o(g)
	}
	return g
}

// Apply calls try until it reports Applied or Stale (then nil, and the
// waiters on key are woken), an error (returned as is), or until maxWait
// passed with try still reporting Ahead (ErrGap). Between attempts it waits
// for an Apply on the same key in this process or for the poll interval.
func (g *Gate) Apply(ctx context.Context, k string, try func(context.Context) (Outcome, error)) error {
	ent := g.acquire(k)
	defer g.release(k, ent)
	deadline := time.NewTimer(g.maxWait)
	defer deadline.Stop()
	poll := time.NewTimer(g.poll)
	defer poll.Stop()
	for {
		// Take the channel before trying, so an Apply finishing between our
		// try and our wait is not missed.
		g.mu.Lock()
		changed := ent.changed
		g.mu.Unlock()
		out, err := try(ctx)
		if err != nil {
			return err
		}
		switch out {
		case Applied, Stale:
			g.wake(ent)
			return nil
		case Ahead:
		default:
			return errors.New("inorder: try returned an unknown outcome")
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(g.poll)
		select {
		case <-changed:
		case <-poll.C:
		case <-deadline.C:
			return ErrGap
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *Gate) acquire(k string) *key {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.keys[k]
	if e == nil {
		e = &key{changed: make(chan struct{})}
		g.keys[k] = e
	}
	e.users++
	return e
}

func (g *Gate) release(k string, e *key) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e.users--; e.users == 0 {
		delete(g.keys, k)
	}
}

func (g *Gate) wake(e *key) {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(e.changed)
	e.changed = make(chan struct{})
}
