package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/config"
)

// jsTransport is NATS JetStream over nats.go's jetstream package.
//
// Reconnection is nats.go's: it reconnects without limit, and a pull
// consumer's Consume keeps pulling across reconnects, so nothing here
// re-creates subscriptions. The durable consumer lives on the server;
// every member of a group pulls from the same one.
type jsTransport struct {
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string

	mu       sync.Mutex
	consumes []jetstream.ConsumeContext

	stallMu      sync.Mutex
	stalledSince time.Time // when the current run of unanswered publishes began (zero: none)
	checking     bool      // a check of the server runs
	checkedAt    time.Time // when the last one began
}

// stallCheck: a server may be cut off from its cluster (a partition) and
// still keep its clients' connections, answering their pings, while it
// cannot reach the stream's leader: nats.go stays with it and every
// publish and pull waits for the heal. So when publishes go unanswered
// for stallCheck, or a pull's heartbeats lapse, with the connection up,
// the client asks the server for its JetStream account information. A
// server that cannot answer has lost its cluster's meta leader: the
// client moves to another server of NATS_URL (nats.go puts the current
// one last). One that answers stays: the cluster is electing a stream
// leader, which another server would wait for too. At most one check per
// stallCheck.
const stallCheck = 5 * time.Second

func dialJetStream(ctx context.Context, cfg Config, log *slog.Logger) (*jsTransport, error) {
	t := &jsTransport{cfg: cfg, log: log, stream: StreamName(cfg.SubjectPrefix)}
	opts := []nats.Option{
		nats.Name(cfg.ClientID),
		nats.Timeout(cfg.ConnectTimeout),
		nats.PingInterval(cfg.PingInterval),
		nats.MaxPingsOutstanding(cfg.PingMaxOut),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		// No buffering while reconnecting: a publish then fails at once
		// (the outbox keeps the event) instead of waiting out its PubAck.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Error("nats jetstream connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats jetstream reconnected") }),
	}
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := t.connect(ctx, opts)
		if err == nil {
			break
		}
		if attempt == 1 || attempt%20 == 0 {
			log.Warn("nats jetstream connect failed; retrying", "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, apperr.Wrap(apperr.Unavailable, "NATS JetStream is unavailable", errors.Join(ctx.Err(), err))
		case <-time.After(backoff):
		}
		if backoff *= 2; backoff > 2*time.Second {
			backoff = 2 * time.Second
		}
	}
	log.Info("nats jetstream connected", "url", config.MaskURL(cfg.URL), "stream", t.stream, "replicas", cfg.Stream.Replicas)
	return t, nil
}

// connect makes one attempt: the connection, then the stream (JetStream
// may not answer yet right after its server started).
func (t *jsTransport) connect(ctx context.Context, opts []nats.Option) error {
	nc, err := nats.Connect(t.cfg.URL, opts...)
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		err = t.ensureStream(ctx, js)
	}
	if err != nil {
		nc.Close()
		return err
	}
	t.nc, t.js = nc, js
	return nil
}

// StreamName is the name of the JetStream stream for a subject prefix:
// TICKETING, or TICKETING_<prefix> (characters other than A-Z, a-z, 0-9,
// '_' and '-' become '-'), so that tests with their own prefix have their
// own stream.
func StreamName(subjectPrefix string) string {
	p := sanitizeID(strings.TrimSuffix(subjectPrefix, "."))
	if p == "" {
		return "TICKETING"
	}
	return "TICKETING_" + p
}

// ensureStream creates the stream or updates it to this configuration.
// Every service does it when it connects; concurrent calls with the same
// configuration all succeed, and a call that loses a race of different
// configurations fails and is retried by Connect as an update.
func (t *jsTransport) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	subjects := make([]string, len(Subjects))
	for i, s := range Subjects {
		subjects[i] = t.cfg.SubjectPrefix + string(s)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout+t.cfg.PubAckWait)
	defer cancel()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        t.stream,
		Description: "ticketing events (common/events)",
		Subjects:    subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    t.cfg.Stream.Replicas,
		MaxBytes:    t.cfg.Stream.MaxBytes,
		MaxAge:      t.cfg.Stream.MaxAge,
		// Full: refuse new events (publishes fail, the outboxes keep them)
		// rather than drop old ones a consumer may not have had yet.
		Discard:    jetstream.DiscardNew,
		Duplicates: t.cfg.Stream.DuplicateWindow,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", t.stream, err)
	}
	return nil
}

func (t *jsTransport) ready() error {
	if !t.nc.IsConnected() {
		return apperr.New(apperr.Unavailable, "NATS JetStream is reconnecting")
	}
	return nil
}

// publish waits for the stream's PubAck (at most PubAckWait). A publish
// that the duplicate window drops is acknowledged too: the event is stored.
func (t *jsTransport) publish(ctx context.Context, subject, msgID string, data []byte) error {
	if !t.nc.IsConnected() {
		return apperr.New(apperr.Unavailable, "NATS JetStream is unavailable")
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.PubAckWait)
	defer cancel()
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	start := time.Now()
	_, err := t.js.Publish(ctx, subject, data, opts...)
	t.published(start, err)
	if err != nil {
		return apperr.Wrap(apperr.Unavailable, "publish to NATS JetStream failed", err)
	}
	return nil
}

// published tracks unanswered publishes (see stallCheck): one that
// started at start ended with err.
func (t *jsTransport) published(start time.Time, err error) {
	t.stallMu.Lock()
	defer t.stallMu.Unlock()
	if err == nil {
		t.stalledSince = time.Time{}
		return
	}
	// A refusal (a full stream, say) is an answer; a timeout or no
	// responders is not.
	unanswered := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
	if !unanswered || !t.nc.IsConnected() {
		return
	}
	if t.stalledSince.IsZero() || start.Before(t.stalledSince) {
		t.stalledSince = start
	}
	if time.Since(t.stalledSince) >= stallCheck {
		t.checkLocked("publishes unanswered for " + time.Since(t.stalledSince).Round(time.Second).String())
	}
}

// checkLocked checks the server in the background and moves to another
// if it does not serve JetStream (see stallCheck; stallMu held).
func (t *jsTransport) checkLocked(why string) {
	if t.checking || (!t.checkedAt.IsZero() && time.Since(t.checkedAt) < stallCheck) {
		return
	}
	t.checking, t.checkedAt, t.stalledSince = true, time.Now(), time.Time{}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), t.cfg.ConnectTimeout)
		_, err := t.js.AccountInfo(ctx)
		cancel()
		t.stallMu.Lock()
		t.checking = false
		t.stallMu.Unlock()
		if err == nil || !t.nc.IsConnected() {
			return
		}
		t.log.Warn("nats jetstream: the server is connected but does not serve JetStream (cut off from its cluster?); moving to another server",
			"server", t.nc.ConnectedUrlRedacted(), "why", why, "err", err)
		if err := t.nc.ForceReconnect(); err != nil {
			t.log.Warn("nats jetstream: reconnect", "err", err)
		}
	}()
}

// consumerName is the durable consumer of a queue group for a subject:
// "<group>_<subject>", with the characters a consumer name cannot hold
// ('.', '*', '>', ':' among them) as '-'.
func consumerName(group string, subject Subject) string {
	return sanitizeID(group + "_" + string(subject))
}

// subscribe creates the group's durable pull consumer (or updates its
// AckWait and MaxAckPending) and starts pulling from it.
func (t *jsTransport) subscribe(s *subscriber) error {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.ConnectTimeout+t.cfg.PubAckWait)
	defer cancel()
	cons, err := t.js.CreateOrUpdateConsumer(ctx, t.stream, jetstream.ConsumerConfig{
		Durable:       consumerName(s.spec.QueueGroup, s.spec.Subject),
		FilterSubject: t.cfg.SubjectPrefix + string(s.spec.Subject),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.spec.AckWait,
		// No server limit: subscriber counts the attempts and dead-letters
		// a message itself, and a transient failure or a missing
		// predecessor must come back however often it failed.
		MaxDeliver:    -1,
		MaxAckPending: s.spec.MaxInflight,
	})
	if err != nil {
		return apperr.Wrap(apperr.Unavailable, "subscribe to NATS JetStream failed", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil { // not a JetStream message: nothing to settle
			t.log.Error("jetstream delivery without metadata", "subject", msg.Subject(), "err", err)
			return
		}
		s.deliver(inbound{
			data:        msg.Data(),
			seq:         md.Sequence.Stream,
			timestamp:   md.Timestamp,
			redelivered: md.NumDelivered > 1,
			deliveries:  int(md.NumDelivered),
			settle:      jsMsg{msg},
		})
	},
		jetstream.PullMaxMessages(s.spec.MaxInflight),
		// Heartbeats every 5 s: a pull that a cut-off server cannot serve
		// shows in 10 s (ErrNoHeartbeat, see stallCheck), not 30.
		jetstream.PullExpiry(10*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// Missed heartbeats while the connection is down are expected
			// (dialJetStream logs the loss once) and Consume pulls again by
			// itself; anything else (the consumer deleted, say) is worth a
			// warning.
			level := slog.LevelWarn
			if errors.Is(err, jetstream.ErrNoHeartbeat) || !t.nc.IsConnected() {
				level = slog.LevelDebug
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) && t.nc.IsConnected() {
				t.stallMu.Lock()
				t.checkLocked("a pull's heartbeats lapsed")
				t.stallMu.Unlock()
			}
			t.log.Log(context.Background(), level, "jetstream consume", "subject", s.spec.Subject, "queue_group", s.spec.QueueGroup, "err", err)
		}),
	)
	if err != nil {
		return apperr.Wrap(apperr.Unavailable, "subscribe to NATS JetStream failed", err)
	}
	t.mu.Lock()
	t.consumes = append(t.consumes, cc)
	t.mu.Unlock()
	return nil
}

// stop ends the pulls. Drain hands what is already pulled to the
// callback, where the closed subscriber releases it (jsMsg.release).
func (t *jsTransport) stop() {
	t.mu.Lock()
	cs := t.consumes
	t.consumes = nil
	t.mu.Unlock()
	for _, cc := range cs {
		cc.Drain()
	}
}

// close closes the connection (nats.go flushes what was written, acks
// included). Messages delivered and not acknowledged come back after their
// AckWait.
func (t *jsTransport) close() error {
	t.stop()
	t.nc.Close()
	return nil
}

// jsMsg settles a JetStream delivery.
type jsMsg struct{ msg jetstream.Msg }

func (m jsMsg) ack() error { return m.msg.Ack() }

// retry: a message whose predecessor is missing comes back after a short
// and growing delay (gapDelay) instead of a whole AckWait: the predecessor
// is usually a few messages behind it. Any other failure is left to
// AckWait, as on NATS Streaming: most are a dependency that is down
// (Transient), for which AckWait is the pause between tries, and the
// dead letter after MaxDeliveries then takes MaxDeliveries x AckWait on
// both transports.
func (m jsMsg) retry(early bool, attempt int) {
	if early {
		_ = m.msg.NakWithDelay(gapDelay(attempt))
	}
}

// release hands the message back at once, to another member of the group.
func (m jsMsg) release() { _ = m.msg.Nak() }

// gapDelay is 100 ms on the first attempt, doubled per attempt up to 500 ms.
func gapDelay(attempt int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < attempt && d < 500*time.Millisecond; i++ {
		d *= 2
	}
	return min(d, 500*time.Millisecond)
}
