package testenv_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ticketing-go/ticketing/testenv"
)

// clusterPublisher publishes numbered messages to a subject in a loop,
// each with "<subject>-<number>" as Nats-Msg-Id, retrying a publish that
// got no PubAck with the same id (as the services' outbox relays do)
// before going on.
type clusterPublisher struct {
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	acked   int // messages 0..acked-1 have their PubAck
	retries int
}

func startClusterPublisher(t *testing.T, url, subject string) *clusterPublisher {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(2), nats.Name("cluster-test-"+subject))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	p := &clusterPublisher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer nc.Close()
		for i := 0; ; {
			select {
			case <-p.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := js.Publish(ctx, subject, []byte(strconv.Itoa(i)), jetstream.WithMsgID(subject+"-"+strconv.Itoa(i)))
			cancel()
			p.mu.Lock()
			if err == nil {
				i++
				p.acked = i
			} else {
				p.retries++
			}
			p.mu.Unlock()
			if err != nil {
				time.Sleep(50 * time.Millisecond) // pacing of the retries, as a relay's
			}
		}
	}()
	t.Cleanup(p.Stop)
	return p
}

func (p *clusterPublisher) Acked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked
}

// Stop stops the loop (idempotent).
func (p *clusterPublisher) Stop() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// waitAcked waits until n more messages than now have their PubAck: the
// cluster takes writes.
func waitAcked(t *testing.T, p *clusterPublisher, n int, within time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	from := p.Acked()
	for p.Acked() < from+n {
		if time.Since(start) > within {
			t.Fatalf("%s: %d messages acknowledged in %s, want %d", what, p.Acked()-from, within, n)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	return time.Since(start)
}

// TestJetStreamCluster drives an R3 stream on a 3-node cluster through a
// kill of its leader and a partition of its next leader, publishing all
// along: every acknowledged message is in the stream once and in order,
// and every node ends with the same replica. A client connected to the
// partitioned node only gets no PubAck while the partition lasts (the
// partition is real), and goes on after the heal.
func TestJetStreamCluster(t *testing.T) {
	c := testenv.StartJetStreamCluster(t, testenv.JetStreamClusterOptions{})
	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(c.Nodes))
	}
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(2), nats.Name("cluster-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute+2*testenv.JetStreamRecoveryBound)
	defer cancel()
	const stream = "CLUSTER_TEST"
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{"ct.>"}, Storage: jetstream.FileStorage, Replicas: 3,
		MaxBytes: 1 << 30, Duplicates: 2 * time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	// AckAll: the reader confirms each batch by its last message; the
	// publishers run flat out, so the stream may hold tens of thousands.
	if _, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "reader", AckPolicy: jetstream.AckAllPolicy}); err != nil {
		t.Fatal(err)
	}

	// Kill the stream's leader: a new one is elected and writes go on.
	kp := startClusterPublisher(t, c.URL(), "ct.kill")
	waitAcked(t, kp, 100, 30*time.Second, "before the kill")
	leader, err := c.StreamLeader(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(ctx, leader); err != nil {
		t.Fatal(err)
	}
	d := waitAcked(t, kp, 100, 30*time.Second, "with "+leader.Name+" killed")
	t.Logf("killed the stream leader %s: 100 more writes acknowledged %s later", leader.Name, d.Round(time.Millisecond))
	wctx, wcancel := context.WithTimeout(ctx, testenv.JetStreamRecoveryBound)
	if err := c.Start(wctx, leader); err != nil {
		t.Fatalf("restart %s: %v", leader.Name, err)
	}
	wcancel()
	waitAcked(t, kp, 50, 30*time.Second, "after the restart")
	kp.Stop()

	// Partition the (new) stream leader: the majority elects another and
	// takes writes from the clients it serves; a client of the
	// partitioned node alone gets no PubAck until the heal.
	leader, err = c.StreamLeader(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var majority []string
	for _, n := range c.Nodes {
		if n != leader {
			majority = append(majority, n.URL())
		}
	}
	mp := startClusterPublisher(t, strings.Join(majority, ","), "ct.majority")
	lp := startClusterPublisher(t, leader.URL(), "ct.isolated")
	waitAcked(t, mp, 50, 30*time.Second, "before the partition")
	waitAcked(t, lp, 50, 30*time.Second, "before the partition")
	wctx, wcancel = context.WithTimeout(ctx, time.Minute)
	if err := c.Partition(wctx, leader); err != nil {
		t.Fatalf("partition %s: %v", leader.Name, err)
	}
	wcancel()
	isolatedAt := lp.Acked()
	d = waitAcked(t, mp, 100, 30*time.Second, "with "+leader.Name+" partitioned")
	if k := lp.Acked() - isolatedAt; k != 0 {
		t.Errorf("%d writes acknowledged by the partitioned node %s", k, leader.Name)
	}
	t.Logf("partitioned the stream leader %s: 100 more writes acknowledged %s later by the majority, none by %s", leader.Name, d.Round(time.Millisecond), leader.Name)
	wctx, wcancel = context.WithTimeout(ctx, testenv.JetStreamRecoveryBound)
	if err := c.Heal(wctx, leader); err != nil {
		t.Fatalf("heal %s: %v", leader.Name, err)
	}
	wcancel()
	waitAcked(t, lp, 50, 30*time.Second, "on "+leader.Name+" after the heal")
	waitAcked(t, mp, 50, 30*time.Second, "after the heal")
	mp.Stop()
	lp.Stop()

	// Every acknowledged message once, in order, read through a durable
	// consumer that acks them; then every replica the same.
	want := map[string]int{"ct.kill": kp.Acked(), "ct.majority": mp.Acked(), "ct.isolated": lp.Acked()}
	total := 0
	for _, n := range want {
		total += n
	}
	// Right after a heal the cluster may still move leaders: its API
	// answers 503 meanwhile, which a client retries.
	got := map[string][]string{}
	read := 0
	const stalled = time.Minute // without a message read
	progress := time.Now()
	for read < total {
		if time.Since(progress) > stalled {
			t.Fatalf("read %d of %d acknowledged messages, then nothing for %s", read, total, stalled)
		}
		cons, err := js.Consumer(ctx, stream, "reader")
		if err != nil {
			t.Logf("consumer: %v (retrying)", err)
			time.Sleep(200 * time.Millisecond) // pacing of the retries
			continue
		}
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Logf("fetch: %v (retrying)", err)
			continue
		}
		var last jetstream.Msg
		for m := range batch.Messages() {
			got[m.Subject()] = append(got[m.Subject()], string(m.Data()))
			read++
			last = m
		}
		if last != nil {
			if err := last.DoubleAck(ctx); err != nil { // acknowledges the whole batch
				t.Fatalf("ack: %v", err)
			}
			progress = time.Now()
		}
	}
	for subj, n := range want {
		if len(got[subj]) != n {
			t.Errorf("%s: %d messages in the stream, %d acknowledged", subj, len(got[subj]), n)
		}
		for i, d := range got[subj] {
			if w := strconv.Itoa(i); d != w {
				t.Errorf("%s: message %d is %q, want %q: lost or duplicated", subj, i, d, w)
				break
			}
		}
	}
	wctx, wcancel = context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	states, err := c.WaitStreamConverged(wctx, stream)
	if err != nil {
		t.Fatalf("replicas not converged: %v\n%s", err, testenv.FormatStreamStates(states))
	}
	if s := states[0]; s.Messages != uint64(total) || s.Consumers["reader"].AckFloor != s.LastSeq {
		t.Errorf("stream holds %d messages, want the %d acknowledged once each\n%s", s.Messages, total, testenv.FormatStreamStates(states))
	}
	t.Logf("acknowledged and stored once each: %v (publishes retried: kill %d, majority %d, isolated %d); replicas:\n%s",
		want, kp.retries, mp.retries, lp.retries, testenv.FormatStreamStates(states))
}
