package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	stand "github.com/nats-io/nats-streaming-server/server"
	"github.com/nats-io/nats-streaming-server/stores"
	"github.com/nats-io/stan.go"
	"github.com/testcontainers/testcontainers-go"
)

// ClusterID is the NATS Streaming cluster id of every testenv server (the
// same as in production).
const ClusterID = "ticketing"

// Default NATS Streaming image and the tag of the stand-in built from source.
const (
	DefaultNATSImage = "nats-streaming:0.25.6"
	NATSStandinImage = "ticketing-testenv/nats-streaming:0.25.6"
	natsServerPkg    = "github.com/nats-io/nats-streaming-server@v0.25.6"
)

// NATS holds the connection details of an event bus for one test: a NATS
// Streaming server (Bus "stan") or a JetStream one (Bus "jetstream").
// Publish and subscribe on SubjectPrefix + subject (see common/events,
// whose Config takes Bus as it is).
type NATS struct {
	URL, ClusterID, SubjectPrefix string
	Bus                           string
}

// NATSServer is a test's own NATS server (see [DedicatedNATS]).
type NATSServer struct {
	NATS
	srv natsBackend
}

type natsBackend interface {
	url() string
	stop(ctx context.Context) error
	start(ctx context.Context) error
	close()
}

var sharedNATS = map[string]*lazy[natsBackend]{BusStan: {}, BusJetStream: {}}

// NATSStreaming returns a NATS Streaming server shared by the tests of this
// process (started on first use) with a subject prefix unique to this test.
func NATSStreaming(tb testing.TB) NATS {
	tb.Helper()
	return NATSFor(tb, BusStan)
}

// NATSFor returns the server of bus (BusStan or BusJetStream) shared by
// the tests of this process (started on first use) with a subject prefix
// unique to this test.
func NATSFor(tb testing.TB, bus string) NATS {
	tb.Helper()
	shared, ok := sharedNATS[bus]
	if !ok {
		tb.Fatalf("testenv: unknown event bus %q (want %q or %q)", bus, BusStan, BusJetStream)
	}
	srv, err := shared.get(func() (natsBackend, error) {
		s, err := newBus(context.Background(), bus, 0)
		if err == nil {
			atExit(s.close)
		}
		return s, err
	})
	if err != nil {
		tb.Fatalf("testenv: %s: %v", busName(bus), err)
	}
	return NATS{URL: srv.url(), ClusterID: ClusterID, SubjectPrefix: uniqueName(tb, 48) + ".", Bus: bus}
}

// DedicatedNATS starts a NATS Streaming server (file store) for this test
// alone, removed in Cleanup. Stop and Start it to simulate an outage: the URL
// stays the same, and messages and durable subscriptions survive.
func DedicatedNATS(tb testing.TB) *NATSServer {
	tb.Helper()
	return DedicatedNATSFor(tb, BusStan)
}

// DedicatedNATSFor is [DedicatedNATS] for bus (BusStan or BusJetStream;
// JetStream's store is on file too, and its streams and durable consumers
// survive a Stop and Start).
func DedicatedNATSFor(tb testing.TB, bus string) *NATSServer {
	tb.Helper()
	if _, ok := sharedNATS[bus]; !ok {
		tb.Fatalf("testenv: unknown event bus %q (want %q or %q)", bus, BusStan, BusJetStream)
	}
	port, err := freePort()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	srv, err := newBus(context.Background(), bus, port)
	if err != nil {
		tb.Fatalf("testenv: dedicated %s: %v", busName(bus), err)
	}
	tb.Cleanup(srv.close)
	return &NATSServer{NATS: NATS{URL: srv.url(), ClusterID: ClusterID, SubjectPrefix: uniqueName(tb, 48) + ".", Bus: bus}, srv: srv}
}

// Stop stops the server gracefully; its data stays.
func (s *NATSServer) Stop(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.srv.stop(ctx); err != nil {
		tb.Fatalf("testenv: stop %s: %v", busName(s.Bus), err)
	}
}

// Start starts the stopped server again on the same URL and returns once it
// accepts clients.
func (s *NATSServer) Start(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.srv.start(ctx); err != nil {
		tb.Fatalf("testenv: start %s: %v", busName(s.Bus), err)
	}
}

// newBus starts a server of bus in the process's mode; port 0 means any port.
func newBus(ctx context.Context, bus string, port int) (natsBackend, error) {
	if bus == BusJetStream {
		return newJetStream(ctx, port)
	}
	return newNATS(ctx, port)
}

// newNATS starts a NATS Streaming server in the process's mode; port 0
// means any port.
func newNATS(ctx context.Context, port int) (natsBackend, error) {
	m, err := resolveMode()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if m == ModeEmbedded {
		dir, err := os.MkdirTemp("", "testenv-nats-")
		if err != nil {
			return nil, err
		}
		s := &embeddedNATS{dir: dir, port: port}
		if err := s.start(ctx); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		return s, nil
	}
	img, err := natsImage(ctx)
	if err != nil {
		return nil, err
	}
	return startNATSContainer(ctx, img, port)
}

// waitNATS returns once a NATS Streaming client can connect to url.
func waitNATS(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		sc, err := stan.Connect(ClusterID, "testenv-probe-"+randomHex(6), stan.NatsURL(url), stan.ConnectWait(2*time.Second))
		if err == nil {
			sc.Close()
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("NATS Streaming at %s not ready: %v", url, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// embeddedNATS runs nats-streaming-server in this process.
type embeddedNATS struct {
	dir  string
	port int
	srv  *stand.StanServer
}

func (s *embeddedNATS) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

func (s *embeddedNATS) start(ctx context.Context) error {
	if s.port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		s.port = p
	}
	sOpts := stand.GetDefaultOptions()
	sOpts.ID = ClusterID
	sOpts.StoreType = stores.TypeFile
	sOpts.FilestoreDir = s.dir
	sOpts.FileStoreOpts.DoSync = false // tests stop servers gracefully
	sOpts.ClientHBInterval = 5 * time.Second
	sOpts.ClientHBTimeout = 5 * time.Second
	sOpts.ClientHBFailCount = 2
	// Every test has its own subject prefix, so a test process opens many
	// channels; the default limit (100) would refuse them.
	sOpts.StoreLimits.MaxChannels = 0
	nOpts := stand.DefaultNatsServerOptions
	nOpts.Host = "127.0.0.1"
	nOpts.Port = s.port
	nOpts.NoLog = true
	nOpts.NoSigs = true
	var (
		srv *stand.StanServer
		err error
	)
	// The port of a just-stopped server may take a moment to be free again.
	for {
		srv, err = stand.RunServerWithOpts(sOpts, &nOpts)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.srv = srv
	return waitNATS(ctx, s.url())
}

func (s *embeddedNATS) stop(context.Context) error {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv = nil
	}
	return nil
}

func (s *embeddedNATS) close() {
	s.stop(context.Background())
	os.RemoveAll(s.dir)
}

// containerNATS runs the server in a container.
type containerNATS struct {
	c       testcontainers.Container
	hostURL string
	wait    func(ctx context.Context, url string) error // until the server accepts clients
}

func startNATSContainer(ctx context.Context, img string, hostPort int) (*containerNATS, error) {
	return startServerContainer(ctx, testcontainers.ContainerRequest{
		Image: img,
		Cmd: []string{"-cid", ClusterID, "-store", "file", "-dir", "/data", "--file_sync=false",
			"-hbi", "5s", "-hbt", "5s", "-hbf", "2",
			"-mc", "0"}, // unlimited channels: every test has its own subject prefix
	}, hostPort, waitNATS)
}

// startServerContainer starts req (a NATS server listening on 4222) with
// 4222 published on hostPort (0: any) and waits for it.
func startServerContainer(ctx context.Context, req testcontainers.ContainerRequest, hostPort int, wait func(context.Context, string) error) (*containerNATS, error) {
	img := req.Image
	req.ExposedPorts = []string{"4222/tcp"}
	req.Labels = Labels()
	if hostPort != 0 {
		req.HostConfigModifier = func(hc *container.HostConfig) {
			hc.PortBindings = nat.PortMap{"4222/tcp": {{HostPort: strconv.Itoa(hostPort)}}}
		}
	}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if err != nil {
		if c != nil {
			c.Terminate(context.Background())
		}
		return nil, fmt.Errorf("start %s: %w", img, err)
	}
	host, err := c.Host(ctx)
	if err == nil && hostPort == 0 {
		var p nat.Port
		p, err = c.MappedPort(ctx, "4222/tcp")
		hostPort = p.Int()
	}
	if err != nil {
		c.Terminate(context.Background())
		return nil, err
	}
	s := &containerNATS{c: c, hostURL: "nats://" + net.JoinHostPort(host, strconv.Itoa(hostPort)), wait: wait}
	if err := wait(ctx, s.hostURL); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *containerNATS) url() string { return s.hostURL }

func (s *containerNATS) stop(ctx context.Context) error {
	timeout := 10 * time.Second
	return s.c.Stop(ctx, &timeout)
}

func (s *containerNATS) start(ctx context.Context) error {
	if err := s.c.Start(ctx); err != nil {
		return err
	}
	return s.wait(ctx, s.hostURL)
}

func (s *containerNATS) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.c.Terminate(ctx); err != nil {
		logf("remove NATS container: %v", err)
	}
}

var natsImg lazy[string]

// natsImage picks the NATS Streaming image once per process.
func natsImage(ctx context.Context) (string, error) {
	return natsImg.get(func() (string, error) {
		return pickImage(ctx, "TESTENV_NATS_IMAGE", DefaultNATSImage, func(ctx context.Context) (string, error) {
			root, err := RepoRoot()
			if err != nil {
				return "", err
			}
			return BuildGoImage(ctx, NATSStandinImage, natsServerPkg, root)
		})
	})
}

// pickImage returns the image named by env (which must be available) or
// else def when it is present or pullable, or else the stand-in that build
// returns. It logs the choice.
func pickImage(ctx context.Context, env, def string, standin func(context.Context) (string, error)) (string, error) {
	if v := os.Getenv(env); v != "" {
		if err := ensureImage(ctx, v); err != nil {
			return "", fmt.Errorf("%s=%s: %w", env, v, err)
		}
		logf("image %s (from %s)", v, env)
		return v, nil
	}
	err := ensureImage(ctx, def)
	if err == nil {
		logf("image %s", def)
		return def, nil
	}
	img, berr := standin(ctx)
	if berr != nil {
		return "", fmt.Errorf("%s cannot be had (%v), and its stand-in cannot be built: %w", def, err, berr)
	}
	logf("image %s (stand-in: %s cannot be pulled: %v)", img, def, firstLine(err.Error()))
	return img, nil
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
