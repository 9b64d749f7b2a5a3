package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	stan "github.com/nats-io/stan.go"

	"github.com/ticketing-go/ticketing/testenv"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// versions reads {ticket id: version} from a collection holding tickets
// (tickets.tickets, the source; orders.tickets, the replica).
func (s *System) versions(db string, ids []string) map[string]int64 {
	s.t.Helper()
	oids := make([]primitive.ObjectID, 0, len(ids))
	for _, id := range ids {
		oid, err := primitive.ObjectIDFromHex(id)
		if err != nil {
			s.t.Fatalf("bad id %q", id)
		}
		oids = append(oids, oid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, err := s.Coll(db, "tickets").Find(ctx, bson.M{"_id": bson.M{"$in": oids}})
	if err != nil {
		s.t.Logf("read %s.tickets: %v", db, err)
		return nil
	}
	var docs []struct {
		ID      primitive.ObjectID `bson:"_id"`
		Version int64              `bson:"version"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		s.t.Logf("read %s.tickets: %v", db, err)
		return nil
	}
	out := map[string]int64{}
	for _, d := range docs {
		out[d.ID.Hex()] = d.Version
	}
	return out
}

// holders reads {ticket id: orderId} of the tickets source ("" when free).
func (s *System) holders(ids []string) map[string]string {
	s.t.Helper()
	oids := make([]primitive.ObjectID, 0, len(ids))
	for _, id := range ids {
		oid, err := primitive.ObjectIDFromHex(id)
		if err != nil {
			s.t.Fatalf("bad id %q", id)
		}
		oids = append(oids, oid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, err := s.Coll("tickets", "tickets").Find(ctx, bson.M{"_id": bson.M{"$in": oids}})
	if err != nil {
		s.t.Logf("read tickets.tickets: %v", err)
		return nil
	}
	var docs []struct {
		ID      primitive.ObjectID `bson:"_id"`
		OrderID string             `bson:"orderId"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		s.t.Logf("read tickets.tickets: %v", err)
		return nil
	}
	out := map[string]string{}
	for _, d := range docs {
		out[d.ID.Hex()] = d.OrderID
	}
	return out
}

// Acks records the versions the HTTP API acknowledged, per ticket.
type Acks struct {
	mu sync.Mutex
	m  map[string][]ackAt
}

type ackAt struct {
	v  int64
	at time.Time
}

func NewAcks() *Acks { return &Acks{m: map[string][]ackAt{}} }

func (a *Acks) Add(id string, v int64) {
	a.mu.Lock()
	a.m[id] = append(a.m[id], ackAt{v, time.Now()})
	a.mu.Unlock()
}

// Max is the highest acknowledged version of each ticket.
func (a *Acks) Max() map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int64{}
	for id, vs := range a.m {
		for _, x := range vs {
			out[id] = max(out[id], x.v)
		}
	}
	return out
}

// Count is the number of acknowledged writes.
func (a *Acks) Count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, vs := range a.m {
		n += len(vs)
	}
	return n
}

// Converge waits until the orders replica and the tickets source both hold
// at least the highest acknowledged version of every ticket, and the
// replica equals the source. It returns the slowest ticket's time.
func (s *System) Converge(t testing.TB, want map[string]int64, timeout time.Duration) time.Duration {
	t.Helper()
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var src, rep map[string]int64
	return Eventually(t, timeout, func() bool {
		src, rep = s.versions("tickets", ids), s.versions("orders", ids)
		for _, id := range ids {
			sv, ok1 := src[id]
			rv, ok2 := rep[id]
			if !ok1 || !ok2 || sv < want[id] || rv != sv {
				return false
			}
		}
		return true
	}, func() string {
		var b strings.Builder
		for _, id := range ids {
			if src[id] != rep[id] || src[id] < want[id] {
				fmt.Fprintf(&b, "%s: acked %d source %d replica %d; ", id, want[id], src[id], rep[id])
			}
		}
		return "replica not converged: " + b.String()
	})
}

// Observer records the ticket events on the bus, from the start of the
// channels (or stream), as the other services receive them.
type Observer struct {
	mu   sync.Mutex
	seen map[string][]int64 // ticket id -> versions in arrival order
}

// Observe subscribes to ticket:created and ticket:updated from the beginning.
func (s *System) Observe(t testing.TB) *Observer {
	t.Helper()
	o := &Observer{seen: map[string][]int64{}}
	if s.Bus == testenv.BusJetStream {
		s.observeJetStream(t, o, s.NATSURL())
		return o
	}
	sc, err := stan.Connect("ticketing", fmt.Sprintf("e2e-observer-%d", time.Now().UnixNano()), stan.NatsURL(s.NATSURL()), stan.ConnectWait(5*time.Second))
	if err != nil {
		t.Fatalf("observer: %v", err)
	}
	t.Cleanup(func() { sc.Close() })
	for _, subj := range []string{"ticket:created", "ticket:updated"} {
		if _, err := sc.Subscribe(subj, func(m *stan.Msg) { o.record(m.Data) }, stan.DeliverAllAvailable()); err != nil {
			t.Fatalf("observer subscribe %s: %v", subj, err)
		}
	}
	return o
}

// observeJetStream reads the services' stream (created by the first
// service that connected) through url with an ordered consumer: from the
// beginning, re-created by nats.go across a NATS outage.
func (s *System) observeJetStream(t testing.TB, o *Observer, url string) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		t.Fatalf("observer: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "TICKETING", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"ticket:created", "ticket:updated"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatalf("observer consumer: %v", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { o.record(m.Data()) })
	if err != nil {
		t.Fatalf("observer consume: %v", err)
	}
	t.Cleanup(cc.Stop)
}

func (o *Observer) record(data []byte) {
	var e struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
	}
	if err := jsonUnmarshal(data, &e); err != nil {
		return
	}
	o.mu.Lock()
	o.seen[e.ID] = append(o.seen[e.ID], e.Version)
	o.mu.Unlock()
}

// Check compares the observed stream with the acknowledged versions: every
// acknowledged version was published (lost otherwise), and each ticket's
// versions first appear in increasing order. Duplicates (a version
// published again after a crash) are counted, not failures.
func (o *Observer) Check(acks *Acks) (published, dups int, lost, outOfOrder []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	acks.mu.Lock()
	defer acks.mu.Unlock()
	for id, vs := range o.seen {
		first := map[int64]bool{}
		var hi int64 = -1
		for _, v := range vs {
			published++
			if first[v] {
				dups++
				continue
			}
			first[v] = true
			if v < hi {
				outOfOrder = append(outOfOrder, fmt.Sprintf("%s: v%d after v%d (%v)", id, v, hi, vs))
			}
			hi = max(hi, v)
		}
	}
	for id, as := range acks.m {
		seen := map[int64]bool{}
		for _, v := range o.seen[id] {
			seen[v] = true
		}
		for _, a := range as {
			if !seen[a.v] {
				lost = append(lost, fmt.Sprintf("%s v%d", id, a.v))
			}
		}
	}
	return
}

// Has reports whether every acknowledged version was observed.
func (o *Observer) Has(acks *Acks) bool {
	_, _, lost, _ := o.Check(acks)
	return len(lost) == 0
}
