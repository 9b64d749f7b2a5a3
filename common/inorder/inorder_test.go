package inorder_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ticketing-go/ticketing/common/inorder"
)

// replica is a versioned record applied with the same rule as the orders
// service's ticket replica: n+1 only on top of n.
type replica struct {
	mu      sync.Mutex
	version int64
	applied []int64
	tries   atomic.Int64
}

func (r *replica) try(v int64) func(context.Context, *inorder.Attempt) (inorder.Outcome, error) {
	return func(context.Context, *inorder.Attempt) (inorder.Outcome, error) {
		r.tries.Add(1)
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case v == r.version+1:
			r.version = v
			r.applied = append(r.applied, v)
			return inorder.Applied, nil
		case v <= r.version:
			return inorder.Stale, nil
		default:
			return inorder.Ahead, nil
		}
	}
}

// steps records what a gate reports through inorder.Trace.
type steps struct {
	mu     sync.Mutex
	seen   []gateStep
	change chan struct{} // closed and replaced at each step
}

type gateStep struct {
	key     string
	version int64
	name    string // inorder.Step*
}

// trace records the steps of g; hook, if not nil, is called at each step
// (outside the recorder's lock; it may block the update at StepTurn).
func trace(g *inorder.Gate, hook func(gateStep)) *steps {
	s := &steps{change: make(chan struct{})}
	inorder.Trace(g, func(k string, v int64, name string) {
		st := gateStep{k, v, name}
		s.mu.Lock()
		s.seen = append(s.seen, st)
		close(s.change)
		s.change = make(chan struct{})
		s.mu.Unlock()
		if hook != nil {
			hook(st)
		}
	})
	return s
}

func (s *steps) count(match func(gateStep) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.seen {
		if match(st) {
			n++
		}
	}
	return n
}

// wait waits until n steps match, and fails the test after 10 s.
func (s *steps) wait(t *testing.T, what string, n int, match func(gateStep) bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		change := s.change
		s.mu.Unlock()
		c := s.count(match)
		if c >= n {
			return
		}
		select {
		case <-change:
		case <-timeout:
			t.Fatalf("timed out waiting for %s (%d of %d steps)", what, c, n)
		}
	}
}

// is matches the steps named name of key k (any version).
func is(k, name string) func(gateStep) bool {
	return func(s gateStep) bool { return s.key == k && s.name == name }
}

// wokenOrSlept matches a waiter's handling of a wake-up on key k.
func wokenOrSlept(k string) func(gateStep) bool {
	return func(s gateStep) bool {
		return s.key == k && (s.name == inorder.StepWoken || s.name == inorder.StepSlept)
	}
}

func TestOutOfOrderConvergesWithoutPolling(t *testing.T) {
	// A poll of an hour: only the in-process wake-up can make this pass.
	g := inorder.NewGate(time.Minute, inorder.WithPoll(time.Hour))
	r := &replica{}
	const n = 50
	order := rand.Perm(n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, i := range order {
		wg.Add(1)
		go func(v int64) {
			defer wg.Done()
			errs <- g.Apply(context.Background(), "ticket-1", r.try(v))
		}(int64(i + 1))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	for i, v := range r.applied {
		if v != int64(i+1) {
			t.Fatalf("applied out of order: %v", r.applied)
		}
	}
	if len(r.applied) != n {
		t.Fatalf("applied %d of %d", len(r.applied), n)
	}
}

func TestSequence132(t *testing.T) {
	g := inorder.NewGate(time.Minute, inorder.WithPoll(time.Hour))
	r := &replica{version: 1}
	res3 := make(chan error, 1)
	go func() { res3 <- g.Apply(context.Background(), "k", r.try(3)) }()
	// 3 is waiting (tried once, Ahead) before 2 arrives
	deadline := time.Now().Add(5 * time.Second)
	for r.tries.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("3 never tried")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-res3:
		t.Fatalf("3 returned before 2 was applied: %v", err)
	default:
	}
	if err := g.Apply(context.Background(), "k", r.try(2)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res3:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("3 not applied after 2")
	}
	if len(r.applied) != 2 || r.applied[0] != 2 || r.applied[1] != 3 {
		t.Fatalf("applied %v", r.applied)
	}
	// duplicates are acknowledged
	if err := g.Apply(context.Background(), "k", r.try(2)); err != nil {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestGapGivesUpAfterMaxWait(t *testing.T) {
	g := inorder.NewGate(200*time.Millisecond, inorder.WithPoll(20*time.Millisecond))
	r := &replica{}
	err := g.Apply(context.Background(), "k", r.try(5))
	if !errors.Is(err, inorder.ErrGap) {
		t.Fatalf("Apply = %v, want ErrGap", err)
	}
	if n := r.tries.Load(); n < 3 {
		t.Fatalf("tried %d times, want the poll to retry", n)
	}
}

func TestPollSeesPredecessorAppliedElsewhere(t *testing.T) {
	// Another process applies 1 (not through this gate): the poll notices.
	g := inorder.NewGate(time.Minute, inorder.WithPoll(10*time.Millisecond))
	r := &replica{}
	done := make(chan error, 1)
	go func() { done <- g.Apply(context.Background(), "k", r.try(2)) }()
	for r.tries.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	r.mu.Lock()
	r.version = 1
	r.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the poll did not retry")
	}
}

func TestKeysAreIndependentAndErrorsPassThrough(t *testing.T) {
	g := inorder.NewGate(time.Minute, inorder.WithPoll(time.Hour))
	st := trace(g, nil)
	a, b := &replica{}, &replica{}
	waiting := make(chan error, 1)
	go func() { waiting <- g.Apply(context.Background(), "a", a.try(2)) }()
	st.wait(t, "a to wait", 1, is("a", inorder.StepWaiting))
	// Applying on key b must not wake a (it would only find itself still Ahead).
	if err := g.Apply(context.Background(), "b", b.try(1)); err != nil {
		t.Fatal(err)
	}
	// Nothing shows that a was not woken (a wake-up is the close of a
	// channel a waits on; an apply on b closes none of a's): this checks
	// that a neither handles a wake-up nor retries within quiet after the
	// apply on b returned (a wake-up is handled within microseconds).
	const quiet = 50 * time.Millisecond
	time.Sleep(quiet)
	if n := st.count(wokenOrSlept("a")); n != 0 {
		t.Fatalf("a handled %d wake-ups after an apply on b", n)
	}
	if n := a.tries.Load(); n != 1 {
		t.Fatalf("a retried %d times after an apply on b", n)
	}
	boom := errors.New("db down")
	if err := g.Apply(context.Background(), "b", func(context.Context, *inorder.Attempt) (inorder.Outcome, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("error = %v", err)
	}
	if err := g.Apply(context.Background(), "a", a.try(1)); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil {
		t.Fatal(err)
	}
}

func TestContextCancelStopsWaiting(t *testing.T) {
	g := inorder.NewGate(time.Minute, inorder.WithPoll(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{}
	done := make(chan error, 1)
	go func() { done <- g.Apply(ctx, "k", r.try(3)) }()
	for r.tries.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Apply ignored the cancelled context")
	}
}

func TestApplyVersionWakesOnlyTheSuccessor(t *testing.T) {
	g := inorder.NewGate(time.Minute, inorder.WithPoll(time.Hour))
	st := trace(g, nil)
	r := &replica{}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	// all but version 1 first, so that every one of them waits
	for _, i := range rand.Perm(n - 1) {
		wg.Add(1)
		go func(v int64) {
			defer wg.Done()
			errs <- g.ApplyVersion(context.Background(), "k", v, r.try(v))
		}(int64(i + 2))
	}
	// Wait until they all wait: versions with a lower one in flight do not
	// even try (see TestLowerVersionInFlightGoesFirst), so only some try.
	st.wait(t, "every version but 1 to wait", n-1, is("k", inorder.StepWaiting))
	if err := g.ApplyVersion(context.Background(), "k", 1, r.try(1)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(r.applied) != n || !sortedFrom1(r.applied) {
		t.Fatalf("applied %v", r.applied)
	}
	// Each waiter tried at most once on arrival and then (about) once when
	// its predecessor was applied; Apply without versions would retry
	// every waiter on every apply (~n²/2 tries).
	if tries := r.tries.Load(); tries > 2*n {
		t.Fatalf("%d tries for %d updates", tries, n)
	}
	t.Logf("%d tries for %d updates", r.tries.Load(), n)
}

func sortedFrom1(vs []int64) bool {
	for i, v := range vs {
		if v != int64(i+1) {
			return false
		}
	}
	return true
}

// PredecessorApplied is true exactly for attempts that follow this process
// applying version-1 (or later) on the key.
func TestPredecessorAppliedHint(t *testing.T) {
	g := inorder.NewGate(time.Minute, inorder.WithPoll(time.Hour))
	r := &replica{}
	var mu sync.Mutex
	hints := map[int64][]bool{}
	try := func(v int64) func(context.Context, *inorder.Attempt) (inorder.Outcome, error) {
		inner := r.try(v)
		return func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
			mu.Lock()
			hints[v] = append(hints[v], a.PredecessorApplied)
			mu.Unlock()
			return inner(ctx, a)
		}
	}
	done := make(chan error, 1)
	go func() { done <- g.ApplyVersion(context.Background(), "k", 2, try(2)) }()
	for r.tries.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	if err := g.ApplyVersion(context.Background(), "k", 1, try(1)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(context.Background(), "k", try(3)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// 1: first on the key; 2: ahead on arrival, then retried after 1 was
	// applied; 3: plain Apply knows no versions.
	want := map[int64][]bool{1: {false}, 2: {false, true}, 3: {false}}
	for v, w := range want {
		if got := hints[v]; !slices.Equal(got, w) {
			t.Errorf("version %d: hints %v, want %v", v, got, w)
		}
	}
}

// A waiter that said which state it Needs sleeps through applies that
// reached another state, and is retried by the one that reaches its state;
// Retrying is false exactly on each update's first attempt.
func TestNeedsWakesOnlyOnTheNeededState(t *testing.T) {
	g := inorder.NewGate(time.Minute, inorder.WithPoll(time.Hour))
	st := trace(g, nil)
	var mu sync.Mutex
	state := "held:a"
	tries := map[string]int{}
	retrying := map[string][]bool{}
	// step is a try that waits for state need ("" for none), then moves the
	// record to state to.
	step := func(name, need, to string) func(context.Context, *inorder.Attempt) (inorder.Outcome, error) {
		return func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
			mu.Lock()
			defer mu.Unlock()
			tries[name]++
			retrying[name] = append(retrying[name], a.Retry)
			if need != "" && state != need {
				a.Needs(need)
				return inorder.Ahead, nil
			}
			state = to
			a.Reached(state)
			return inorder.Applied, nil
		}
	}
	done := make(chan error, 1)
	go func() { done <- g.Apply(context.Background(), "t", step("reserve-b", "free", "held:b")) }()
	st.wait(t, "the reservation to wait", 1, is("t", inorder.StepWaiting))
	// Applies that leave the ticket held by others do not wake the waiter:
	// it sleeps through each (and tells the trace so).
	for i, o := range []string{"held:c", "held:d", "held:e"} {
		if err := g.Apply(context.Background(), "t", step("hold-"+o, "", o)); err != nil {
			t.Fatal(err)
		}
		st.wait(t, "the waiter to handle the wake-up of "+o, i+1, wokenOrSlept("t"))
	}
	if n := st.count(is("t", inorder.StepWoken)); n != 0 {
		t.Errorf("the waiter was woken %d times while the ticket stayed held, want 0", n)
	}
	mu.Lock()
	if n := tries["reserve-b"]; n != 1 {
		t.Errorf("the waiter tried %d times while the ticket stayed held, want 1", n)
	}
	mu.Unlock()
	if err := g.Apply(context.Background(), "t", step("free", "", "free")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not woken by the apply that freed the ticket")
	}
	mu.Lock()
	defer mu.Unlock()
	if state != "held:b" || tries["reserve-b"] != 2 {
		t.Errorf("state %q after %d tries of the waiter, want held:b after 2", state, tries["reserve-b"])
	}
	if got := retrying["reserve-b"]; !slices.Equal(got, []bool{false, true}) {
		t.Errorf("Retrying seen by the waiter: %v, want [false true]", got)
	}
}

// A state one waiter finds (Reached on Ahead), changed by another process,
// wakes the waiter that needs it: here nothing in this process ever leaves
// the record free, and the gate never polls (1h), yet the reservation
// waiting for "free" goes through once another waiter has seen it free.
func TestReachedOnAheadWakesTheWaiterThatNeedsIt(t *testing.T) {
	g := inorder.NewGate(time.Minute, inorder.WithPoll(time.Hour))
	var mu sync.Mutex
	store := "held:a"
	var started sync.WaitGroup
	started.Add(2)
	tried := map[string]bool{}
	firstTry := func(name string) {
		if !tried[name] {
			tried[name] = true
			started.Done()
		}
	}
	reserve := make(chan error, 1)
	go func() {
		reserve <- g.Apply(context.Background(), "t", func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
			mu.Lock()
			defer mu.Unlock()
			firstTry("reserve")
			if store != "free" {
				a.Needs("free")
				a.Reached(store)
				return inorder.Ahead, nil
			}
			store = "held:b"
			a.Reached(store)
			return inorder.Applied, nil
		})
	}()
	// An observer that needs a state that never comes, and says what it sees.
	observer := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		observer <- g.Apply(ctx, "t", func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
			mu.Lock()
			defer mu.Unlock()
			firstTry("observer")
			a.Reached(store)
			return inorder.Ahead, nil
		})
	}()
	started.Wait()
	// Another process frees the record; then an unrelated apply here wakes
	// the observer (it needs no particular state) but not the reservation:
	// that apply reports the record held by z.
	err := g.Apply(context.Background(), "t", func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
		mu.Lock()
		defer mu.Unlock()
		store = "free"
		a.Reached("held:z")
		return inorder.Stale, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-reserve:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reservation was not woken by the state the observer found")
	}
	mu.Lock()
	defer mu.Unlock()
	if store != "held:b" {
		t.Fatalf("store %q, want held:b", store)
	}
}

// Waiters that need the same state take turns by Rank, not by who wins
// the race: three reservations arrive in the reverse order of their ranks
// while the ticket is held, and each time it is freed the lowest-ranked
// one still waiting takes it.
func TestRankOrdersWaitersThatNeedTheSameState(t *testing.T) {
	g := inorder.NewGate(time.Minute, inorder.WithPoll(time.Hour))
	var mu sync.Mutex
	state := "held:a"
	var order []string
	tried := map[string]bool{}
	reserve := func(name string) func(context.Context, *inorder.Attempt) (inorder.Outcome, error) {
		return func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
			mu.Lock()
			defer mu.Unlock()
			tried[name] = true
			a.Rank(name)
			if state != "free" {
				a.Needs("free")
				a.Reached(state)
				return inorder.Ahead, nil
			}
			state = "held:" + name
			order = append(order, name)
			a.Reached(state)
			return inorder.Applied, nil
		}
	}
	release := func() {
		t.Helper()
		err := g.Apply(context.Background(), "t", func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
			mu.Lock()
			defer mu.Unlock()
			state = "free"
			a.Reached(state)
			return inorder.Applied, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 3)
	for _, name := range []string{"d", "c", "b"} { // arrive in reverse rank order
		go func() { done <- g.Apply(context.Background(), "t", reserve(name)) }()
		for { // each waits before the next arrives
			mu.Lock()
			ok := tried[name]
			mu.Unlock()
			if ok {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := 1; i <= 3; i++ {
		release()
		for { // the one whose turn it is takes the ticket before it is freed again
			mu.Lock()
			n := len(order)
			mu.Unlock()
			if n == i {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"b", "c", "d"}; !slices.Equal(order, want) {
		t.Fatalf("reserved in order %v, want %v (by rank)", order, want)
	}
}

// A version does not try while a lower one, which may be its predecessor,
// is in flight on the key in this process: version 2 gets the key's turn
// (queued behind another try on the key) while version 1 is in flight
// (held by the test just before it queues for the turn), and instead of
// trying on a record still at 0 (in a store: a failed write and a read) it
// waits for 1, then applies at its first try.
func TestLowerVersionInFlightGoesFirst(t *testing.T) {
	g := inorder.NewGate(time.Minute, inorder.WithPoll(time.Hour))
	atTurn1 := make(chan struct{})
	go1 := make(chan struct{})
	var once sync.Once
	st := trace(g, func(s gateStep) {
		if s.version == 1 && s.name == inorder.StepTurn {
			once.Do(func() { close(atTurn1); <-go1 })
		}
	})
	r := &replica{}
	release := make(chan struct{})
	holding := make(chan struct{})
	held := make(chan error, 1)
	go func() { // holds the key's turn until released
		held <- g.Apply(context.Background(), "k", func(context.Context, *inorder.Attempt) (inorder.Outcome, error) {
			close(holding)
			<-release
			return inorder.Stale, nil
		})
	}()
	<-holding
	var tries2 atomic.Int64
	done := make(chan error, 2)
	go func() {
		done <- g.ApplyVersion(context.Background(), "k", 2, func(ctx context.Context, a *inorder.Attempt) (inorder.Outcome, error) {
			tries2.Add(1)
			return r.try(2)(ctx, a)
		})
	}()
	st.wait(t, "version 2 to queue for the turn", 1, func(s gateStep) bool { return s.version == 2 && s.name == inorder.StepTurn })
	go func() { done <- g.ApplyVersion(context.Background(), "k", 1, r.try(1)) }()
	<-atTurn1 // version 1 is in flight
	close(release)
	// Version 2 takes the turn and, version 1 being in flight, waits.
	st.wait(t, "version 2 to wait", 1, func(s gateStep) bool { return s.version == 2 && s.name == inorder.StepWaiting })
	close(go1)
	for range 3 {
		select {
		case err := <-held:
			if err != nil {
				t.Fatal(err)
			}
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := tries2.Load(); n != 1 {
		t.Fatalf("version 2 tried %d times, want 1 (only after version 1)", n)
	}
	if !sortedFrom1(r.applied) || len(r.applied) != 2 {
		t.Fatalf("applied %v", r.applied)
	}
}
