package events

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	stan "github.com/nats-io/stan.go"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/config"
)

// stanTransport is NATS Streaming over stan.go. stan.go gives a connection
// up when the server stops answering its pings and does not resubscribe,
// so this transport reconnects with backoff under the same client id and
// re-creates every subscription itself.
type stanTransport struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	sc     stan.Conn // nil while disconnected
	subs   []*subscriber
	closed bool

	ctx    context.Context // cancelled by close: ends the reconnect loop
	cancel context.CancelFunc
	loops  sync.WaitGroup
}

func dialStan(ctx context.Context, cfg Config, log *slog.Logger) (*stanTransport, error) {
	t := &stanTransport{cfg: cfg, log: log}
	sc, err := t.dial(ctx)
	if err != nil {
		return nil, err
	}
	t.sc = sc
	t.ctx, t.cancel = context.WithCancel(context.Background())
	log.Info("nats streaming connected", "url", config.MaskURL(cfg.URL), "cluster_id", cfg.ClusterID)
	return t, nil
}

// dial connects, retrying with backoff until ctx is done.
func (t *stanTransport) dial(ctx context.Context) (stan.Conn, error) {
	secs := int(t.cfg.PingInterval / time.Second)
	if secs < 1 {
		secs = 1
	}
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		sc, err := stan.Connect(t.cfg.ClusterID, t.cfg.ClientID,
			stan.NatsURL(t.cfg.URL),
			stan.ConnectWait(t.cfg.ConnectTimeout),
			stan.PubAckWait(t.cfg.PubAckWait),
			stan.Pings(secs, t.cfg.PingMaxOut),
			stan.SetConnectionLostHandler(t.onLost),
		)
		if err == nil {
			return sc, nil
		}
		if attempt == 1 || attempt%20 == 0 {
			t.log.Warn("nats streaming connect failed; retrying", "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, apperr.Wrap(apperr.Unavailable, "NATS Streaming is unavailable", errors.Join(ctx.Err(), err))
		case <-time.After(backoff):
		}
		if backoff *= 2; backoff > 2*time.Second {
			backoff = 2 * time.Second
		}
	}
}

// onLost runs (in its own goroutine) when stan gives the connection up.
func (t *stanTransport) onLost(lost stan.Conn, err error) {
	t.mu.Lock()
	if t.closed || t.sc != lost {
		t.mu.Unlock()
		return
	}
	t.sc = nil
	t.mu.Unlock()
	t.log.Error("nats streaming connection lost; reconnecting", "err", err)
	t.loops.Add(1)
	go t.reconnect()
}

func (t *stanTransport) reconnect() {
	defer t.loops.Done()
	for {
		sc, err := t.dial(t.ctx)
		if err != nil {
			return // closed
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			_ = sc.Close()
			return
		}
		failed := false
		for _, s := range t.subs {
			if err := t.queueSubscribe(sc, s); err != nil {
				t.log.Error("resubscribe failed", "subject", s.spec.Subject, "queue_group", s.spec.QueueGroup, "err", err)
				failed = true
				break
			}
		}
		if failed {
			t.mu.Unlock()
			_ = sc.Close()
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		t.sc = sc
		t.mu.Unlock()
		t.log.Info("nats streaming reconnected", "subscriptions", len(t.subs))
		return
	}
}

func (t *stanTransport) current() (stan.Conn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, apperr.Wrap(apperr.Unavailable, "NATS Streaming is unavailable", stan.ErrConnectionClosed)
	}
	if t.sc == nil {
		return nil, apperr.New(apperr.Unavailable, "NATS Streaming is unavailable")
	}
	return t.sc, nil
}

func (t *stanTransport) ready() error {
	sc, err := t.current()
	if err != nil {
		return err
	}
	if nc := sc.NatsConn(); nc == nil || !nc.IsConnected() {
		return apperr.New(apperr.Unavailable, "NATS Streaming is reconnecting")
	}
	return nil
}

// publish ignores msgID: NATS Streaming does not deduplicate.
func (t *stanTransport) publish(ctx context.Context, subject, _ string, data []byte) error {
	sc, err := t.current()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	if _, err := sc.PublishAsync(subject, data, func(_ string, err error) { done <- err }); err != nil {
		return apperr.Wrap(apperr.Unavailable, "NATS Streaming is unavailable", err)
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return apperr.Wrap(apperr.Unavailable, "publish to NATS Streaming failed", err)
	}
	return nil
}

// subscribe subscribes now, or on reconnect while disconnected.
func (t *stanTransport) subscribe(s *subscriber) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return apperr.Wrap(apperr.Unavailable, "NATS Streaming is unavailable", stan.ErrConnectionClosed)
	}
	if t.sc != nil {
		if err := t.queueSubscribe(t.sc, s); err != nil {
			return apperr.Wrap(apperr.Unavailable, "subscribe to NATS Streaming failed", err)
		}
	}
	t.subs = append(t.subs, s)
	return nil
}

// queueSubscribe (re)creates s's stan subscription on sc. The caller holds t.mu.
func (t *stanTransport) queueSubscribe(sc stan.Conn, s *subscriber) error {
	// The stan subscription needs no handle: Close of the connection ends it
	// and keeps the durable queue group.
	_, err := sc.QueueSubscribe(t.cfg.SubjectPrefix+string(s.spec.Subject), s.spec.QueueGroup,
		func(raw *stan.Msg) {
			s.deliver(inbound{
				data:        raw.Data,
				seq:         raw.Sequence,
				timestamp:   time.Unix(0, raw.Timestamp),
				redelivered: raw.Redelivered,
				deliveries:  int(raw.RedeliveryCount) + 1,
				settle:      stanMsg{raw},
			})
		},
		stan.DurableName(s.spec.QueueGroup),
		stan.DeliverAllAvailable(),
		stan.SetManualAckMode(),
		stan.AckWait(s.spec.AckWait),
		stan.MaxInflight(s.spec.MaxInflight),
	)
	return err
}

// stop does nothing: NATS Streaming keeps delivering until Close, and
// what it delivers meanwhile is left unacknowledged.
func (t *stanTransport) stop() {}

func (t *stanTransport) close() error {
	t.mu.Lock()
	t.closed = true
	sc := t.sc
	t.sc = nil
	t.mu.Unlock()
	t.cancel()
	var err error
	if sc != nil {
		err = sc.Close()
	}
	t.loops.Wait()
	return err
}

// stanMsg settles a NATS Streaming delivery: an ack, or nothing (the
// server redelivers what is not acknowledged within AckWait).
type stanMsg struct{ raw *stan.Msg }

func (m stanMsg) ack() error    { return m.raw.Ack() }
func (stanMsg) retry(bool, int) {}
func (stanMsg) release()        {}
