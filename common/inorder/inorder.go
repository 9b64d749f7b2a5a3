// Package inorder applies versioned replica updates in version order
// without stalling on out-of-order delivery.
//
// NATS Streaming may deliver version n+2 of a record before n+1 (several
// publishers, redelivery, queue-group members). The original app leaves
// such a message unacknowledged and waits a whole AckWait (5 s) for its
// redelivery. Here the listener handles every message on a worker of its own
// (package events), so a message that is ahead of a gap waits in Apply:
// as soon as its predecessor is applied in this process it is woken and
// retried; a short poll covers predecessors applied by another process.
// The tries of one key run one at a time in a process: concurrent ones
// would only race each other's conditional writes.
// Only after maxWait does it give up with ErrGap (not acknowledged: the
// server's redelivery after AckWait is the fallback across processes).
package inorder

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ticketing-go/ticketing/common/events"
)

// Outcome is the result of one attempt to apply an update.
type Outcome int

const (
	// Applied: the update was applied (ack).
	Applied Outcome = iota + 1
	// Stale: a duplicate or an older version; nothing to do (ack). Counted
	// in events_duplicates_total (events.Duplicate).
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

// ErrGap: the predecessor did not arrive within maxWait. It wraps
// events.ErrEarly, so the subscription redelivers the message without
// counting it towards MaxDeliveries.
var ErrGap = fmt.Errorf("inorder: a predecessor version is missing: %w", events.ErrEarly)

// maxApplyPoll caps the poll delay of an Apply waiter, in poll intervals:
// 400 ms at the default, so what another process applied is seen within
// that even by the last of many waiters.
const maxApplyPoll = 16

// DefaultPoll is how often a waiting update retries on its own, for
// predecessors applied by another process.
const DefaultPoll = 25 * time.Millisecond

// Gate lets out-of-order updates wait in-process for their predecessors,
// and runs the tries of one key one at a time in this process (key.turn);
// across processes the store's conditional writes decide. The zero value
// is not usable; use NewGate.
type Gate struct {
	maxWait time.Duration
	poll    time.Duration

	mu   sync.Mutex
	keys map[string]*key

	// trace, if set (by tests: see export_test.go), is told of the steps
	// of an update that nothing else shows (see stepTurn); it may block
	// the update at stepTurn. Nil in production.
	trace func(k string, version int64, step string)
}

// Steps of an update in Gate.apply, as reported to Gate.trace.
const (
	stepTurn    = "turn"    // about to queue for the key's turn (for each attempt)
	stepWaiting = "waiting" // its first attempt was Ahead: now a waiter on the key
	stepWoken   = "woken"   // a waiter, woken by an apply on the key in this process, tries again
	stepSlept   = "slept"   // a waiter slept through an apply on the key (another state than it needs, not its turn, or not its predecessor)
)

func (g *Gate) step(k string, version int64, s string) {
	if g.trace != nil {
		g.trace(k, version, s)
	}
}

type key struct {
	changed chan struct{} // closed (and replaced) whenever an update on the key is applied
	// turn is held while a try on the key runs: one at a time per key in
	// this process. Concurrent tries on one record only race each other's
	// conditional writes (one wins, the others read again and retry), which
	// costs store round trips and wins nothing.
	turn  chan struct{}
	users int
	// highest version applied (or found stale) through ApplyVersion while
	// the key had waiters; lets a waiter for n sleep through wake-ups for
	// versions below n-1 instead of querying the store on each.
	applied int64
	known   bool
	// versions waiting on the key in this process (ApplyVersion only)
	waiting map[int64]int
	// versions being applied on the key in this process, waiting or not
	// (ApplyVersion only): a version does not try while a lower one that
	// may be its predecessor is in flight here (see lowerInFlight)
	inflight map[int64]int
	// the record's state as the last Applied or Stale try reported it
	// (Reached); stateKnown is false when it did not report one
	state      string
	stateKnown bool
	// Apply waiters on the key in this process by arrival (Apply only):
	// the first polls at the full rate, the ones behind it less; and what
	// each needs, for the turn among waiters that need the same state.
	arrivals map[int64]*waiter
	nextSeq  int64
}

// waiter is an Apply waiter as its last attempt described it.
type waiter struct {
	needs  string // Needs, "" if not told
	rank   string // Rank
	ranked bool
}

// before reports whether waiter a (arrived as seq a) goes before b (seq
// b) when both need the same state: ranked waiters first, by rank, then
// by arrival.
func before(a *waiter, aSeq int64, b *waiter, bSeq int64) bool {
	if a.ranked != b.ranked {
		return a.ranked
	}
	if a.ranked && a.rank != b.rank {
		return a.rank < b.rank
	}
	return aSeq < bSeq
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
func (g *Gate) Apply(ctx context.Context, k string, try func(context.Context, *Attempt) (Outcome, error)) error {
	return g.apply(ctx, k, -1, g.maxWait, try)
}

// ApplyWithin is Apply with its own maxWait (at most the gate's): for an
// update that has something better to do than wait long (see the tickets
// service's cancellations).
func (g *Gate) ApplyWithin(ctx context.Context, k string, maxWait time.Duration, try func(context.Context, *Attempt) (Outcome, error)) error {
	return g.apply(ctx, k, -1, min(maxWait, g.maxWait), try)
}

// ApplyVersion is Apply for an update that brings key to version (>= 0). A
// waiting update is only retried on wake-ups that may have applied its
// predecessor (and on the poll), so 30 out-of-order updates waiting on one
// key do not all query the store after every apply.
func (g *Gate) ApplyVersion(ctx context.Context, k string, version int64, try func(context.Context, *Attempt) (Outcome, error)) error {
	if version < 0 {
		version = -1
	}
	return g.apply(ctx, k, version, g.maxWait, try)
}

// Attempt is one call of try: what the gate tells it, and what it may tell
// the gate back (Seen, Needs, Rank, Reached) before it returns.
type Attempt struct {
	// Retry: an earlier attempt of this update reported Ahead. A try that
	// writes optimistically can do so on the first attempt, when the
	// update is most likely in order, and read first on retries.
	Retry bool
	// PredecessorApplied (ApplyVersion only): this attempt follows this
	// process applying the update's predecessor (version-1, or a later
	// version) on the key, so a conditional write on top of it will most
	// likely match: try may write at once instead of reading first. A hint;
	// the conditional write decides.
	PredecessorApplied bool

	seen   int64  // the version try found the record at (Seen), -1 if not told
	needs  string // the state an Ahead try waits for (Needs), "" if not told
	now    string // the state an Applied or Stale try left (Reached)
	nowSet bool
	rank   string // Rank
	ranked bool
}

// Seen tells the gate, from a try of ApplyVersion that reports Ahead, the
// version it found the record at. While the record moves between attempts
// (another process is applying its predecessors) the lowest waiter polls
// five times as often as the poll interval, so a run of updates split
// across processes is handed over quickly; while it stands still (a real
// gap) polling stays at the normal rate. Outside ApplyVersion it does
// nothing.
func (a *Attempt) Seen(version int64) { a.seen = version }

// Needs tells the gate, from a try that reports Ahead, which state of the
// record it waits for (a name the caller chooses, such as "free" or
// "held:<order>"). The waiter then sleeps through applies in this process
// that report another state with Reached, instead of reading the store
// after each: a ticket with several reservation events in flight wakes
// only the one that can go next. Polls still retry it (another process may
// have changed the record).
func (a *Attempt) Needs(state string) { a.needs = state }

// Rank orders the waiters on a key that need the same state (Needs, in
// Apply): when that state is reached, the waiter of the lowest rank (by
// string order) goes first, and the others keep waiting for their turn,
// instead of all racing for it. Unranked waiters go after ranked ones, by
// arrival. A scheduling preference in this process only: the try still
// decides.
//
// Why: a ticket ordered and cancelled a hundred times a second has many
// reservations waiting for it to be free at once. Racing, one of them could
// lose for seconds while later ones went through, run into maxWait (ErrGap)
// and be redelivered long after (measured in the benchmark). Ranked by the
// order's id (ObjectIds grow with creation time), they go in the order the
// orders were created, which is the order in which they can go through.
func (a *Attempt) Rank(rank string) { a.rank, a.ranked = rank, true }

// Reached tells the gate the state a try left the record in (Applied or
// Stale) or found it in (Ahead): see Needs. Found in a poll after another
// process changed the record, it wakes the waiter that needs that state,
// so one waiter's poll serves all the waiters on the key.
func (a *Attempt) Reached(state string) { a.now, a.nowSet = state, true }

func (g *Gate) apply(ctx context.Context, k string, version int64, maxWait time.Duration, try func(context.Context, *Attempt) (Outcome, error)) error {
	ent := g.acquire(k)
	defer g.release(k, ent)
	registered := false
	seq := int64(-1) // arrival of an Apply waiter
	defer func() {
		if registered {
			g.mu.Lock()
			if version >= 0 {
				if ent.waiting[version]--; ent.waiting[version] <= 0 {
					delete(ent.waiting, version)
				}
			} else {
				delete(ent.arrivals, seq)
			}
			g.mu.Unlock()
		}
	}()
	if version > 0 {
		g.mu.Lock()
		if ent.inflight == nil {
			ent.inflight = map[int64]int{}
		}
		ent.inflight[version]++
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			if ent.inflight[version]--; ent.inflight[version] <= 0 {
				delete(ent.inflight, version)
			}
			g.mu.Unlock()
		}()
	}
	deadline := time.NewTimer(maxWait)
	defer deadline.Stop()
	poll := time.NewTimer(g.poll)
	defer poll.Stop()
	lastSeen := int64(-1)
	idlePolls := 0 // polls in a row with no apply on the key in this process
	for n := 0; ; n++ {
		g.step(k, version, stepTurn)
		// Take the channel before trying, so an Apply finishing between our
		// try and our wait is not missed.
		select {
		case ent.turn <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.mu.Lock()
		changed := ent.changed
		att := &Attempt{Retry: n > 0, PredecessorApplied: version > 0 && ent.known && ent.applied >= version-1, seen: -1}
		behind := version > 0 && g.lowerInFlight(ent, version)
		g.mu.Unlock()
		out, err := Ahead, error(nil)
		if !behind {
			out, err = try(ctx, att)
		}
		<-ent.turn
		if err != nil {
			return err
		}
		switch out {
		case Applied, Stale:
			if out == Stale {
				events.Duplicate(ctx) // acknowledged without being applied
			}
			g.wake(ent, version, att)
			return nil
		case Ahead:
		default:
			return errors.New("inorder: try returned an unknown outcome")
		}
		g.mu.Lock()
		first := !registered
		if !registered {
			registered = true
			if version >= 0 {
				if ent.waiting == nil {
					ent.waiting = map[int64]int{}
				}
				ent.waiting[version]++
			} else {
				if ent.arrivals == nil {
					ent.arrivals = map[int64]*waiter{}
				}
				seq = ent.nextSeq
				ent.nextSeq++
				ent.arrivals[seq] = &waiter{}
			}
		}
		if w := ent.arrivals[seq]; w != nil {
			w.needs, w.rank, w.ranked = att.needs, att.rank, att.ranked
		}
		if att.nowSet && (!ent.stateKnown || ent.state != att.now) {
			// The record is not in the state this process last knew
			// (another process changed it): wake whoever needs this one.
			ent.state, ent.stateKnown = att.now, true
			close(ent.changed)
			ent.changed = make(chan struct{})
		}
		g.mu.Unlock()
		if first {
			g.step(k, version, stepWaiting)
		}
		// The record moved since the last attempt: someone is applying
		// predecessors, so look again soon.
		moving := att.seen >= 0 && lastSeen >= 0 && att.seen > lastSeen
		if att.seen >= 0 {
			lastSeen = att.seen
		}
		pollAt := g.arm(poll, g.pollDelay(ent, version, seq, moving, idlePolls))
	wait:
		for {
			select {
			case <-changed:
				g.mu.Lock()
				changed = ent.changed
				skip := version > 0 && ent.known && ent.applied < version-1
				otherState := att.needs != "" && ent.stateKnown && ent.state != att.needs
				notYet := !otherState && g.behind(ent, seq)
				g.mu.Unlock()
				if otherState || notYet {
					g.step(k, version, stepSlept)
					continue // not what this waiter needs, or not its turn: keep sleeping, poll as planned
				}
				idlePolls = 0
				if !skip {
					g.step(k, version, stepWoken)
					break wait
				}
				g.step(k, version, stepSlept)
				// Maybe the lowest waiter now: poll sooner (never later);
				// and an apply here means the record is moving.
				moving = true
				if d := g.pollDelay(ent, version, seq, moving, idlePolls); time.Now().Add(d).Before(pollAt) {
					pollAt = g.arm(poll, d)
				}
			case <-poll.C:
				idlePolls++
				g.mu.Lock()
				notYet := g.behind(ent, seq)
				g.mu.Unlock()
				if notYet {
					// The state it needs is known here and another waiter
					// has the turn for it: that one tries.
					pollAt = g.arm(poll, g.pollDelay(ent, version, seq, moving, idlePolls))
					continue
				}
				break wait
			case <-deadline.C:
				return ErrGap
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// pollDelay is the poll interval times one plus the number of lower
// versions waiting on the key in this process (at most 4x): the lowest
// waiter, the one a predecessor applied by another process unblocks next,
// polls fast; the ones behind it poll less, so a long queue of waiters on
// one key does not flood the store with reads. The lowest waiter polls at a
// fifth of the interval while the record is moving (see Seen).
//
// An Apply without version is ranked by arrival among the Apply waiters on
// the key (seq), and doubles its delay with every poll that follows no
// apply in this process (idle), up to 8x (and 16 intervals in all). What it waits for is usually
// applied here and wakes it at once; the poll is for what another process
// applies, and the first waiter's poll wakes the others (Reached). Polling
// every waiter at the full rate made a backlog of waiting events (a busy
// orders cycle: every reservation event of a ticket in flight at once)
// cost one read per waiter every interval, which slowed the applies the
// waiters were waiting for.
func (g *Gate) pollDelay(e *key, version, seq int64, moving bool, idle int) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if version < 0 {
		rank := 0
		for s := range e.arrivals {
			if s < seq {
				rank++
			}
		}
		return min(g.poll<<min(idle, 3)*time.Duration(min(rank+1, 4)), maxApplyPoll*g.poll)
	}
	rank := 0
	for v := range e.waiting {
		if v < version {
			rank++
		}
	}
	if rank == 0 && moving {
		return max(g.poll/5, time.Millisecond)
	}
	return g.poll * time.Duration(min(rank+1, 4))
}

// arm (re)starts t to fire after d and returns when.
func (g *Gate) arm(t *time.Timer, d time.Duration) time.Time {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
	return time.Now().Add(d)
}

// lowerInFlight reports whether a lower version than version, not known to
// be applied, is being applied on e in this process: then version cannot
// go first, and trying would only cost the store a failed write and a read.
// Messages are handled concurrently, so version n+1 of a ticket updated in
// a tight loop often took the key's turn before n: at one PUT worker the
// orders replica read 1.5 times per update (measured), now about never.
// g.mu held.
func (g *Gate) lowerInFlight(e *key, version int64) bool {
	for m := range e.inflight {
		if m < version && (!e.known || m > e.applied) {
			return true
		}
	}
	return false
}

// behind reports whether another Apply waiter on e needs the same state as
// waiter seq, that state is the one known here, and the other goes first
// (Rank). g.mu held.
func (g *Gate) behind(e *key, seq int64) bool {
	me := e.arrivals[seq]
	if me == nil || me.needs == "" || !e.stateKnown || e.state != me.needs {
		return false
	}
	for s, w := range e.arrivals {
		if s != seq && w.needs == me.needs && before(w, s, me, seq) {
			return true
		}
	}
	return false
}

func (g *Gate) acquire(k string) *key {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.keys[k]
	if e == nil {
		e = &key{changed: make(chan struct{}), turn: make(chan struct{}, 1)}
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

func (g *Gate) wake(e *key, version int64, att *Attempt) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if version >= 0 && (!e.known || version > e.applied) {
		e.applied, e.known = version, true
	}
	e.state, e.stateKnown = att.now, att.nowSet
	close(e.changed)
	e.changed = make(chan struct{})
}
