package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	stan "github.com/nats-io/stan.go"

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/config"
)

// Config says how to reach the NATS Streaming cluster.
type Config struct {
	URL       string // nats://host:4222
	ClusterID string // the server's -cid ("ticketing")
	ClientID  string // unique per process: [A-Za-z0-9_-]
	// SubjectPrefix is put in front of every subject on the wire (empty in
	// production; tests use a unique prefix per test for isolation).
	SubjectPrefix string
	// PingInterval and PingMaxOut: the client pings the server every
	// PingInterval (whole seconds, at least 1s) and declares the connection
	// lost after PingMaxOut unanswered pings (at least 2).
	PingInterval time.Duration
	PingMaxOut   int
	// ConnectTimeout bounds one connect attempt (Connect itself retries
	// until its context is done).
	ConnectTimeout time.Duration
	// PubAckWait bounds how long a publish waits for the server's ack.
	PubAckWait time.Duration
	// CloseGrace is how long Close lets handlers in flight finish before it
	// cancels their context.
	CloseGrace time.Duration
}

// Defaults used where Config leaves a zero value.
const (
	DefaultURL            = "nats://localhost:4222"
	DefaultClusterID      = "ticketing"
	DefaultPingInterval   = 5 * time.Second
	DefaultPingMaxOut     = 3
	DefaultConnectTimeout = 2 * time.Second
	DefaultPubAckWait     = 5 * time.Second
	DefaultCloseGrace     = 5 * time.Second
)

// ConfigFromEnv reads NATS_URL (default nats://localhost:4222),
// NATS_CLUSTER_ID (default "ticketing"), NATS_CLIENT_ID (default
// NewClientID(service)), NATS_SUBJECT_PREFIX, NATS_PING_INTERVAL,
// NATS_PING_MAX_OUT and NATS_CONNECT_TIMEOUT. Problems are recorded in env.
func ConfigFromEnv(env *config.Env, service string) Config {
	c := Config{
		URL:            env.String("NATS_URL", DefaultURL),
		ClusterID:      env.String("NATS_CLUSTER_ID", DefaultClusterID),
		ClientID:       env.String("NATS_CLIENT_ID", ""),
		SubjectPrefix:  env.String("NATS_SUBJECT_PREFIX", ""),
		PingInterval:   env.Duration("NATS_PING_INTERVAL", DefaultPingInterval),
		PingMaxOut:     env.Int("NATS_PING_MAX_OUT", DefaultPingMaxOut),
		ConnectTimeout: env.Duration("NATS_CONNECT_TIMEOUT", DefaultConnectTimeout),
	}
	if c.ClientID == "" {
		c.ClientID = NewClientID(service)
	}
	env.Check(ValidClientID(c.ClientID), "NATS_CLIENT_ID: %q may only contain A-Z, a-z, 0-9, '_' and '-'", c.ClientID)
	env.Check(c.PingMaxOut >= 2, "NATS_PING_MAX_OUT: must be at least 2")
	return c
}

// NewClientID returns a client id unique to this process: the pod name
// (HOSTNAME) or else the service name, plus a random suffix (a restarted
// container keeps its pod name, and the server may still hold the old
// client). Characters stan does not accept become '-'.
func NewClientID(service string) string {
	return newClientID(os.Getenv("HOSTNAME"), service)
}

func newClientID(hostname, service string) string {
	base := hostname
	if base == "" {
		base = service
	}
	base = sanitizeID(base)
	if base == "" {
		base = "client"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return base + "-" + hex.EncodeToString(b[:])
}

func sanitizeID(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if isIDRune(r) {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('-')
		}
	}
	return sb.String()
}

func isIDRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// ValidClientID reports whether id is acceptable to NATS Streaming.
func ValidClientID(id string) bool {
	if id == "" {
		return false
	}
	for _, r := range id {
		if !isIDRune(r) {
			return false
		}
	}
	return true
}

func (c Config) withDefaults() Config {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.ClusterID == "" {
		c.ClusterID = DefaultClusterID
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PingMaxOut < 2 {
		c.PingMaxOut = DefaultPingMaxOut
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.PubAckWait <= 0 {
		c.PubAckWait = DefaultPubAckWait
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = DefaultCloseGrace
	}
	return c
}

// Conn is a NATS Streaming connection that survives outages.
//
// Decision (issue 2: exit or reconnect?): when the server stops answering
// pings, Conn reconnects with backoff under the same client id and
// re-creates every subscription (durable queue groups resume where they
// stopped); meanwhile publishes fail at once with apperr.Unavailable. The
// alternative, exiting non-zero and letting an orchestrator restart the
// pod, would take the HTTP API down with the broker. Reconnecting keeps
// the services serving HTTP during a NATS outage, the outbox delivers the
// events written meanwhile once NATS is back, and it works without an
// orchestrator (local stack, tests).
type Conn struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	sc     stan.Conn // nil while disconnected
	subs   []*subscriber
	closed bool
	// stopped: CloseSubscriptions ran; deliveries are left unacknowledged.
	stopped bool

	hctx     context.Context // handlers' context, cancelled by Close
	hcancel  context.CancelFunc
	handlers sync.WaitGroup
	loops    sync.WaitGroup
}

// Connect connects to the cluster, retrying until it succeeds or ctx is
// done (the server may start after the service).
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*Conn, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	if !ValidClientID(cfg.ClientID) {
		return nil, fmt.Errorf("events: invalid client id %q", cfg.ClientID)
	}
	c := &Conn{cfg: cfg, log: log.With("component", "nats", "client_id", cfg.ClientID)}
	c.hctx, c.hcancel = context.WithCancel(context.Background())
	sc, err := c.dial(ctx)
	if err != nil {
		c.hcancel()
		return nil, err
	}
	c.sc = sc
	c.log.Info("nats streaming connected", "url", config.MaskURL(cfg.URL), "cluster_id", cfg.ClusterID)
	return c, nil
}

// dial connects, retrying with backoff until ctx is done.
func (c *Conn) dial(ctx context.Context) (stan.Conn, error) {
	secs := int(c.cfg.PingInterval / time.Second)
	if secs < 1 {
		secs = 1
	}
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		sc, err := stan.Connect(c.cfg.ClusterID, c.cfg.ClientID,
			stan.NatsURL(c.cfg.URL),
			stan.ConnectWait(c.cfg.ConnectTimeout),
			stan.PubAckWait(c.cfg.PubAckWait),
			stan.Pings(secs, c.cfg.PingMaxOut),
			stan.SetConnectionLostHandler(c.onLost),
		)
		if err == nil {
			return sc, nil
		}
		if attempt == 1 || attempt%20 == 0 {
			c.log.Warn("nats streaming connect failed; retrying", "attempt", attempt, "err", err)
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
func (c *Conn) onLost(lost stan.Conn, err error) {
	c.mu.Lock()
	if c.closed || c.sc != lost {
		c.mu.Unlock()
		return
	}
	c.sc = nil
	c.mu.Unlock()
	c.log.Error("nats streaming connection lost; reconnecting", "err", err)
	c.loops.Add(1)
	go c.reconnect()
}

func (c *Conn) reconnect() {
	defer c.loops.Done()
	for {
		sc, err := c.dial(c.hctx)
		if err != nil {
			return // closed
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			_ = sc.Close()
			return
		}
		failed := false
		for _, s := range c.subs {
			if err := s.subscribe(sc); err != nil {
				c.log.Error("resubscribe failed", "subject", s.spec.Subject, "queue_group", s.spec.QueueGroup, "err", err)
				failed = true
				break
			}
		}
		if failed {
			c.mu.Unlock()
			_ = sc.Close()
			select {
			case <-c.hctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		c.sc = sc
		c.mu.Unlock()
		c.log.Info("nats streaming reconnected", "subscriptions", len(c.subs))
		return
	}
}

func (c *Conn) current() (stan.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, apperr.Wrap(apperr.Unavailable, "NATS Streaming is unavailable", stan.ErrConnectionClosed)
	}
	if c.sc == nil {
		return nil, apperr.New(apperr.Unavailable, "NATS Streaming is unavailable")
	}
	return c.sc, nil
}

// Ready returns nil while connected (for /readyz).
func (c *Conn) Ready(ctx context.Context) error {
	sc, err := c.current()
	if err != nil {
		return err
	}
	if nc := sc.NatsConn(); nc == nil || !nc.IsConnected() {
		return apperr.New(apperr.Unavailable, "NATS Streaming is reconnecting")
	}
	return nil
}

// ClientID is the id this connection registered with.
func (c *Conn) ClientID() string { return c.cfg.ClientID }

// Publish publishes e as JSON on its subject and returns after the server
// acknowledged it. Failures are apperr.Unavailable.
func (c *Conn) Publish(ctx context.Context, e Event) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("events: encode %s: %w", e.Subject(), err)
	}
	return c.PublishRaw(ctx, string(e.Subject()), data)
}

// PublishRaw publishes data on subject (SubjectPrefix is added) and returns
// after the server acknowledged it.
func (c *Conn) PublishRaw(ctx context.Context, subject string, data []byte) error {
	sc, err := c.current()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	if _, err := sc.PublishAsync(c.cfg.SubjectPrefix+subject, data, func(_ string, err error) { done <- err }); err != nil {
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
	published.WithLabelValues(subject).Inc()
	return nil
}

// Subscribe starts a durable queue subscription and keeps it across
// reconnects. Each message is handled by h in its own goroutine, at most
// s.MaxInflight at once.
func (c *Conn) Subscribe(s Subscription, h Handler) error {
	s = s.withDefaults()
	if s.Subject == "" || s.QueueGroup == "" {
		return errors.New("events: Subscribe needs a subject and a queue group")
	}
	if h == nil {
		return errors.New("events: Subscribe needs a handler")
	}
	h = Chain(h, s.Middleware...)
	sub := &subscriber{conn: c, spec: s, handler: h, sem: make(chan struct{}, s.MaxInflight), attempts: map[uint64]*delivery{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return apperr.Wrap(apperr.Unavailable, "NATS Streaming is unavailable", stan.ErrConnectionClosed)
	}
	if c.sc != nil {
		if err := sub.subscribe(c.sc); err != nil {
			return apperr.Wrap(apperr.Unavailable, "subscribe to NATS Streaming failed", err)
		}
	}
	// While disconnected the subscription is made on reconnect.
	c.subs = append(c.subs, sub)
	c.log.Info("subscribed", "subject", s.Subject, "queue_group", s.QueueGroup, "ack_wait", s.AckWait, "max_inflight", s.MaxInflight)
	return nil
}

// CloseSubscriptions stops handling messages: what is delivered from now
// on is left unacknowledged (the server redelivers it to another member of
// the queue group, at the latest when Close drops this client), and the
// handlers in flight get up to CloseGrace to finish before their context
// is cancelled. The connection stays open for publishing: a service's
// relay publishes the events its last handlings wrote before Close.
func (c *Conn) CloseSubscriptions() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.waitHandlers()
}

// waitHandlers waits for the handlers in flight, cancelling their context
// after CloseGrace.
func (c *Conn) waitHandlers() {
	waited := make(chan struct{})
	go func() { c.handlers.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(c.cfg.CloseGrace):
		c.hcancel()
		select {
		case <-waited:
		case <-time.After(c.cfg.CloseGrace):
			c.log.Warn("handlers still running at close")
		}
	}
}

// Close closes the subscriptions (see CloseSubscriptions) and the
// connection, so that the server drops the client at once. It never
// unsubscribes: durable queue groups survive and a restarted service
// resumes where it stopped.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	sc := c.sc
	c.sc = nil
	c.mu.Unlock()

	c.waitHandlers()
	c.hcancel()
	var err error
	if sc != nil {
		err = sc.Close()
	}
	c.loops.Wait()
	c.log.Info("nats streaming connection closed", "err", err)
	return err
}
