package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	stan "github.com/nats-io/stan.go"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func testLog() *slog.Logger {
	if os.Getenv("TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// buses are the transports every test of this file runs on.
var buses = []string{BusStan, BusJetStream}

// onEachBus runs test as a subtest per transport ("stan", "jetstream"),
// each with a server of that transport.
func onEachBus(t *testing.T, test func(t *testing.T, bus string)) {
	for _, bus := range buses {
		t.Run(bus, func(t *testing.T) { test(t, bus) })
	}
}

// MustConnect connects to n (on n.Bus) with a fresh client id and closes in Cleanup.
func MustConnect(tb testing.TB, n testenv.NATS, mods ...func(*Config)) *Conn {
	tb.Helper()
	cfg := Config{Bus: n.Bus, URL: n.URL, ClusterID: n.ClusterID, ClientID: NewClientID("test"), SubjectPrefix: n.SubjectPrefix, CloseGrace: time.Second}
	for _, m := range mods {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Connect(ctx, cfg, testLog())
	if err != nil {
		tb.Fatalf("Connect: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func mustPublish(tb testing.TB, c *Conn, e Event) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Publish(ctx, e); err != nil {
		tb.Fatalf("Publish: %v", err)
	}
}

func receive[T any](tb testing.TB, ch <-chan T, within time.Duration) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(within):
		tb.Fatalf("nothing received within %v", within)
	}
	var zero T
	return zero
}

func TestPublishConsumeRoundTrip(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		c := MustConnect(t, n)
		type got struct {
			e TicketCreated
			m Msg
		}
		ch := make(chan got, 1)
		err := c.Subscribe(Subscription{Subject: SubjectTicketCreated, QueueGroup: "orders-service"},
			Decode(func(_ context.Context, e TicketCreated, m *Msg) error { ch <- got{e, *m}; return nil }))
		if err != nil {
			t.Fatal(err)
		}
		want := TicketCreated{ID: "64b7f0c2a1b2c3d4e5f60718", Version: 0, Title: "concert", Price: 20, UserID: "u1"}
		mustPublish(t, c, want)
		g := receive(t, ch, 10*time.Second)
		if g.e != want {
			t.Fatalf("received %+v, want %+v", g.e, want)
		}
		if g.m.Subject != string(SubjectTicketCreated) || g.m.QueueGroup != "orders-service" || g.m.Attempt != 1 || g.m.Redelivered || g.m.Sequence == 0 {
			t.Fatalf("msg = %+v", g.m)
		}
		var raw map[string]any
		_ = json.Unmarshal(g.m.Data, &raw)
		if _, ok := raw["userId"]; !ok {
			t.Fatalf("payload is not camelCase: %s", g.m.Data)
		}
		if err := c.Ready(context.Background()); err != nil {
			t.Fatalf("Ready: %v", err)
		}
	})
}

func TestQueueGroupSharesLoadAndHandlesEachOnce(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		pub := MustConnect(t, n)
		var mu sync.Mutex
		seen := map[int64]int{}
		perMember := [2]int{}
		for i := range 2 {
			c := MustConnect(t, n)
			err := c.Subscribe(Subscription{Subject: SubjectTicketUpdated, QueueGroup: "orders-service", AckWait: 2 * time.Second},
				Decode(func(_ context.Context, e TicketUpdated, _ *Msg) error {
					mu.Lock()
					seen[e.Version]++
					perMember[i]++
					mu.Unlock()
					time.Sleep(2 * time.Millisecond) // keep both members busy
					return nil
				}))
			if err != nil {
				t.Fatal(err)
			}
		}
		const total = 60
		for v := range int64(total) {
			mustPublish(t, pub, TicketUpdated{ID: "t", Version: v})
		}
		testenv.Eventually(t, 20*time.Second, "every message handled", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(seen) == total
		})
		// Wait past one AckWait: an unacknowledged message would come back now.
		time.Sleep(2500 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		for v, k := range seen {
			if k != 1 {
				t.Errorf("message %d handled %d times", v, k)
			}
		}
		if perMember[0] == 0 || perMember[1] == 0 {
			t.Errorf("load not shared: %v", perMember)
		}
		t.Logf("per member: %v", perMember)
	})
}

func TestHandlerErrorLeadsToRedelivery(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		c := MustConnect(t, n)
		ch := make(chan Msg, 4)
		var calls atomic.Int32
		err := c.Subscribe(Subscription{Subject: SubjectOrderCreated, QueueGroup: "tickets-service", AckWait: time.Second},
			func(_ context.Context, m *Msg) error {
				ch <- *m
				if calls.Add(1) == 1 {
					return errors.New("database briefly down")
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		mustPublish(t, c, OrderCreatedEvent{ID: "o1", Version: 0, Status: OrderCreated})
		first := receive(t, ch, 10*time.Second)
		start := time.Now()
		second := receive(t, ch, 10*time.Second)
		t.Logf("redelivered after %v", time.Since(start))
		if first.Sequence != second.Sequence || first.Attempt != 1 || second.Attempt != 2 || !second.Redelivered {
			t.Fatalf("first %+v, second %+v", first, second)
		}
		// acknowledged now: no third delivery after another AckWait
		select {
		case m := <-ch:
			t.Fatalf("delivered again after a successful handling: %+v", m)
		case <-time.After(2 * time.Second):
		}
	})
}

func TestDurableQueueGroupResumesAfterRestart(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		pub := MustConnect(t, n)
		sub := func(ch chan<- int64) *Conn {
			c := MustConnect(t, n)
			if err := c.Subscribe(Subscription{Subject: SubjectTicketCreated, QueueGroup: "orders-service", AckWait: 2 * time.Second},
				Decode(func(_ context.Context, e TicketCreated, _ *Msg) error { ch <- e.Version; return nil })); err != nil {
				t.Fatal(err)
			}
			return c
		}
		ch1 := make(chan int64, 10)
		l1 := sub(ch1)
		mustPublish(t, pub, TicketCreated{ID: "a", Version: 1})
		if v := receive(t, ch1, 10*time.Second); v != 1 {
			t.Fatalf("got %d", v)
		}
		if err := l1.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// Published while no member is running.
		mustPublish(t, pub, TicketCreated{ID: "a", Version: 2})
		mustPublish(t, pub, TicketCreated{ID: "a", Version: 3})

		ch2 := make(chan int64, 10)
		sub(ch2)
		got := []int64{receive(t, ch2, 10*time.Second), receive(t, ch2, 10*time.Second)}
		if got[0]+got[1] != 5 || got[0] == got[1] {
			t.Fatalf("after restart got %v, want 2 and 3 (and never 1 again)", got)
		}
		// Nothing shows that the server will not deliver again: this checks
		// that nothing more comes within 2.5 s, past the AckWait (2 s) after
		// which a message delivered and not acknowledged would come back.
		select {
		case v := <-ch2:
			t.Fatalf("extra delivery %d after restart", v)
		case <-time.After(2500 * time.Millisecond):
		}
	})
}

func deadLetters(t *testing.T, c *Conn) <-chan DeadLetter {
	ch := make(chan DeadLetter, 10)
	if err := c.Subscribe(Subscription{Subject: SubjectDeadLetter, QueueGroup: "dead-letter-test"},
		Decode(func(_ context.Context, d DeadLetter, _ *Msg) error { ch <- d; return nil })); err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestUndecodablePayloadGoesToDeadLetterAtOnce(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		c := MustConnect(t, n)
		dl := deadLetters(t, c)
		var calls atomic.Int32
		if err := c.Subscribe(Subscription{Subject: SubjectTicketCreated, QueueGroup: "orders-service", AckWait: 2 * time.Second},
			Decode(func(context.Context, TicketCreated, *Msg) error { calls.Add(1); return nil })); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := c.PublishRaw(ctx, string(SubjectTicketCreated), []byte(`{"id": 42, "version": "x"`)); err != nil {
			t.Fatal(err)
		}
		d := receive(t, dl, 10*time.Second)
		if d.OriginalSubject != string(SubjectTicketCreated) || d.QueueGroup != "orders-service" || d.Attempts != 1 ||
			string(d.Data) != `{"id": 42, "version": "x"` || d.Reason == "" || d.Sequence == 0 {
			t.Fatalf("dead letter = %+v", d)
		}
		// The poison message was acknowledged: a good message behind it is handled,
		// and the poison one is neither redelivered nor dead-lettered twice.
		mustPublish(t, c, TicketCreated{ID: "ok"})
		testenv.Eventually(t, 10*time.Second, "the next message", func() bool { return calls.Load() == 1 })
		// Checks that no second dead letter comes within 2.5 s, past the
		// AckWait (2 s) after which an unacknowledged poison message would be
		// redelivered (and dead-lettered again).
		select {
		case d := <-dl:
			t.Fatalf("second dead letter: %+v", d)
		case <-time.After(2500 * time.Millisecond):
		}
	})
}

func TestPoisonErrorAndMaxDeliveriesGoToDeadLetter(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		c := MustConnect(t, n)
		dl := deadLetters(t, c)
		var poisonCalls, failingCalls atomic.Int32
		// 2s: the dead-letter publish and the ack must beat AckWait even on a
		// loaded machine, or the poison message is (rightly) handled twice.
		if err := c.Subscribe(Subscription{Subject: SubjectOrderCancelled, QueueGroup: "tickets-service", AckWait: 2 * time.Second},
			func(context.Context, *Msg) error {
				poisonCalls.Add(1)
				return Poison(errors.New("order references an unknown ticket"))
			}); err != nil {
			t.Fatal(err)
		}
		if err := c.Subscribe(Subscription{Subject: SubjectExpirationComplete, QueueGroup: "orders-service", AckWait: time.Second, MaxDeliveries: 3},
			func(context.Context, *Msg) error {
				failingCalls.Add(1)
				return errors.New("always fails")
			}); err != nil {
			t.Fatal(err)
		}
		mustPublish(t, c, OrderCancelledEvent{ID: "o1"})
		d := receive(t, dl, 10*time.Second)
		if d.OriginalSubject != string(SubjectOrderCancelled) || d.Attempts != 1 || d.Reason != "poison: order references an unknown ticket" {
			t.Fatalf("dead letter = %+v", d)
		}
		mustPublish(t, c, ExpirationComplete{OrderID: "o2"})
		d = receive(t, dl, 20*time.Second)
		if d.OriginalSubject != string(SubjectExpirationComplete) || d.Attempts != 3 || d.Reason != "always fails" {
			t.Fatalf("dead letter = %+v", d)
		}
		if n := failingCalls.Load(); n != 3 {
			t.Fatalf("failing handler called %d times, want 3", n)
		}
		time.Sleep(2500 * time.Millisecond) // past one more AckWait: no further delivery
		if n, p := failingCalls.Load(), poisonCalls.Load(); n != 3 || p != 1 {
			t.Fatalf("calls after dead letter: failing %d, poison %d", n, p)
		}
	})
}

// TestTransientFailuresOutlastMaxDeliveries: a message that fails because a
// dependency is down is redelivered past MaxDeliveries until it is
// handled, never dead-lettered.
func TestTransientFailuresOutlastMaxDeliveries(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"unavailable", apperr.Wrap(apperr.Unavailable, "The database is unavailable", errors.New("dial tcp: refused"))},
		{"unavailable, wrapped", fmt.Errorf("ticket 7: %w", apperr.Wrap(apperr.Unavailable, "The database is unavailable", errors.New("timeout")))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onEachBus(t, func(t *testing.T, bus string) {
				n := testenv.NATSFor(t, bus)
				c := MustConnect(t, n)
				dl := deadLetters(t, c)
				const failures = 4 // twice MaxDeliveries
				var calls atomic.Int32
				handled := make(chan int, 1)
				if err := c.Subscribe(Subscription{Subject: SubjectTicketUpdated, QueueGroup: "orders-service", AckWait: time.Second, MaxDeliveries: 2},
					func(_ context.Context, m *Msg) error {
						if calls.Add(1) <= failures {
							return tc.err
						}
						handled <- m.Attempt
						return nil
					}); err != nil {
					t.Fatal(err)
				}
				mustPublish(t, c, TicketUpdated{ID: "t1", Version: 1, Title: "x", Price: 1, UserID: "u"})
				if attempt := receive(t, handled, 20*time.Second); attempt != failures+1 {
					t.Fatalf("handled on attempt %d, want %d", attempt, failures+1)
				}
				// A dead letter would have been published by an earlier
				// attempt, before the redelivery just handled: this gives its
				// delivery to the dead-letter subscriber 100 ms more.
				select {
				case d := <-dl:
					t.Fatalf("a transient failure was dead-lettered: %+v", d)
				case <-time.After(100 * time.Millisecond):
				}
			})
		})
	}
}

// TestMissingPredecessorOutlastsMaxDeliveries: a message whose predecessor
// is late (ErrEarly, as inorder.ErrGap) is redelivered past MaxDeliveries
// until it can be applied: dead-lettered, it would be lost, and every
// later version of its record would wait for it for good.
func TestMissingPredecessorOutlastsMaxDeliveries(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		c := MustConnect(t, n)
		dl := deadLetters(t, c)
		const gaps = 4 // twice MaxDeliveries
		var calls atomic.Int32
		handled := make(chan int, 1)
		if err := c.Subscribe(Subscription{Subject: SubjectTicketUpdated, QueueGroup: "orders-service", AckWait: time.Second, MaxDeliveries: 2},
			func(_ context.Context, m *Msg) error {
				if calls.Add(1) <= gaps {
					return fmt.Errorf("ticket t1 version 2: %w", ErrEarly)
				}
				handled <- m.Attempt
				return nil
			}); err != nil {
			t.Fatal(err)
		}
		mustPublish(t, c, TicketUpdated{ID: "t1", Version: 2, Title: "x", Price: 1, UserID: "u"})
		if attempt := receive(t, handled, 30*time.Second); attempt != gaps+1 {
			t.Fatalf("handled on attempt %d, want %d", attempt, gaps+1)
		}
		// As in TestTransientFailuresOutlastMaxDeliveries: a dead letter
		// would have been published before the redelivery just handled; 100
		// ms more for its delivery.
		select {
		case d := <-dl:
			t.Fatalf("a message waiting for its predecessor was dead-lettered: %+v", d)
		case <-time.After(100 * time.Millisecond):
		}
	})
}

// TestMissingPredecessorGivenUpAfterGapGiveUp: a predecessor that never
// comes does not hold the message's in-flight slot for good.
func TestMissingPredecessorGivenUpAfterGapGiveUp(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		c := MustConnect(t, n)
		dl := deadLetters(t, c)
		const giveUp = 2 * time.Second
		var first atomic.Int64 // unix nanos of the first handling
		if err := c.Subscribe(Subscription{Subject: SubjectTicketUpdated, QueueGroup: "orders-service", AckWait: time.Second, MaxDeliveries: 100, GapGiveUp: giveUp},
			func(_ context.Context, m *Msg) error {
				first.CompareAndSwap(0, time.Now().UnixNano())
				return fmt.Errorf("ticket t1 version 2: %w", ErrEarly)
			}); err != nil {
			t.Fatal(err)
		}
		mustPublish(t, c, TicketUpdated{ID: "t1", Version: 2, Title: "x", Price: 1, UserID: "u"})
		d := receive(t, dl, 30*time.Second)
		waited := time.Since(time.Unix(0, first.Load()))
		if d.OriginalSubject != string(SubjectTicketUpdated) || d.Attempts < 2 || !strings.Contains(d.Reason, ErrEarly.Error()) {
			t.Fatalf("dead letter = %+v", d)
		}
		if waited < giveUp {
			t.Fatalf("dead-lettered %v after the predecessor was first missing, want at least GapGiveUp %v", waited, giveUp)
		}
	})
}

func TestHandlerPanicIsAnError(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		c := MustConnect(t, n)
		var calls atomic.Int32
		if err := c.Subscribe(Subscription{Subject: SubjectPaymentCreated, QueueGroup: "orders-service", AckWait: time.Second},
			func(context.Context, *Msg) error {
				if calls.Add(1) == 1 {
					panic("bug")
				}
				return nil
			}); err != nil {
			t.Fatal(err)
		}
		mustPublish(t, c, PaymentCreated{ID: "p"})
		testenv.Eventually(t, 10*time.Second, "redelivery after the panic", func() bool { return calls.Load() == 2 })
	})
}

func TestMessagesAreHandledConcurrently(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		c := MustConnect(t, n)
		// The first message blocks until the second one has been handled: this
		// only finishes if each message runs on a worker of its own.
		release := make(chan struct{})
		done := make(chan int64, 2)
		if err := c.Subscribe(Subscription{Subject: SubjectTicketUpdated, QueueGroup: "orders-service", MaxInflight: 4},
			Decode(func(ctx context.Context, e TicketUpdated, _ *Msg) error {
				if e.Version != 1 {
					// Reported before the release, so that the order of
					// completion is the one the handlers ran in.
					done <- e.Version
					close(release)
					return nil
				}
				select {
				case <-release:
				case <-time.After(10 * time.Second):
					return errors.New("never released")
				}
				done <- e.Version
				return nil
			})); err != nil {
			t.Fatal(err)
		}
		mustPublish(t, c, TicketUpdated{ID: "t", Version: 1})
		mustPublish(t, c, TicketUpdated{ID: "t", Version: 2})
		if a, b := receive(t, done, 10*time.Second), receive(t, done, 10*time.Second); a != 2 || b != 1 {
			t.Fatalf("order of completion %d, %d; want 2 then 1", a, b)
		}
	})
}

// MaxInflight bounds the handlers running at once in a member: with two
// handlers held, a third message waits for one of them.
func TestMaxInflightBoundsTheHandlers(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		c := MustConnect(t, testenv.NATSFor(t, bus))
		var running, most atomic.Int32
		var handled atomic.Int32
		release := make(chan struct{})
		if err := c.Subscribe(Subscription{Subject: SubjectTicketUpdated, QueueGroup: "orders-service", MaxInflight: 2},
			func(ctx context.Context, _ *Msg) error {
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				<-release
				running.Add(-1)
				handled.Add(1)
				return nil
			}); err != nil {
			t.Fatal(err)
		}
		for v := range 3 {
			mustPublish(t, c, TicketUpdated{ID: "t", Version: int64(v + 1)})
		}
		testenv.Eventually(t, 10*time.Second, "two handlers running", func() bool { return running.Load() == 2 })
		// The bound this checks: the third message, published before, does
		// not start a third handler within 300 ms.
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			if n := running.Load(); n > 2 {
				t.Fatalf("%d handlers running, MaxInflight 2", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		close(release)
		testenv.Eventually(t, 10*time.Second, "all three handled", func() bool { return handled.Load() == 3 })
		if m := most.Load(); m != 2 {
			t.Fatalf("at most %d handlers ran at once, want 2", m)
		}
	})
}

func TestGracefulCloseFreesClientIDAtOnce(t *testing.T) {
	n := testenv.NATSStreaming(t) // a registered client id is NATS Streaming's
	id := NewClientID("graceful")
	c := MustConnect(t, n, func(c *Config) { c.ClientID = id })
	if err := c.Subscribe(Subscription{Subject: SubjectTicketCreated, QueueGroup: "orders-service"},
		func(context.Context, *Msg) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// One attempt, no retry: the server must have dropped the client.
	sc, err := stan.Connect(n.ClusterID, id, stan.NatsURL(n.URL), stan.ConnectWait(2*time.Second))
	if err != nil {
		t.Fatalf("reconnect with the same client id right after Close: %v", err)
	}
	_ = sc.Close()
}

func TestPublishAfterCloseIsUnavailable(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		c := MustConnect(t, testenv.NATSFor(t, bus))
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := c.Publish(context.Background(), TicketCreated{}); !apperr.Is(err, apperr.Unavailable) {
			t.Fatalf("Publish after Close = %v, want unavailable", err)
		}
		if err := c.Ready(context.Background()); !apperr.Is(err, apperr.Unavailable) {
			t.Fatalf("Ready after Close = %v, want unavailable", err)
		}
	})
}

// TestCloseSubscriptionsFinishesInFlightAndHandsOverTheRest: the graceful
// shutdown of a member. CloseSubscriptions waits for the handler in
// flight, which acknowledges its message (handled once, not again by the
// other member); what comes afterwards is not handled by the closing member
// but by the other one.
func TestCloseSubscriptionsFinishesInFlightAndHandsOverTheRest(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		const ackWait = 4 * time.Second
		type handled struct {
			member  string
			version int64
		}
		got := make(chan handled, 10)
		started := make(chan struct{}, 1)
		release := make(chan struct{})
		closing := MustConnect(t, n, func(c *Config) { c.CloseGrace = 20 * time.Second })
		if err := closing.Subscribe(Subscription{Subject: SubjectTicketUpdated, QueueGroup: "orders-service", AckWait: ackWait},
			Decode(func(_ context.Context, e TicketUpdated, _ *Msg) error {
				if e.Version == 1 {
					started <- struct{}{}
					<-release
				}
				got <- handled{"closing", e.Version}
				return nil
			})); err != nil {
			t.Fatal(err)
		}
		mustPublish(t, closing, TicketUpdated{ID: "t", Version: 1})
		receive(t, started, 10*time.Second)

		// The other member joins once version 1 is in flight at the first.
		other := MustConnect(t, n)
		if err := other.Subscribe(Subscription{Subject: SubjectTicketUpdated, QueueGroup: "orders-service", AckWait: ackWait},
			Decode(func(_ context.Context, e TicketUpdated, _ *Msg) error { got <- handled{"other", e.Version}; return nil })); err != nil {
			t.Fatal(err)
		}
		closed := make(chan struct{})
		go func() { closing.CloseSubscriptions(); close(closed) }()
		// Checks that CloseSubscriptions waits for the handler: it has not
		// returned 300 ms after it was called, while the handler is held.
		select {
		case <-closed:
			t.Fatal("CloseSubscriptions returned while a handler was running")
		case <-time.After(300 * time.Millisecond):
		}
		close(release)
		receive(t, closed, 10*time.Second)
		if h := receive(t, got, time.Second); h != (handled{"closing", 1}) {
			t.Fatalf("first handling %+v, want version 1 by the closing member", h)
		}

		// Published after CloseSubscriptions: only the other member
		// handles it. JetStream hands it over at once (the closing
		// member's pulls are drained, what it still gets it naks); NATS
		// Streaming when Close drops the closing member, as a service's
		// shutdown does next.
		for v := int64(2); v <= 4; v++ {
			mustPublish(t, other, TicketUpdated{ID: "t", Version: v})
		}
		within := ackWait / 2 // JetStream: well before an AckWait could pass
		if bus == BusStan {
			if err := closing.Close(); err != nil {
				t.Fatal(err)
			}
			within = 3 * ackWait
		}
		for range 3 {
			if h := receive(t, got, within); h.member != "other" || h.version < 2 {
				t.Fatalf("handling %+v after CloseSubscriptions, want versions 2-4 by the other member", h)
			}
		}
		// Nothing more: version 1 was acknowledged (not redelivered to the
		// other member), and 2-4 handled once. Bound: 1.5 AckWait, past
		// which an unacknowledged message would have come back.
		select {
		case h := <-got:
			t.Fatalf("extra handling %+v", h)
		case <-time.After(ackWait * 3 / 2):
		}
	})
}

// lost reports whether c's transport has noticed that its server is gone.
func lost(c *Conn) bool {
	switch t := c.t.(type) {
	case *stanTransport:
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.sc == nil // stan gave the connection up: Conn reconnects itself
	case *jsTransport:
		return !t.nc.IsConnected() // nats.go reconnects
	}
	panic("unknown transport")
}

func TestReconnectAfterServerRestart(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		srv := testenv.DedicatedNATSFor(t, bus)
		c := MustConnect(t, srv.NATS, func(c *Config) { c.PingInterval = time.Second; c.PingMaxOut = 2; c.PubAckWait = 2 * time.Second })
		got := make(chan string, 10)
		if err := c.Subscribe(Subscription{Subject: SubjectTicketCreated, QueueGroup: "orders-service", AckWait: 2 * time.Second},
			Decode(func(_ context.Context, e TicketCreated, _ *Msg) error { got <- e.ID; return nil })); err != nil {
			t.Fatal(err)
		}
		mustPublish(t, c, TicketCreated{ID: "before"})
		if id := receive(t, got, 10*time.Second); id != "before" {
			t.Fatalf("got %q", id)
		}

		srv.Stop(t)
		// Down long enough for the client to give the connection up (pings).
		testenv.Eventually(t, 30*time.Second, "connection lost", func() bool { return lost(c) })
		if err := c.Ready(context.Background()); !apperr.Is(err, apperr.Unavailable) {
			t.Fatalf("Ready while down = %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := c.Publish(ctx, TicketCreated{ID: "during"})
		cancel()
		if !apperr.Is(err, apperr.Unavailable) {
			t.Fatalf("Publish while down = %v, want unavailable", err)
		}

		srv.Start(t)
		start := time.Now()
		testenv.Eventually(t, 60*time.Second, "reconnected", func() bool { return c.Ready(context.Background()) == nil })
		t.Logf("reconnected %v after the server started", time.Since(start))
		mustPublish(t, c, TicketCreated{ID: "after"})
		// "before" may come once more: its ack can be lost with the server
		// (at least once); nothing else may.
		for {
			id := receive(t, got, 15*time.Second)
			if id == "after" {
				break
			}
			if id != "before" {
				t.Fatalf("got %q after reconnect", id)
			}
		}
	})
}

func TestReconnectAfterShortOutage(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		// The NATS connection comes back before the pings give up: the
		// same connection and subscriptions carry on.
		srv := testenv.DedicatedNATSFor(t, bus)
		c := MustConnect(t, srv.NATS, func(c *Config) { c.PingInterval = 5 * time.Second; c.PingMaxOut = 10; c.PubAckWait = 2 * time.Second })
		got := make(chan string, 10)
		if err := c.Subscribe(Subscription{Subject: SubjectTicketCreated, QueueGroup: "orders-service", AckWait: 2 * time.Second},
			Decode(func(_ context.Context, e TicketCreated, _ *Msg) error { got <- e.ID; return nil })); err != nil {
			t.Fatal(err)
		}
		srv.Stop(t)
		srv.Start(t)
		testenv.Eventually(t, 60*time.Second, "publish works again", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return c.Publish(ctx, TicketCreated{ID: "after"}) == nil
		})
		if id := receive(t, got, 15*time.Second); id != "after" {
			t.Fatalf("got %q", id)
		}
	})
}
