package testenv

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
)

// Event buses ([NATS].Bus), named as common/events names them.
const (
	BusStan      = "stan"      // NATS Streaming
	BusJetStream = "jetstream" // NATS JetStream
)

// Default JetStream image and the tag of the stand-in built from source.
const (
	DefaultJetStreamImage = "nats:2"
	JetStreamStandinImage = "ticketing-testenv/nats-server:2.15.3"
	jetStreamServerPkg    = "github.com/nats-io/nats-server/v2@v2.15.3"
)

// jetStreamMaxStore is the storage the test servers offer JetStream. It
// is what streams reserve (their MaxBytes, 1 GiB each by default), not
// what they use: every test has its own stream, and a server that offered
// only the disk's free space would refuse new streams after a few dozen.
const jetStreamMaxStore = 1 << 40

// EventBusName is the bus the tests of this process run on:
// TESTENV_EVENT_BUS, BusStan (the default) or BusJetStream.
func EventBusName() (string, error) {
	switch v := os.Getenv("TESTENV_EVENT_BUS"); v {
	case "", BusStan:
		return BusStan, nil
	case BusJetStream:
		return BusJetStream, nil
	default:
		return "", fmt.Errorf("testenv: TESTENV_EVENT_BUS=%q: want %q or %q", v, BusStan, BusJetStream)
	}
}

// EventBus is [NATSFor] the bus of [EventBusName]: what the tests of the
// services use, so that TESTENV_EVENT_BUS=jetstream runs them on JetStream.
func EventBus(tb testing.TB) NATS {
	tb.Helper()
	bus, err := EventBusName()
	if err != nil {
		tb.Fatal(err)
	}
	return NATSFor(tb, bus)
}

// DedicatedEventBus is [DedicatedNATSFor] the bus of [EventBusName].
func DedicatedEventBus(tb testing.TB) *NATSServer {
	tb.Helper()
	bus, err := EventBusName()
	if err != nil {
		tb.Fatal(err)
	}
	return DedicatedNATSFor(tb, bus)
}

func busName(bus string) string {
	if bus == BusJetStream {
		return "NATS JetStream"
	}
	return "NATS Streaming"
}

// newJetStream starts a nats-server with JetStream (file store) in the
// process's mode; port 0 means any port.
func newJetStream(ctx context.Context, port int) (natsBackend, error) {
	m, err := resolveMode()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if m == ModeEmbedded {
		dir, err := os.MkdirTemp("", "testenv-jetstream-")
		if err != nil {
			return nil, err
		}
		s := &embeddedJetStream{dir: dir, port: port}
		if err := s.start(ctx); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		return s, nil
	}
	img, err := jetStreamImage(ctx)
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("jetstream {\n  store_dir: \"/data\"\n  max_file_store: %d\n}\n", int64(jetStreamMaxStore))
	return startServerContainer(ctx, testcontainers.ContainerRequest{
		Image: img,
		Cmd:   []string{"-c", "/testenv-nats.conf"},
		Files: []testcontainers.ContainerFile{{Reader: strings.NewReader(conf), ContainerFilePath: "/testenv-nats.conf", FileMode: 0o644}},
	}, port, waitJetStream)
}

// waitJetStream returns once JetStream answers at url.
func waitJetStream(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.Name("testenv-probe"))
		if err == nil {
			var js jetstream.JetStream
			if js, err = jetstream.New(nc); err == nil {
				actx, acancel := context.WithTimeout(ctx, 2*time.Second)
				_, err = js.AccountInfo(actx)
				acancel()
			}
			nc.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("NATS JetStream at %s not ready: %v", url, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// embeddedJetStream runs nats-server with JetStream in this process.
type embeddedJetStream struct {
	dir  string
	port int
	srv  *natsserver.Server
}

func (s *embeddedJetStream) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

func (s *embeddedJetStream) start(ctx context.Context) error {
	if s.port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		s.port = p
	}
	// The port of a just-stopped server may take a moment to be free again.
	for {
		srv, err := natsserver.NewServer(&natsserver.Options{
			Host:              "127.0.0.1",
			Port:              s.port,
			JetStream:         true,
			StoreDir:          s.dir,
			JetStreamMaxStore: jetStreamMaxStore,
			NoLog:             true,
			NoSigs:            true,
		})
		if err != nil {
			return err
		}
		srv.Start()
		if srv.ReadyForConnections(5 * time.Second) {
			s.srv = srv
			break
		}
		srv.Shutdown()
		select {
		case <-ctx.Done():
			return fmt.Errorf("nats-server on port %d did not start: %w", s.port, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return waitJetStream(ctx, s.url())
}

func (s *embeddedJetStream) stop(context.Context) error {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
	return nil
}

func (s *embeddedJetStream) close() {
	s.stop(context.Background())
	os.RemoveAll(s.dir)
}

var jetStreamImg lazy[string]

// jetStreamImage picks the JetStream image once per process: nats:2 where
// it is present or can be pulled, else nats-server built from source.
func jetStreamImage(ctx context.Context) (string, error) {
	return jetStreamImg.get(func() (string, error) {
		return pickImage(ctx, "TESTENV_JETSTREAM_IMAGE", DefaultJetStreamImage, func(ctx context.Context) (string, error) {
			root, err := RepoRoot()
			if err != nil {
				return "", err
			}
			return BuildGoImage(ctx, JetStreamStandinImage, jetStreamServerPkg, root)
		})
	})
}
