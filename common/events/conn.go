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

	"github.com/ticketing-go/ticketing/common/apperr"
	"github.com/ticketing-go/ticketing/common/config"
)

// Transports (Config.Bus).
const (
	// BusStan is NATS Streaming over stan.go, the default.
	BusStan = "stan"
	// BusJetStream is NATS JetStream over nats.go's jetstream package.
	BusJetStream = "jetstream"
)

// Config says how to reach the broker.
type Config struct {
	// Bus is the transport: BusStan (the default when empty) or
	// BusJetStream. Services behave the same on both (docs/EVENTS-TRANSPORTS.md).
	Bus       string
	URL       string // nats://host:4222
	ClusterID string // NATS Streaming only: the server's -cid ("ticketing")
	// ClientID is unique per process: [A-Za-z0-9_-]. NATS Streaming
	// registers it; on JetStream it is the connection's name.
	ClientID string
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
	// Stream configures the JetStream stream (JetStream only).
	Stream StreamConfig
}

// StreamConfig is the JetStream stream that holds every subject (see
// Subjects), created or updated by every Connect. Its limits are stated so
// that it cannot fill a disk unnoticed: when MaxBytes is reached, publishes
// fail (DiscardNew) and the outboxes keep the events until an operator
// makes room, instead of the oldest events being dropped while a consumer
// may still need them.
type StreamConfig struct {
	// Replicas: copies of the stream on a JetStream cluster (1 locally, 3
	// on Kubernetes).
	Replicas int
	// MaxBytes bounds the stream's size on disk.
	MaxBytes int64
	// MaxAge, when set, removes events older than it, consumed or not: a
	// service down longer than MaxAge misses them. 0 keeps every event up
	// to MaxBytes.
	MaxAge time.Duration
	// DuplicateWindow: a publish with the Nats-Msg-Id of one within it is
	// dropped by the server (an outbox relay republishing after a crash).
	DuplicateWindow time.Duration
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

	DefaultStreamReplicas        = 1
	DefaultStreamMaxBytes        = 1 << 30 // 1 GiB: about 5 million events of 200 bytes
	DefaultStreamDuplicateWindow = 2 * time.Minute
)

// ConfigFromEnv reads EVENT_BUS (stan, the default, or jetstream),
// NATS_URL (default nats://localhost:4222), NATS_CLUSTER_ID (default
// "ticketing"), NATS_CLIENT_ID (default NewClientID(service)),
// NATS_SUBJECT_PREFIX, NATS_PING_INTERVAL, NATS_PING_MAX_OUT and
// NATS_CONNECT_TIMEOUT, and for JetStream's stream NATS_JS_REPLICAS
// (default 1), NATS_JS_MAX_BYTES (default 1 GiB), NATS_JS_MAX_AGE (default
// none) and NATS_JS_DUPLICATE_WINDOW (default 2m). Problems are recorded in
// env.
func ConfigFromEnv(env *config.Env, service string) Config {
	c := Config{
		Bus:            env.String("EVENT_BUS", BusStan),
		URL:            env.String("NATS_URL", DefaultURL),
		ClusterID:      env.String("NATS_CLUSTER_ID", DefaultClusterID),
		ClientID:       env.String("NATS_CLIENT_ID", ""),
		SubjectPrefix:  env.String("NATS_SUBJECT_PREFIX", ""),
		PingInterval:   env.Duration("NATS_PING_INTERVAL", DefaultPingInterval),
		PingMaxOut:     env.Int("NATS_PING_MAX_OUT", DefaultPingMaxOut),
		ConnectTimeout: env.Duration("NATS_CONNECT_TIMEOUT", DefaultConnectTimeout),
		Stream: StreamConfig{
			Replicas: env.Int("NATS_JS_REPLICAS", DefaultStreamReplicas),
			MaxBytes: int64(env.Int("NATS_JS_MAX_BYTES", DefaultStreamMaxBytes)),
			// Unset: no age limit (a set value must be positive).
			MaxAge:          env.Duration("NATS_JS_MAX_AGE", 0),
			DuplicateWindow: env.Duration("NATS_JS_DUPLICATE_WINDOW", DefaultStreamDuplicateWindow),
		},
	}
	if c.ClientID == "" {
		c.ClientID = NewClientID(service)
	}
	env.Check(c.Bus == BusStan || c.Bus == BusJetStream, "EVENT_BUS: %q is not %q or %q", c.Bus, BusStan, BusJetStream)
	env.Check(ValidClientID(c.ClientID), "NATS_CLIENT_ID: %q may only contain A-Z, a-z, 0-9, '_' and '-'", c.ClientID)
	env.Check(c.PingMaxOut >= 2, "NATS_PING_MAX_OUT: must be at least 2")
	env.Check(c.Stream.Replicas >= 1 && c.Stream.Replicas <= 5, "NATS_JS_REPLICAS: %d is not between 1 and 5 (JetStream's limit)", c.Stream.Replicas)
	env.Check(c.Stream.MaxBytes > 0, "NATS_JS_MAX_BYTES: must be positive")
	env.Check(c.Stream.MaxAge == 0 || c.Stream.DuplicateWindow <= c.Stream.MaxAge,
		"NATS_JS_DUPLICATE_WINDOW (%s) must not exceed NATS_JS_MAX_AGE (%s)", c.Stream.DuplicateWindow, c.Stream.MaxAge)
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
	if c.Bus == "" {
		c.Bus = BusStan
	}
	if c.Stream.Replicas <= 0 {
		c.Stream.Replicas = DefaultStreamReplicas
	}
	if c.Stream.MaxBytes <= 0 {
		c.Stream.MaxBytes = DefaultStreamMaxBytes
	}
	if c.Stream.DuplicateWindow <= 0 {
		c.Stream.DuplicateWindow = DefaultStreamDuplicateWindow
	}
	if c.Stream.MaxAge > 0 && c.Stream.DuplicateWindow > c.Stream.MaxAge {
		c.Stream.DuplicateWindow = c.Stream.MaxAge // JetStream refuses a longer window
	}
	return c
}

// Conn is a connection to the broker, on either transport, that survives
// outages.
//
// Decision (issue 2: exit or reconnect?): when the server goes away, Conn
// reconnects and keeps every subscription (durable queue groups and
// consumers resume where they stopped); meanwhile publishes fail at once
// with apperr.Unavailable. The alternative, exiting non-zero and letting an
// orchestrator restart the pod, would take the HTTP API down with the
// broker. Reconnecting keeps the services serving HTTP during a NATS
// outage, the outbox delivers the events written meanwhile once NATS is
// back, and it works without an orchestrator (local stack, tests). On NATS
// Streaming Conn does it itself (stan.go gives a lost connection up); on
// JetStream nats.go does.
//
// What happens to a delivery (attempts, dead letters, retries, panics,
// graceful shutdown) is the same on both transports: it is decided here
// and in subscriber; a transport only moves bytes and settles deliveries.
type Conn struct {
	cfg    Config
	log    *slog.Logger
	t      transport
	broker string // "NATS Streaming" or "NATS JetStream", for errors and logs

	mu     sync.Mutex
	closed bool
	// stopped: CloseSubscriptions ran; deliveries are left unacknowledged.
	stopped bool

	hctx     context.Context // handlers' context, cancelled by Close
	hcancel  context.CancelFunc
	handlers sync.WaitGroup
}

// transport is one broker client under a Conn: NATS Streaming (stanTransport)
// or JetStream (jsTransport). Its errors are apperr.Unavailable.
type transport interface {
	// publish publishes data on subject (SubjectPrefix included) and
	// returns once the server has stored it. msgID, when not empty,
	// identifies the event: a server that deduplicates drops a second
	// publish of it.
	publish(ctx context.Context, subject, msgID string, data []byte) error
	// subscribe starts handing s's messages to s.deliver, and keeps doing
	// so across reconnects until close.
	subscribe(s *subscriber) error
	// stop asks the server for no more deliveries where it can
	// (CloseSubscriptions); deliveries may still come and are released.
	stop()
	// ready returns nil while connected.
	ready() error
	// close ends the connection without unsubscribing: durable
	// subscriptions survive.
	close() error
}

// errClosed is what a closed Conn's publishes wrap.
var errClosed = errors.New("events: connection closed")

// Connect connects to the broker of cfg.Bus, retrying until it succeeds or
// ctx is done (the server may start after the service).
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*Conn, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	if !ValidClientID(cfg.ClientID) {
		return nil, fmt.Errorf("events: invalid client id %q", cfg.ClientID)
	}
	c := &Conn{cfg: cfg, log: log.With("component", "nats", "bus", cfg.Bus, "client_id", cfg.ClientID)}
	var err error
	switch cfg.Bus {
	case BusStan:
		c.broker = "NATS Streaming"
		c.t, err = dialStan(ctx, cfg, c.log)
	case BusJetStream:
		c.broker = "NATS JetStream"
		c.t, err = dialJetStream(ctx, cfg, c.log)
	default:
		return nil, fmt.Errorf("events: unknown bus %q (want %q or %q)", cfg.Bus, BusStan, BusJetStream)
	}
	if err != nil {
		return nil, err
	}
	c.hctx, c.hcancel = context.WithCancel(context.Background())
	return c, nil
}

// Ready returns nil while connected (for /readyz).
func (c *Conn) Ready(ctx context.Context) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	return c.t.ready()
}

func (c *Conn) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return apperr.Wrap(apperr.Unavailable, c.broker+" is unavailable", errClosed)
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
	return c.PublishMsg(ctx, subject, "", data)
}

// PublishMsg is PublishRaw for an event with an id (an outbox entry's):
// on JetStream it is the Nats-Msg-Id, so that the server drops a second
// publish of the event within the stream's duplicate window (a relay that
// republishes after a crash). NATS Streaming ignores it.
func (c *Conn) PublishMsg(ctx context.Context, subject, msgID string, data []byte) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.t.publish(ctx, c.cfg.SubjectPrefix+subject, msgID, data); err != nil {
		return err
	}
	published.WithLabelValues(subject).Inc()
	return nil
}

// Subscribe starts a durable queue subscription and keeps it across
// reconnects. Each message is handled by h on a worker of its own (workers
// outlive their messages), at most s.MaxInflight at once.
func (c *Conn) Subscribe(s Subscription, h Handler) error {
	s = s.withDefaults()
	if s.Subject == "" || s.QueueGroup == "" {
		return errors.New("events: Subscribe needs a subject and a queue group")
	}
	if h == nil {
		return errors.New("events: Subscribe needs a handler")
	}
	if err := c.checkOpen(); err != nil {
		return err
	}
	h = Chain(h, s.Middleware...)
	sub := &subscriber{conn: c, spec: s, handler: h, sem: make(chan struct{}, s.MaxInflight), work: make(chan inbound), attempts: map[uint64]*seen{}}
	if err := c.t.subscribe(sub); err != nil {
		return err
	}
	c.log.Info("subscribed", "subject", s.Subject, "queue_group", s.QueueGroup, "ack_wait", s.AckWait, "max_inflight", s.MaxInflight)
	return nil
}

// CloseSubscriptions stops handling messages: what is delivered from now
// on is left unacknowledged (NATS Streaming redelivers it to another
// member of the queue group, at the latest when Close drops this client;
// JetStream is told at once, see jsMsg.release), and the handlers in
// flight get up to CloseGrace to finish before their context is
// cancelled. The connection stays open for publishing: a service's relay
// publishes the events its last handlings wrote before Close.
func (c *Conn) CloseSubscriptions() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.t.stop()
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
// unsubscribes: durable queue groups and consumers survive and a restarted
// service resumes where it stopped.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()

	c.waitHandlers()
	c.hcancel()
	err := c.t.close()
	c.log.Info("connection closed", "broker", c.broker, "err", err)
	return err
}
