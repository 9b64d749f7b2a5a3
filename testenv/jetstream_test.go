package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ticketing-go/ticketing/testenv"
)

func jsConnect(tb testing.TB, n testenv.NATS) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(n.URL, nats.Timeout(5*time.Second))
	if err != nil {
		tb.Fatalf("connect %s: %v", n.URL, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// jsRoundTrip stores one message on a file stream of its own and reads it
// back with a durable consumer.
func jsRoundTrip(tb testing.TB, js jetstream.JetStream, stream, subject, data string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject}, Storage: jetstream.FileStorage, MaxBytes: 1 << 30}); err != nil {
		tb.Fatal(err)
	}
	if _, err := js.Publish(ctx, subject, []byte(data)); err != nil {
		tb.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "q", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		tb.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	if string(msg.Data()) != data {
		tb.Fatalf("got %q, want %q", msg.Data(), data)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		tb.Fatal(err)
	}
}

func TestJetStreamRoundTrip(t *testing.T) {
	n := testenv.NATSFor(t, testenv.BusJetStream)
	if n.Bus != testenv.BusJetStream || n.SubjectPrefix == "" {
		t.Fatalf("NATS %+v: want bus jetstream and a subject prefix", n)
	}
	// ':' is allowed in subjects: the events' names are used as they are.
	jsRoundTrip(t, jsConnect(t, n), "roundtrip", n.SubjectPrefix+"ticket:created", "hello")
}

// The stream reservations of many tests (1 GiB each by default in
// common/events) fit on one test server.
func TestJetStreamHoldsManyStreams(t *testing.T) {
	n := testenv.NATSFor(t, testenv.BusJetStream)
	js := jsConnect(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 100 {
		name := fmt.Sprintf("many_%d", i)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{n.SubjectPrefix + name}, Storage: jetstream.FileStorage, MaxBytes: 1 << 30}); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
}

func TestDedicatedJetStreamSurvivesRestart(t *testing.T) {
	srv := testenv.DedicatedNATSFor(t, testenv.BusJetStream)
	subj := srv.SubjectPrefix + "order:created"
	jsRoundTrip(t, jsConnect(t, srv.NATS), "restart", subj, "before")

	srv.Stop(t)
	if nc, err := nats.Connect(srv.URL, nats.Timeout(time.Second)); err == nil {
		nc.Close()
		t.Fatal("connected to a stopped server")
	}
	srv.Start(t)

	js := jsConnect(t, srv.NATS)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, subj, []byte("after")); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, "restart", "q")
	if err != nil {
		t.Fatalf("durable consumer after restart: %v", err)
	}
	// The consumer resumes after "before": it is not delivered again.
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data()) != "after" {
		t.Fatalf("got %q after restart, want %q", msg.Data(), "after")
	}
}

func TestEventBusFollowsTESTENV_EVENT_BUS(t *testing.T) {
	for env, want := range map[string]string{"": testenv.BusStan, "stan": testenv.BusStan, "jetstream": testenv.BusJetStream} {
		t.Setenv("TESTENV_EVENT_BUS", env)
		if got, err := testenv.EventBusName(); err != nil || got != want {
			t.Errorf("TESTENV_EVENT_BUS=%q: %q, %v; want %q", env, got, err, want)
		}
	}
	t.Setenv("TESTENV_EVENT_BUS", "kafka")
	if _, err := testenv.EventBusName(); err == nil {
		t.Error("TESTENV_EVENT_BUS=kafka: no error")
	}
}
