package testenv_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/stan.go"

	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func connect(tb testing.TB, n testenv.NATS, clientID string) stan.Conn {
	tb.Helper()
	sc, err := stan.Connect(n.ClusterID, clientID, stan.NatsURL(n.URL), stan.ConnectWait(5*time.Second))
	if err != nil {
		tb.Fatalf("connect %s: %v", n.URL, err)
	}
	tb.Cleanup(func() { sc.Close() })
	return sc
}

func receive(tb testing.TB, ch <-chan string, want string) {
	tb.Helper()
	select {
	case got := <-ch:
		if got != want {
			tb.Fatalf("got message %q, want %q", got, want)
		}
	case <-time.After(30 * time.Second):
		tb.Fatalf("no message %q within 30s", want)
	}
}

func TestNATSStreamingRoundTrip(t *testing.T) {
	t.Logf("mode %s", testenv.Mode())
	n := testenv.NATSStreaming(t)
	if n.SubjectPrefix == "" || n.ClusterID != testenv.ClusterID {
		t.Fatalf("NATS %+v: want a subject prefix and cluster id %q", n, testenv.ClusterID)
	}
	sc := connect(t, n, "roundtrip")
	got := make(chan string, 10)
	_, err := sc.QueueSubscribe(n.SubjectPrefix+"ticket:created", "q", func(m *stan.Msg) {
		got <- string(m.Data)
		m.Ack()
	}, stan.DurableName("q"), stan.DeliverAllAvailable(), stan.SetManualAckMode())
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Publish(n.SubjectPrefix+"ticket:created", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	receive(t, got, "hello")
}

func TestNATSStreamingIsolatedPerTest(t *testing.T) {
	a, b := testenv.NATSStreaming(t), testenv.NATSStreaming(t)
	if a.SubjectPrefix == b.SubjectPrefix {
		t.Fatalf("two calls gave the same subject prefix %q", a.SubjectPrefix)
	}
	if a.URL != b.URL {
		t.Errorf("shared server expected: %s != %s", a.URL, b.URL)
	}
}

// The outbox tests rely on this: a stopped server keeps its URL, its
// messages and its durable queue groups.
func TestDedicatedNATSSurvivesRestart(t *testing.T) {
	srv := testenv.DedicatedNATS(t)
	subj := srv.SubjectPrefix + "order:created"

	pub := connect(t, srv.NATS, "pub1")
	if err := pub.Publish(subj, []byte("before")); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	handler := func(m *stan.Msg) { got <- string(m.Data); m.Ack() }
	opts := []stan.SubscriptionOption{stan.DurableName("orders"), stan.DeliverAllAvailable(), stan.SetManualAckMode()}
	sub := connect(t, srv.NATS, "sub1")
	if _, err := sub.QueueSubscribe(subj, "orders", handler, opts...); err != nil {
		t.Fatal(err)
	}
	receive(t, got, "before")
	pub.Close()
	sub.Close() // Close, not Unsubscribe: the durable queue group stays.

	srv.Stop(t)
	if sc, err := stan.Connect(srv.ClusterID, "probe", stan.NatsURL(srv.URL), stan.ConnectWait(time.Second)); err == nil {
		sc.Close()
		t.Fatal("connected to a stopped server")
	}
	srv.Start(t)

	pub2 := connect(t, srv.NATS, "pub2")
	for i := range 2 {
		if err := pub2.Publish(subj, fmt.Appendf(nil, "after%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	sub2 := connect(t, srv.NATS, "sub2")
	if _, err := sub2.QueueSubscribe(subj, "orders", handler, opts...); err != nil {
		t.Fatal(err)
	}
	// The durable group resumes after "before": it is not delivered again.
	receive(t, got, "after0")
	receive(t, got, "after1")
}
