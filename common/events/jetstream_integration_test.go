package events

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/testenv"
)

// What only JetStream does: a late predecessor comes back in milliseconds,
// the outbox entry's id drops a republish, and the stream is configured by
// whoever connects.

// streamInfo reads the stream of n's prefix with a client of its own.
func streamInfo(tb testing.TB, n testenv.NATS) *jetstream.StreamInfo {
	tb.Helper()
	nc, err := nats.Connect(n.URL)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, StreamName(n.SubjectPrefix))
	if err != nil {
		tb.Fatalf("stream %s: %v", StreamName(n.SubjectPrefix), err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info
}

// TestJetStreamGapComesBackBeforeAckWait: a message whose predecessor is
// missing is naked with a short delay, not left to its AckWait (30 s here).
func TestJetStreamGapComesBackBeforeAckWait(t *testing.T) {
	c := MustConnect(t, testenv.NATSFor(t, BusJetStream))
	const gaps = 3
	times := make(chan time.Time, gaps+1)
	if err := c.Subscribe(Subscription{Subject: SubjectTicketUpdated, QueueGroup: "orders-service", AckWait: 30 * time.Second},
		func(_ context.Context, m *Msg) error {
			times <- time.Now()
			if m.Attempt <= gaps {
				return fmt.Errorf("ticket t1 version 2: %w", ErrEarly)
			}
			return nil
		}); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, c, TicketUpdated{ID: "t1", Version: 2})
	prev := receive(t, times, 10*time.Second)
	for i := range gaps {
		// Bound: 5 s, a sixth of the AckWait, far above gapDelay's 500 ms.
		next := receive(t, times, 5*time.Second)
		t.Logf("redelivery %d after %v", i+1, next.Sub(prev).Round(time.Millisecond))
		if next.Sub(prev) < gapDelay(1) {
			t.Fatalf("redelivery %d after %v, before the shortest delay %v", i+1, next.Sub(prev), gapDelay(1))
		}
		prev = next
	}
}

func TestGapDelayGrowsTo500ms(t *testing.T) {
	want := []time.Duration{100, 200, 400, 500, 500, 500}
	for i, w := range want {
		if got := gapDelay(i + 1); got != w*time.Millisecond {
			t.Errorf("gapDelay(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
}

// TestPublishMsgDropsARepublish: the second publish of an event with the
// same id (a relay that crashed before removing its entry) is acknowledged
// and not stored again on JetStream; NATS Streaming stores it twice and
// the consumers' versions make it a duplicate.
func TestPublishMsgDropsARepublish(t *testing.T) {
	onEachBus(t, func(t *testing.T, bus string) {
		n := testenv.NATSFor(t, bus)
		c := MustConnect(t, n)
		got := make(chan int64, 10)
		if err := c.Subscribe(Subscription{Subject: SubjectTicketUpdated, QueueGroup: "orders-service"},
			Decode(func(_ context.Context, e TicketUpdated, _ *Msg) error { got <- e.Version; return nil })); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		data := []byte(`{"id":"t1","version":7}`)
		for range 2 {
			if err := c.PublishMsg(ctx, string(SubjectTicketUpdated), "64b7f0c2a1b2c3d4e5f60718", data); err != nil {
				t.Fatal(err)
			}
		}
		mustPublish(t, c, TicketUpdated{ID: "t1", Version: 8}) // a marker behind them
		sevens := 2                                            // NATS Streaming stores both publishes
		if bus == BusJetStream {
			sevens = 1
			// The stream holds what each consumer will get: nothing more can come.
			if msgs := streamInfo(t, n).State.Msgs; msgs != 2 {
				t.Fatalf("stream holds %d messages, want 2", msgs)
			}
		}
		seen := map[int64]int{}
		for seen[7] < sevens || seen[8] < 1 {
			seen[receive(t, got, 10*time.Second)]++
		}
		if seen[7] != sevens || seen[8] != 1 {
			t.Fatalf("handled %v, want version 7 %d times and 8 once", seen, sevens)
		}
	})
}

func TestJetStreamStreamIsConfiguredByConnect(t *testing.T) {
	n := testenv.NATSFor(t, BusJetStream)
	MustConnect(t, n, func(c *Config) {
		c.Stream = StreamConfig{MaxBytes: 64 << 20, MaxAge: time.Hour, DuplicateWindow: time.Minute}
	})
	cfg := streamInfo(t, n).Config
	if cfg.Name != StreamName(n.SubjectPrefix) || cfg.Storage != jetstream.FileStorage || cfg.Replicas != 1 ||
		cfg.MaxBytes != 64<<20 || cfg.MaxAge != time.Hour || cfg.Duplicates != time.Minute ||
		cfg.Discard != jetstream.DiscardNew || cfg.Retention != jetstream.LimitsPolicy || len(cfg.Subjects) != len(Subjects) {
		t.Fatalf("stream config %+v", cfg)
	}
	for i, s := range Subjects {
		if cfg.Subjects[i] != n.SubjectPrefix+string(s) {
			t.Errorf("subject %d = %q, want %q", i, cfg.Subjects[i], n.SubjectPrefix+string(s))
		}
	}
	// A later Connect (another service, a new release) updates it.
	MustConnect(t, n, func(c *Config) { c.Stream = StreamConfig{MaxBytes: 128 << 20} })
	if cfg := streamInfo(t, n).Config; cfg.MaxBytes != 128<<20 || cfg.MaxAge != 0 || cfg.Duplicates != DefaultStreamDuplicateWindow {
		t.Fatalf("stream config after update %+v", cfg)
	}
}

// Every service creates the stream when it connects; at the start of a
// system they do so at once.
func TestJetStreamConcurrentConnectsShareOneStream(t *testing.T) {
	n := testenv.NATSFor(t, BusJetStream)
	var wg sync.WaitGroup
	conns := make([]*Conn, 6)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := Connect(ctx, Config{Bus: BusJetStream, URL: n.URL, ClientID: NewClientID("race"), SubjectPrefix: n.SubjectPrefix}, testLog())
			if err != nil {
				t.Errorf("Connect %d: %v", i, err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			t.Cleanup(func() { _ = c.Close() })
		}
	}
	if t.Failed() {
		return
	}
	mustPublish(t, conns[0], TicketCreated{ID: "a"})
	if msgs := streamInfo(t, n).State.Msgs; msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", msgs)
	}
}

// TestJetStreamFullStreamRefusesPublishes: a full stream fails publishes
// loudly (the outbox keeps the events) and keeps what it holds.
func TestJetStreamFullStreamRefusesPublishes(t *testing.T) {
	n := testenv.NATSFor(t, BusJetStream)
	c := MustConnect(t, n, func(c *Config) { c.Stream.MaxBytes = 4 << 10 })
	data := make([]byte, 500)
	for i := range data {
		data[i] = 'x'
	}
	var stored uint64
	var err error
	for range 20 { // 20 x 500 bytes: more than 4 KiB
		if err = c.PublishRaw(context.Background(), string(SubjectTicketCreated), data); err != nil {
			break
		}
		stored++
	}
	if err == nil || !apperr.Is(err, apperr.Unavailable) {
		t.Fatalf("publish into a full stream = %v, want unavailable", err)
	}
	if stored == 0 {
		t.Fatalf("nothing stored before the stream was full: %v", err)
	}
	if msgs := streamInfo(t, n).State.Msgs; msgs != stored {
		t.Fatalf("stream holds %d messages, want the %d acknowledged ones", msgs, stored)
	}
	t.Logf("%d publishes stored, then: %v", stored, err)
}

// TestJetStreamOneConsumerPerGroupAndSubject: the members of a group share
// one durable consumer per subject, whose settings follow Subscription.
func TestJetStreamOneConsumerPerGroupAndSubject(t *testing.T) {
	n := testenv.NATSFor(t, BusJetStream)
	var calls atomic.Int32
	for range 2 {
		c := MustConnect(t, n)
		for _, subj := range []Subject{SubjectTicketCreated, SubjectTicketUpdated} {
			if err := c.Subscribe(Subscription{Subject: subj, QueueGroup: "orders-service", AckWait: 7 * time.Second, MaxInflight: 9},
				func(context.Context, *Msg) error { calls.Add(1); return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, StreamName(n.SubjectPrefix))
	if err != nil {
		t.Fatal(err)
	}
	names := stream.ConsumerNames(ctx)
	var got []string
	for name := range names.Name() {
		got = append(got, name)
	}
	if len(got) != 2 {
		t.Fatalf("consumers %v, want one per subject", got)
	}
	cons, err := js.Consumer(ctx, StreamName(n.SubjectPrefix), consumerName("orders-service", SubjectTicketUpdated))
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	if cfg.AckWait != 7*time.Second || cfg.MaxAckPending != 9 || cfg.MaxDeliver != -1 ||
		cfg.DeliverPolicy != jetstream.DeliverAllPolicy || cfg.AckPolicy != jetstream.AckExplicitPolicy ||
		cfg.FilterSubject != n.SubjectPrefix+string(SubjectTicketUpdated) {
		t.Fatalf("consumer config %+v", cfg)
	}
}

func TestStreamAndConsumerNames(t *testing.T) {
	for prefix, want := range map[string]string{"": "TICKETING", "TestX_ab12.": "TICKETING_TestX_ab12", "a.b c": "TICKETING_a-b-c"} {
		if got := StreamName(prefix); got != want {
			t.Errorf("StreamName(%q) = %q, want %q", prefix, got, want)
		}
	}
	if got := consumerName("orders-service", SubjectTicketCreated); got != "orders-service_ticket-created" {
		t.Errorf("consumerName = %q", got)
	}
}
