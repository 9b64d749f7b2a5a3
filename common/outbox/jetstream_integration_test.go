package outbox_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ticketing-go/ticketing/common/events"
	"github.com/ticketing-go/ticketing/common/outbox"
	"github.com/ticketing-go/ticketing/testenv"
)

// lostAckPublisher publishes each entry, but reports the first publish of
// every entry as failed: the broker stored it and its ack was lost (a
// timeout, a connection cut after the write), so the relay publishes the
// entry again.
type lostAckPublisher struct {
	pub  outbox.Publisher
	mu   sync.Mutex
	seen map[string]bool
}

func (l *lostAckPublisher) PublishMsg(ctx context.Context, subject, msgID string, data []byte) error {
	if err := l.pub.PublishMsg(ctx, subject, msgID, data); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[msgID] {
		return nil
	}
	l.seen[msgID] = true
	return errors.New("ack lost")
}

// TestJetStreamDropsTheRelaysRepublish: on JetStream the entry's id is the
// Nats-Msg-Id, so what a relay publishes again is stored once.
func TestJetStreamDropsTheRelaysRepublish(t *testing.T) {
	coll := testenv.MongoDatabase(t).Collection("tickets")
	n := testenv.NATSFor(t, events.BusJetStream)
	conn := MustConnect(t, n)
	col := collect(t, conn)

	pub := &lostAckPublisher{pub: conn, seen: map[string]bool{}}
	r, _ := MustRunRelay(t, coll, pub, fast)
	recs := newRecords(coll, r)
	id := insert(t, recs)
	const updates = 5
	for v := int64(1); v <= updates; v++ {
		update(t, recs, id, v)
	}
	testenv.Eventually(t, 20*time.Second, "every entry published", func() bool { return backlog(t, coll) == 0 })
	pub.mu.Lock()
	published := len(pub.seen)
	pub.mu.Unlock()
	if published != updates+1 {
		t.Fatalf("%d entries published, want %d", published, updates+1)
	}
	// Every entry went out twice; the stream (this test's own) holds each once.
	if msgs := streamMsgs(t, n); msgs != updates+1 {
		t.Fatalf("stream holds %d messages for %d entries", msgs, updates+1)
	}
	testenv.Eventually(t, 10*time.Second, "every version", func() bool { return len(col.versions(id.Hex())) >= updates+1 })
	if got := col.versions(id.Hex()); !slices.Equal(got, seq(0, updates)) {
		t.Fatalf("received %v, want each of 0..%d once", got, updates)
	}
}

// streamMsgs counts the messages in the JetStream stream of n's prefix.
func streamMsgs(tb testing.TB, n testenv.NATS) uint64 {
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
	s, err := js.Stream(ctx, events.StreamName(n.SubjectPrefix))
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Msgs
}
