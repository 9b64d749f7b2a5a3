package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/ticketing-go/ticketing/common/apperr"
)

// Subscription describes a durable queue subscription.
type Subscription struct {
	Subject Subject
	// QueueGroup is also the durable name ("orders-service"): the members
	// of a group share the messages, and the group resumes where it stopped
	// after every member restarted. On JetStream the group is one durable
	// consumer per subject (see consumerName).
	QueueGroup string
	// AckWait: a message not acknowledged within it is redelivered
	// (default DefaultAckWait).
	AckWait time.Duration
	// MaxInflight bounds the unacknowledged messages the server sends this
	// member and the handlers running at once (default 32). On JetStream it
	// is also the consumer's MaxAckPending, which bounds the group as a
	// whole.
	MaxInflight int
	// MaxDeliveries: a message whose handler failed this many times goes to
	// the dead-letter subject and is acknowledged (default 5). Transient
	// failures (a dependency down, see Transient) do not count: they are
	// redelivered until they succeed. Nor does a missing predecessor (see
	// GapGiveUp).
	MaxDeliveries int
	// GapGiveUp: a message whose handler reports a missing predecessor
	// (ErrEarly, such as inorder.ErrGap) is redelivered, whatever
	// MaxDeliveries says, until this member has seen the predecessor
	// missing for this long; then it goes to the dead-letter subject
	// (default DefaultGapGiveUp).
	GapGiveUp time.Duration
	// Middleware wraps the handler, outermost first.
	Middleware []Middleware
}

// Subscription defaults.
const (
	// DefaultAckWait is 10s, not stan's 30s. It is how long a message
	// handed to a connection that then died (a NATS outage, a killed
	// replica) waits before it is redelivered: after a 10 s outage the
	// replicas converged 34 s after the load stopped with 30 s. It must
	// exceed the longest wait of a handler for a predecessor
	// (inorder.Gate's maxWait, 5s in every service), or a waiting message
	// is redelivered while it waits (harmless: versions make it a
	// duplicate, but wasted). The Node.js original uses 5s.
	DefaultAckWait       = 10 * time.Second
	DefaultMaxInflight   = 32
	DefaultMaxDeliveries = 5
	// DefaultGapGiveUp is far beyond any delay of a predecessor that is
	// still coming: one in flight to a connection that died comes back
	// after an AckWait once the server has a live member to give it to.
	// Counted in deliveries instead, a burst of late predecessors after a
	// NATS outage on a busy machine dead-lettered their successors, and
	// then every later version of those records, since each waited for
	// one that was gone: the replicas never converged.
	DefaultGapGiveUp = 5 * time.Minute
)

func (s Subscription) withDefaults() Subscription {
	if s.AckWait <= 0 {
		s.AckWait = DefaultAckWait
	}
	if s.MaxInflight <= 0 {
		s.MaxInflight = DefaultMaxInflight
	}
	if s.MaxDeliveries <= 0 {
		s.MaxDeliveries = DefaultMaxDeliveries
	}
	if s.GapGiveUp <= 0 {
		s.GapGiveUp = DefaultGapGiveUp
	}
	return s
}

// Msg is one delivery of a message.
type Msg struct {
	Subject     string // without the SubjectPrefix
	QueueGroup  string
	Data        []byte
	Sequence    uint64 // in the channel (NATS Streaming) or the stream (JetStream)
	Redelivered bool
	Attempt     int // 1 on the first delivery
	Timestamp   time.Time
}

// Handler handles one message: nil -> ack; an error -> no ack, the server
// redelivers after AckWait (a Poison error, the last allowed attempt, or a
// predecessor missing for GapGiveUp -> dead letter and ack). On JetStream
// a missing predecessor (ErrEarly) comes back sooner: see jsMsg.retry.
type Handler func(ctx context.Context, m *Msg) error

// Middleware wraps a Handler.
type Middleware func(Handler) Handler

// Chain wraps h in mws, the first one outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

type poisonError struct{ err error }

func (p poisonError) Error() string { return "poison: " + p.err.Error() }
func (p poisonError) Unwrap() error { return p.err }

// Poison marks err as permanent: retrying cannot help, so the message goes
// to the dead-letter subject at once.
func Poison(err error) error {
	if err == nil {
		return nil
	}
	return poisonError{err}
}

// Transient reports whether err is a failure that no retry count should
// give up on: a dependency that is down (apperr.Unavailable: MongoDB,
// NATS). An outage can outlast MaxDeliveries x AckWait (50 s by default);
// dead-lettering the message would lose it for good, and a replica would
// then wait forever for the version it carried. Redelivered, it is applied
// once the database is back.
//
// A missing predecessor (ErrEarly) is neither transient nor counted
// towards MaxDeliveries: see Subscription.GapGiveUp. It is given up on at
// last because messages waiting for it hold in-flight slots of their
// subscription, and a predecessor that is never coming (dead-lettered as
// poison, say) must not hold them for good.
func Transient(err error) bool {
	return apperr.Is(err, apperr.Unavailable)
}

// ErrEarly is what a handler's error wraps when its message came before
// one it builds on (a predecessor version not applied yet; inorder.ErrGap
// wraps it): the message is redelivered until that one is handled, and
// given up on only after Subscription.GapGiveUp.
var ErrEarly = errors.New("a message it builds on is not handled yet")

// IsPoison reports whether err was marked with Poison.
func IsPoison(err error) bool {
	var p poisonError
	return errors.As(err, &p)
}

// Decode returns a Handler that decodes the JSON payload into T before
// calling fn. A payload that does not decode is poison.
func Decode[T any](fn func(ctx context.Context, e T, m *Msg) error) Handler {
	return func(ctx context.Context, m *Msg) error {
		var e T
		if err := json.Unmarshal(m.Data, &e); err != nil {
			return Poison(fmt.Errorf("decode %s: %w", m.Subject, err))
		}
		return fn(ctx, e, m)
	}
}

// Logging logs every failed handling (with the attempt) and, at debug
// level, every success.
func Logging(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Msg) error {
			start := time.Now()
			err := next(ctx, m)
			attrs := []any{"subject", m.Subject, "queue_group", m.QueueGroup, "seq", m.Sequence, "attempt", m.Attempt, "took", time.Since(start)}
			if err != nil {
				log.WarnContext(ctx, "event handling failed", append(attrs, "err", err)...)
			} else {
				log.DebugContext(ctx, "event handled", attrs...)
			}
			return err
		}
	}
}

// Timeout bounds each handling by d.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Msg) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, m)
		}
	}
}

// subscriber is one Subscribe call; it outlives reconnects. It decides
// what becomes of every delivery, whatever the transport: attempts, the
// dead letter, retries, panics, shutdown.
type subscriber struct {
	conn    *Conn
	spec    Subscription
	handler Handler
	sem     chan struct{} // a slot per worker: at most MaxInflight
	work    chan inbound  // a delivery to an idle worker (unbuffered)

	mu       sync.Mutex
	attempts map[uint64]*seen // per sequence, until it is acknowledged here
}

// seen is what this member saw of one message.
type seen struct {
	n        int       // deliveries seen here (the server's count may be higher)
	gapSince time.Time // when a handling here first found its predecessor missing
}

// inbound is one delivery as a transport hands it to a subscriber.
type inbound struct {
	data        []byte
	seq         uint64 // the message's sequence in its channel or stream
	timestamp   time.Time
	redelivered bool
	deliveries  int // the server's count of deliveries of the message, this one included
	settle      settler
}

// settler answers the server about one delivery.
type settler interface {
	ack() error
	// retry: the handling failed and the message is to come back; early
	// says it failed for a missing predecessor (ErrEarly).
	retry(early bool, attempt int)
	// release: delivered after CloseSubscriptions, not handled here.
	release()
}

// deliver takes each message from the transport and hands it to a worker
// of its own, so that a handler waiting for a predecessor (package inorder)
// does not hold up the messages behind it: an idle worker, else a new one
// while there are fewer than MaxInflight, else the first to finish.
func (s *subscriber) deliver(in inbound) {
	c := s.conn
	c.mu.Lock()
	stopped := c.closed || c.stopped
	if !stopped {
		c.handlers.Add(1)
	}
	c.mu.Unlock()
	if stopped {
		in.settle.release() // not acked: redelivered to another member
		return
	}
	select {
	case s.work <- in:
		return
	default:
	}
	select {
	case s.work <- in:
	case s.sem <- struct{}{}:
		go s.worker(in)
	}
}

// workerIdle is how long a worker waits for its next delivery before it
// exits.
const workerIdle = 10 * time.Second

// worker handles in, then every delivery handed to it, until it has waited
// workerIdle for one or the connection is closed. Workers outlive their
// deliveries because a handling's stack is deep (decoding, the gate, the
// store's driver): a goroutine per delivery started small and copied its
// stack as it grew, every time, which cost 11-16 % of a consuming
// service's CPU under load.
func (s *subscriber) worker(in inbound) {
	defer func() { <-s.sem }()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		s.handle(in)
		s.conn.handlers.Done()
		idle.Reset(workerIdle)
		select {
		case in = <-s.work:
		case <-idle.C:
			return
		case <-s.conn.hctx.Done():
			return
		}
	}
}

func (s *subscriber) attempt(in inbound) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.attempts) > 100_000 { // sequences acked elsewhere never leave the map
		clear(s.attempts)
	}
	d := s.attempts[in.seq]
	if d == nil {
		d = &seen{}
		s.attempts[in.seq] = d
	}
	d.n++
	n := d.n
	if in.deliveries > n {
		n = in.deliveries // the server's count also covers deliveries to other members
	}
	if in.redelivered && n < 2 {
		n = 2
	}
	return n
}

func (s *subscriber) forget(seq uint64) {
	s.mu.Lock()
	delete(s.attempts, seq)
	s.mu.Unlock()
}

func (s *subscriber) handle(in inbound) {
	c := s.conn
	subject := string(s.spec.Subject)
	m := &Msg{
		Subject:     subject,
		QueueGroup:  s.spec.QueueGroup,
		Data:        in.data,
		Sequence:    in.seq,
		Redelivered: in.redelivered,
		Attempt:     s.attempt(in),
		Timestamp:   in.timestamp,
	}
	if m.Redelivered {
		redelivered.WithLabelValues(subject).Inc()
	}
	start := time.Now()
	err := s.call(m)
	handleSeconds.WithLabelValues(subject).Observe(time.Since(start).Seconds())
	result := "ack"
	switch {
	case err == nil:
	case IsPoison(err) || s.givesUp(m, err):
		if dlErr := s.deadLetter(m, err); dlErr != nil {
			c.log.Error("dead letter publish failed; message will be redelivered", "subject", subject, "seq", m.Sequence, "err", dlErr)
			consumed.WithLabelValues(subject, "retry").Inc()
			in.settle.retry(false, m.Attempt)
			return
		}
		result = "dead_letter"
	default:
		consumed.WithLabelValues(subject, "retry").Inc()
		in.settle.retry(errors.Is(err, ErrEarly), m.Attempt)
		return // no ack: redelivered
	}
	if ackErr := in.settle.ack(); ackErr != nil {
		c.log.Warn("ack failed; message will be redelivered", "subject", subject, "seq", m.Sequence, "err", ackErr)
		consumed.WithLabelValues(subject, "ack_failed").Inc()
		return
	}
	s.forget(m.Sequence)
	consumed.WithLabelValues(subject, result).Inc()
}

// givesUp reports whether a failed message goes to the dead letter.
func (s *subscriber) givesUp(m *Msg, err error) bool {
	switch {
	case Transient(err):
		return false
	case errors.Is(err, ErrEarly):
		return s.missingFor(m.Sequence) >= s.spec.GapGiveUp
	default:
		return m.Attempt >= s.spec.MaxDeliveries
	}
}

// missingFor is how long ago a handling here first found the predecessor
// of message seq missing (0 the first time).
func (s *subscriber) missingFor(seq uint64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.attempts[seq]
	if d == nil { // cleared in between
		d = &seen{n: 1}
		s.attempts[seq] = d
	}
	if d.gapSince.IsZero() {
		d.gapSince = time.Now()
	}
	return time.Since(d.gapSince)
}

// call runs the handler, turning a panic into an error (one message's bug
// must not take the service down).
func (s *subscriber) call(m *Msg) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("handler panic: %v\n%s", v, debug.Stack())
		}
	}()
	return s.handler(withDelivery(s.conn.hctx, m), m) // withDelivery: for Duplicate
}

func (s *subscriber) deadLetter(m *Msg, cause error) error {
	dl := DeadLetter{
		OriginalSubject: m.Subject,
		QueueGroup:      m.QueueGroup,
		Sequence:        m.Sequence,
		Attempts:        m.Attempt,
		Reason:          cause.Error(),
		Data:            m.Data,
		FailedAt:        time.Now().UTC(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.conn.cfg.PubAckWait)
	defer cancel()
	if err := s.conn.Publish(ctx, dl); err != nil {
		return err
	}
	deadLettered.WithLabelValues(m.Subject).Inc()
	s.conn.log.Warn("message dead-lettered", "subject", m.Subject, "queue_group", m.QueueGroup, "seq", m.Sequence, "attempts", m.Attempt, "reason", cause)
	return nil
}
