package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	stan "github.com/nats-io/stan.go"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/ticketing-go/ticketing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// jwtKey signs the sessions of this test system only.
const jwtKey = "e2e-test-signing-key-not-a-secret"

// Node is one container of the system with a stable host address (its host
// port is fixed at creation so that it survives stop/start and kill/start).
type Node struct {
	Name     string
	C        testcontainers.Container
	HostPort int    // the published port on 127.0.0.1
	URL      string // http://127.0.0.1:port for services
}

// System is the whole system on one Docker network.
type System struct {
	t          testing.TB
	Net        *testcontainers.DockerNetwork
	Mongo      *Node
	NATS       *Node
	Auth       *Node
	Tickets    []*Node
	Orders     []*Node
	Expiration *Node
	Bus        string // testenv.BusStan or testenv.BusJetStream (TESTENV_EVENT_BUS)
	// Cluster is the bus when Options.JetStreamCluster asked for one (NATS
	// is nil then).
	Cluster *testenv.JetStreamCluster
	mc      *mongo.Client
	images  images
}

// Options varies the system per scenario.
type Options struct {
	ExpirationWindow time.Duration // orders' EXPIRATION_WINDOW; default 15m
	// JetStreamCluster runs the bus as a 3-node JetStream cluster with
	// streams of 3 replicas (jetstream_cluster_test.go); the bus must be
	// JetStream.
	JetStreamCluster bool
}

type images struct {
	mongo, nats, jetstream            string
	auth, tickets, orders, expiration string
}

var (
	imagesOnce sync.Once
	imgs       images
	imagesErr  error
)

// buildImages builds (or reuses, by source hash) the images once per process.
func buildImages(ctx context.Context) (images, error) {
	imagesOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			imagesErr = err
			return
		}
		svc := func(name string) string {
			if err != nil {
				return ""
			}
			var h, tag string
			h, err = testenv.SourceHash(root, "services/"+name, "common")
			if err != nil {
				return ""
			}
			tag, err = testenv.BuildGoImage(ctx, "ticketing-e2e/"+name+":"+h, "./services/"+name, root)
			if err != nil {
				err = fmt.Errorf("image %s: %w", name, err)
			}
			return tag
		}
		imgs.auth = svc("auth")
		imgs.tickets = svc("tickets")
		imgs.orders = svc("orders")
		imgs.expiration = svc("expiration")
		if err != nil {
			imagesErr = err
			return
		}
		imgs.mongo, imgs.nats, imgs.jetstream, imagesErr = infraImages(ctx)
	})
	return imgs, imagesErr
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartSystem starts the whole system for one test; it is removed in Cleanup
// (its logs are printed when the test failed).
func StartSystem(t *testing.T, o Options) *System {
	t.Helper()
	if testenv.Mode() != testenv.ModeContainers {
		t.Skip("e2e needs a Docker engine (testenv mode is " + testenv.Mode() + ")")
	}
	if o.ExpirationWindow == 0 {
		o.ExpirationWindow = 15 * time.Minute
	}
	bus, err := testenv.EventBusName()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	im, err := buildImages(ctx)
	if err != nil {
		t.Fatalf("images: %v", err)
	}
	nw, err := network.New(ctx, network.WithLabels(map[string]string{testenv.LabelKey: "1"}))
	if err != nil {
		t.Fatalf("network: %v", err)
	}
	s := &System{t: t, Net: nw, images: im, Bus: bus}
	t.Cleanup(s.remove)

	natsURL := "nats://nats:4222"
	if o.JetStreamCluster {
		natsURL = s.startJetStreamCluster(t)
	} else if bus == testenv.BusJetStream {
		s.NATS = s.startNode(ctx, "nats", im.jetstream, 4222, nil, jetStreamCmd)
	} else {
		s.NATS = s.startNode(ctx, "nats", im.nats, 4222, nil, natsCmd)
	}
	s.Mongo = s.startNode(ctx, "mongo", im.mongo, 27017, nil, mongoCmd)
	s.waitInfra(ctx)

	// Short failure detection, as a deployment that wants fast failover
	// would configure: NATS pings every second (lost after 2 misses), MongoDB
	// server selection gives up after 2 s (then 503).
	base := map[string]string{
		"PORT":               "3000",
		"MONGO_URI":          "mongodb://mongo:27017/?serverSelectionTimeoutMS=2000&connectTimeoutMS=2000",
		"EVENT_BUS":          bus,
		"NATS_URL":           natsURL,
		"NATS_CLUSTER_ID":    "ticketing",
		"NATS_PING_INTERVAL": "1s",
		"NATS_PING_MAX_OUT":  "2",
		"JWT_KEY":            jwtKey,
		"COOKIE_SECURE":      "false",
		"LOG_LEVEL":          envOr("E2E_LOG_LEVEL", "warn"),
	}
	if o.JetStreamCluster {
		base["NATS_JS_REPLICAS"] = strconv.Itoa(len(s.Cluster.Nodes))
	}
	env := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	// Started in two waves of parallel starts: the second replicas once the
	// first are ready, as a rolling deployment would (two replicas creating
	// the same indexes at the same moment is not what this suite tests).
	var wg sync.WaitGroup
	var mu sync.Mutex
	startSvc := func(name, img string, e map[string]string, dst **Node) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := s.startNode(ctx, name, img, 3000, e, nil)
			mu.Lock()
			*dst = n
			mu.Unlock()
		}()
	}
	wave := func(nodes ...**Node) {
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		for _, n := range nodes {
			s.WaitReady(ctx, *n)
		}
	}
	s.Tickets = make([]*Node, 2)
	s.Orders = make([]*Node, 2)
	tenv := env(map[string]string{"MONGO_DB": "tickets"})
	oenv := env(map[string]string{"MONGO_DB": "orders", "EXPIRATION_WINDOW": o.ExpirationWindow.String()})
	startSvc("auth", im.auth, env(map[string]string{"MONGO_DB": "auth"}), &s.Auth)
	startSvc("tickets-1", im.tickets, tenv, &s.Tickets[0])
	startSvc("orders-1", im.orders, oenv, &s.Orders[0])
	startSvc("expiration", im.expiration, env(map[string]string{"MONGO_DB": "expiration"}), &s.Expiration)
	wave(&s.Auth, &s.Tickets[0], &s.Orders[0], &s.Expiration)
	startSvc("tickets-2", im.tickets, tenv, &s.Tickets[1])
	startSvc("orders-2", im.orders, oenv, &s.Orders[1])
	wave(&s.Tickets[1], &s.Orders[1])
	t.Logf("system up in %s (mongo :%d, nats %s, bus %s)", time.Since(start).Round(time.Millisecond), s.Mongo.HostPort, s.NATSURL(), bus)
	return s
}

func natsCmd() []string {
	// File store; heartbeats short enough that a killed client's messages
	// go to the other queue member within seconds.
	return []string{"-cid", "ticketing", "-store", "file", "-dir", "/data", "--file_sync=false",
		"-hbi", "1s", "-hbt", "2s", "-hbf", "2"}
}

// jetStreamCmd: nats-server with JetStream, its file store in /data
// (which survives a stop and start of the container).
func jetStreamCmd() []string { return []string{"-js", "-sd", "/data"} }

// startNode creates and starts a container with alias name on the network,
// its port published on a fixed host port.
func (s *System) startNode(ctx context.Context, name, img string, port int, env map[string]string, cmd func() []string) *Node {
	hp := freePort(s.t)
	p := fmt.Sprintf("%d/tcp", port)
	req := testcontainers.ContainerRequest{
		Image:          img,
		Name:           fmt.Sprintf("e2e-%s-%s", name, strconv.FormatInt(time.Now().UnixNano()%1e9, 36)),
		Env:            env,
		ExposedPorts:   []string{p},
		Labels:         map[string]string{testenv.LabelKey: "1"},
		Networks:       []string{s.Net.Name},
		NetworkAliases: map[string][]string{s.Net.Name: {strings.Split(name, "-")[0], name}},
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.PortBindings = nat.PortMap{nat.Port(p): {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(hp)}}}
		},
	}
	if cmd != nil {
		req.Cmd = cmd()
	}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	n := &Node{Name: name, C: c, HostPort: hp, URL: "http://127.0.0.1:" + strconv.Itoa(hp)}
	if c != nil {
		s.track(n)
	}
	if err != nil {
		s.t.Errorf("start %s (%s): %v", name, img, err)
	}
	return n
}

var nodesMu sync.Mutex

func (s *System) track(n *Node) {
	nodesMu.Lock()
	defer nodesMu.Unlock()
	allNodes[s] = append(allNodes[s], n)
}

var allNodes = map[*System][]*Node{}

// Services lists the service nodes.
func (s *System) Services() []*Node {
	out := []*Node{s.Auth}
	out = append(out, s.Tickets...)
	out = append(out, s.Orders...)
	return append(out, s.Expiration)
}

func (s *System) remove() {
	nodesMu.Lock()
	nodes := allNodes[s]
	delete(allNodes, s)
	nodesMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if s.t.Failed() {
		for _, n := range nodes {
			s.printLogs(ctx, n)
		}
	}
	if s.mc != nil {
		s.mc.Disconnect(ctx)
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.C.Terminate(ctx); err != nil {
				s.t.Logf("remove %s: %v", n.Name, err)
			}
		}()
	}
	wg.Wait()
	if err := s.Net.Remove(ctx); err != nil {
		s.t.Logf("remove network: %v", err)
	}
}

func (s *System) printLogs(ctx context.Context, n *Node) {
	rc, err := n.C.Logs(ctx)
	if err != nil {
		return
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if max := 40; len(lines) > max {
		if v, err := strconv.Atoi(os.Getenv("E2E_LOG_LINES")); err == nil && v > 0 {
			max = v
		}
		if len(lines) > max {
			lines = lines[len(lines)-max:]
		}
	}
	s.t.Logf("--- last logs of %s ---\n%s", n.Name, strings.Join(lines, "\n"))
}

// waitInfra waits until MongoDB answers a ping and NATS (Streaming, or
// JetStream) accepts a client.
func (s *System) waitInfra(ctx context.Context) {
	s.t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := s.pingMongo(wctx); err != nil {
		s.t.Fatalf("mongo not ready: %v", err)
	}
	for {
		err := s.probeNATS(wctx)
		if err == nil {
			return
		}
		if wctx.Err() != nil {
			s.t.Fatalf("nats not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
}

func (s *System) probeNATS(ctx context.Context) error {
	if s.Bus == testenv.BusJetStream {
		nc, err := nats.Connect(s.NATSURL(), nats.Timeout(2*time.Second))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = js.AccountInfo(actx)
		return err
	}
	sc, err := stan.Connect("ticketing", fmt.Sprintf("e2e-probe-%d", time.Now().UnixNano()), stan.NatsURL(s.NATSURL()), stan.ConnectWait(2*time.Second))
	if err == nil {
		sc.Close()
	}
	return err
}

// NATSURL is the NATS server as seen from the host.
func (s *System) NATSURL() string {
	if s.Cluster != nil {
		return s.Cluster.URL()
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", s.NATS.HostPort)
}

func (s *System) pingMongo(ctx context.Context) error {
	for {
		err := s.DB().Client().Ping(ctx, nil)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
}

// DB returns a host-side client (read-only use: invariants) of the store.
func (s *System) DB() *mongo.Database {
	if s.mc == nil {
		c, err := mongo.Connect(context.Background(), options.Client().
			ApplyURI(fmt.Sprintf("mongodb://127.0.0.1:%d", s.Mongo.HostPort)).
			SetServerSelectionTimeout(2*time.Second).SetTimeout(10*time.Second))
		if err != nil {
			s.t.Fatalf("mongo client: %v", err)
		}
		s.mc = c
	}
	return s.mc.Database("tickets")
}

// Coll is a collection of a service database.
func (s *System) Coll(db, coll string) *mongo.Collection {
	s.DB()
	return s.mc.Database(db).Collection(coll)
}

// WaitReady polls the node's /readyz until 200.
func (s *System) WaitReady(ctx context.Context, n *Node) {
	s.t.Helper()
	alive := func() error {
		st, err := n.C.State(ctx)
		if err == nil && !st.Running {
			return fmt.Errorf("%s exited (code %d)", n.Name, st.ExitCode)
		}
		return nil
	}
	if err := waitStatusWhile(ctx, n.URL+"/readyz", http.StatusOK, 90*time.Second, alive); err != nil {
		s.printLogs(ctx, n)
		s.t.Fatalf("%s not ready: %v", n.Name, err)
	}
}

func waitStatus(ctx context.Context, url string, want int, timeout time.Duration) error {
	return waitStatusWhile(ctx, url, want, timeout, nil)
}

// waitStatusWhile polls url until it answers want; alive (if set) ends the
// wait early with its error.
func waitStatusWhile(ctx context.Context, url string, want int, timeout time.Duration, alive func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: want %d, last %s", url, want, last)
		}
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
}

// Kill sends SIGKILL to the node's container (no graceful shutdown).
func (s *System) Kill(n *Node) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	defer cli.Close()
	if err := cli.ContainerKill(ctx, n.C.GetContainerID(), "SIGKILL"); err != nil {
		s.t.Fatalf("kill %s: %v", n.Name, err)
	}
	// Wait until docker reports it stopped.
	for {
		st, err := n.C.State(ctx)
		if err == nil && !st.Running {
			return
		}
		if ctx.Err() != nil {
			s.t.Fatalf("%s still running after SIGKILL", n.Name)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// Stop stops the node gracefully (SIGTERM, then SIGKILL after 10 s).
func (s *System) Stop(n *Node) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	grace := 10 * time.Second
	if err := n.C.Stop(ctx, &grace); err != nil {
		s.t.Fatalf("stop %s: %v", n.Name, err)
	}
}

// Start starts a stopped node again on the same host port.
func (s *System) Start(n *Node) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := n.C.Start(ctx); err != nil {
		s.t.Fatalf("start %s: %v", n.Name, err)
	}
}

// Memory is a service's memory: the resident set of its process.
type Memory struct {
	RSSKB, PeakKB int64
	Source        string
}

// Memory reads the container's process RSS from /proc on the host when the
// Docker engine shares the host's pid namespace, else the cgroup's.
func (s *System) Memory(n *Node) Memory {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	defer cli.Close()
	ins, err := cli.ContainerInspect(ctx, n.C.GetContainerID())
	if err == nil && ins.State != nil && ins.State.Pid > 0 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", ins.State.Pid)); err == nil {
			m := Memory{Source: "proc"}
			for _, l := range strings.Split(string(b), "\n") {
				k, v, _ := strings.Cut(l, ":")
				f := strings.Fields(v)
				if len(f) == 0 {
					continue
				}
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				switch k {
				case "VmRSS":
					m.RSSKB = kb
				case "VmHWM":
					m.PeakKB = kb
				}
			}
			if m.RSSKB > 0 {
				return m
			}
		}
	}
	st, err := cli.ContainerStatsOneShot(ctx, n.C.GetContainerID())
	if err != nil {
		s.t.Fatalf("stats %s: %v", n.Name, err)
	}
	defer st.Body.Close()
	var v container.StatsResponse
	if err := json.NewDecoder(st.Body).Decode(&v); err != nil {
		s.t.Fatalf("stats %s: %v", n.Name, err)
	}
	rss := v.MemoryStats.Stats["rss"] + v.MemoryStats.Stats["mapped_file"] // cgroup v1
	if a, ok := v.MemoryStats.Stats["anon"]; ok {                          // cgroup v2
		rss = a + v.MemoryStats.Stats["file_mapped"]
	}
	return Memory{RSSKB: int64(rss / 1024), PeakKB: int64(v.MemoryStats.MaxUsage / 1024), Source: "cgroup"}
}
