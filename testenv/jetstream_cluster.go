package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	dnetwork "github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
)

// JetStreamCluster is a cluster of nats-server nodes with JetStream
// (file store) in containers, for fault tests: nodes can be killed and
// started again, or partitioned from their peers and healed.
//
// The routes between the nodes go over an internal Docker network of the
// cluster's own, where each node is known by its server name (js-1, js-2,
// ...) and advertises that name, so no route is ever made over another
// network. Clients reach the nodes over a second network, which a
// partition leaves alone: the host through ports published on 127.0.0.1
// ([JetStreamCluster.URL]), and containers on that network by the nodes'
// aliases there ([JetStreamClusterOptions.ClientNetwork],
// [JetStreamCluster.NetworkURL]); without one, the cluster makes a client
// network of its own.
// The servers do not advertise their client addresses (cluster
// no_advertise): a client only ever uses the URLs it was given.
type JetStreamCluster struct {
	Name  string           // the cluster's name (nats-server cluster.name)
	Nodes []*JetStreamNode // in order of their names: js-1, js-2, ...

	tb           testing.TB
	net          *testcontainers.DockerNetwork // the routes' network (internal)
	clientNet    string                        // the network the ports are published through
	ownClientNet *testcontainers.DockerNetwork // clientNet when the options named none
	http         *http.Client
}

// JetStreamNode is one server of a [JetStreamCluster].
type JetStreamNode struct {
	Name        string // server name, and its host name on the routes' network
	ClientAlias string // its host name on the client network
	HostPort    int    // client port published on 127.0.0.1
	MonitorPort int    // monitoring port (8222) published on 127.0.0.1

	tc          testcontainers.Container
	mu          sync.Mutex
	down        bool // killed and not started again
	partitioned bool // disconnected from the routes' network
}

// JetStreamClusterOptions configures [StartJetStreamCluster].
type JetStreamClusterOptions struct {
	// Size is the number of nodes (default 3).
	Size int
	// ClientNetwork is the Docker network the nodes' clients use (and
	// their ports are published through), where the nodes have the
	// aliases <ClientAliasPrefix>-1, -2, ... ([JetStreamCluster.NetworkURL]).
	// Default: a network of the cluster's own.
	ClientNetwork string
	// ClientAliasPrefix names the nodes on ClientNetwork (default "nats").
	ClientAliasPrefix string
}

// Bounds of the cluster's waits: a node's start, a leader election, a
// catch-up. Generous for a loaded 2-core machine; a healthy cluster meets
// them in seconds.
const (
	clusterStartTimeout = 2 * time.Minute
	clusterWaitTimeout  = time.Minute
)

// JetStreamRecoveryBound bounds the wait for a killed node's restart or a
// partitioned node's heal, until every node is healthy again: the healed
// node's stream group catches up by Raft first. Seconds usually; once, in
// the whole suite on 2 cores, the healed stream leader's group was still
// "not current" after a minute.
const JetStreamRecoveryBound = 3 * time.Minute

// RequireContainers fails tb unless this process runs in containers mode,
// for tests that cannot run otherwise (what names what they need). When
// TESTENV_MODE=embedded was chosen explicitly, it skips tb instead: the
// choice says that no Docker engine is wanted.
func RequireContainers(tb testing.TB, what string) {
	tb.Helper()
	m, err := resolveMode()
	if err != nil {
		tb.Fatal(err)
	}
	if m == ModeContainers {
		return
	}
	if os.Getenv("TESTENV_MODE") == ModeEmbedded {
		tb.Skipf("%s needs a Docker engine; TESTENV_MODE=embedded", what)
	}
	tb.Fatalf("%s needs a Docker engine and none answers (testenv mode %s): start one, or set TESTENV_MODE=embedded to skip this test", what, m)
}

// StartJetStreamCluster starts a JetStream cluster for tb and waits until
// it is healthy (every node's /healthz answers 200 and all agree on a meta
// leader). It is removed in Cleanup; when tb failed, the nodes' last logs
// are printed first. Containers mode only (see [RequireContainers]).
func StartJetStreamCluster(tb testing.TB, o JetStreamClusterOptions) *JetStreamCluster {
	tb.Helper()
	RequireContainers(tb, "a JetStream cluster (nodes killed and partitioned with Docker)")
	if o.Size == 0 {
		o.Size = 3
	}
	if o.ClientAliasPrefix == "" {
		o.ClientAliasPrefix = "nats"
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout+10*time.Minute) // the image may need building
	defer cancel()
	img, err := jetStreamImage(ctx)
	if err != nil {
		tb.Fatalf("testenv: JetStream image: %v", err)
	}
	c := &JetStreamCluster{
		Name:      "testenv-" + randomHex(4),
		tb:        tb,
		clientNet: o.ClientNetwork,
		http:      &http.Client{Timeout: 2 * time.Second},
	}
	tb.Cleanup(c.remove)
	// Internal: Docker never makes it the network through which a node's
	// ports are published, so disconnecting a node from it leaves the
	// node reachable from the host.
	if c.net, err = network.New(ctx, network.WithInternal(), network.WithLabels(Labels())); err != nil {
		tb.Fatalf("testenv: cluster network: %v", err)
	}
	if c.clientNet == "" {
		// A client network of its own, to publish the ports through.
		if c.ownClientNet, err = network.New(ctx, network.WithLabels(Labels())); err != nil {
			tb.Fatalf("testenv: cluster client network: %v", err)
		}
		c.clientNet = c.ownClientNet.Name
	}
	for i := range o.Size {
		n := &JetStreamNode{Name: fmt.Sprintf("js-%d", i+1), ClientAlias: fmt.Sprintf("%s-%d", o.ClientAliasPrefix, i+1)}
		if n.HostPort, err = freePort(); err == nil {
			n.MonitorPort, err = freePort()
		}
		if err != nil {
			tb.Fatalf("testenv: %v", err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	// In parallel: each node retries its routes until the others answer.
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.create(ctx, img, n)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("testenv: JetStream cluster: %v", err)
	}
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, clusterStartTimeout)
	defer wcancel()
	if err := c.WaitHealthy(wctx); err != nil {
		tb.Fatalf("testenv: JetStream cluster not healthy: %v", err)
	}
	logf("JetStream cluster %s of %d nodes healthy in %s (%s)", c.Name, len(c.Nodes), time.Since(start).Round(time.Millisecond), c.URL())
	return c
}

// config is the node's nats-server configuration. Pings every second,
// 2 outstanding at most, for clients and routes alike: a route to a node
// that a partition cut (no RST, packets just vanish) is closed after about
// 3 s instead of the default 4 minutes.
func (c *JetStreamCluster) config(n *JetStreamNode) string {
	var routes []string
	for _, p := range c.Nodes {
		if p != n {
			routes = append(routes, fmt.Sprintf("nats-route://%s:6222", p.Name))
		}
	}
	return fmt.Sprintf(`server_name: %q
listen: "0.0.0.0:4222"
http: "0.0.0.0:8222"
ping_interval: "1s"
ping_max: 2
jetstream {
  store_dir: "/data"
  max_file_store: %d
}
cluster {
  name: %q
  listen: "0.0.0.0:6222"
  advertise: "%s:6222"
  no_advertise: true
  routes: [%s]
}
`, n.Name, int64(jetStreamMaxStore), c.Name, n.Name, strings.Join(routes, ", "))
}

func (c *JetStreamCluster) create(ctx context.Context, img string, n *JetStreamNode) error {
	aliases := map[string][]string{c.net.Name: {n.Name}, c.clientNet: {n.ClientAlias}}
	networks := []string{c.clientNet, c.net.Name}
	req := testcontainers.ContainerRequest{
		Image:          img,
		Name:           fmt.Sprintf("%s-%s", c.Name, n.Name),
		Cmd:            []string{"-c", "/testenv-nats.conf"},
		Files:          []testcontainers.ContainerFile{{Reader: strings.NewReader(c.config(n)), ContainerFilePath: "/testenv-nats.conf", FileMode: 0o644}},
		ExposedPorts:   []string{"4222/tcp", "8222/tcp"},
		Labels:         Labels(),
		Networks:       networks,
		NetworkAliases: aliases,
		// Fixed host ports: the URLs stay the same across a kill and start.
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.PortBindings = nat.PortMap{
				"4222/tcp": {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(n.HostPort)}},
				"8222/tcp": {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(n.MonitorPort)}},
			}
		},
	}
	tc, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if tc != nil {
		n.tc = tc
	}
	if err != nil {
		return fmt.Errorf("start %s (%s): %w", n.Name, img, err)
	}
	return nil
}

// URL is the cluster as the host reaches it: every node's client URL,
// comma-separated (as nats.Connect and NATS_URL take them).
func (c *JetStreamCluster) URL() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// NetworkURL is the cluster as containers on the client network reach it.
func (c *JetStreamCluster) NetworkURL() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = fmt.Sprintf("nats://%s:4222", n.ClientAlias)
	}
	return strings.Join(urls, ",")
}

// URL is the node's client URL from the host.
func (n *JetStreamNode) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.HostPort) }

func (n *JetStreamNode) state() (down, partitioned bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.down, n.partitioned
}

// Node returns the node of that server name, or nil.
func (c *JetStreamCluster) Node(name string) *JetStreamNode {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Kill sends SIGKILL to the node (no graceful shutdown, no leadership
// handed over) and returns once Docker reports it stopped. Its store
// stays, for [JetStreamCluster.Start].
func (c *JetStreamCluster) Kill(ctx context.Context, n *JetStreamNode) error {
	cli, err := docker(ctx)
	if err != nil {
		return err
	}
	if err := cli.ContainerKill(ctx, n.tc.GetContainerID(), "SIGKILL"); err != nil {
		return fmt.Errorf("kill %s: %w", n.Name, err)
	}
	n.mu.Lock()
	n.down = true
	n.mu.Unlock()
	return poll(ctx, 50*time.Millisecond, func() error {
		st, err := n.tc.State(ctx)
		if err != nil {
			return err
		}
		if st.Running {
			return fmt.Errorf("%s still running after SIGKILL", n.Name)
		}
		return nil
	})
}

// Start starts a killed node again (same store, same host ports) and
// waits until the whole cluster is healthy again: the node has caught up
// with its peers.
func (c *JetStreamCluster) Start(ctx context.Context, n *JetStreamNode) error {
	if err := n.tc.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	n.mu.Lock()
	n.down = false
	n.mu.Unlock()
	return c.WaitHealthy(ctx)
}

// Partition disconnects the node from the routes' network: it loses its
// peers (and they it) while its clients keep their connections to it. It
// returns once the partition is observed: the node has no route left, and
// the other nodes have none to it and agree on a meta leader among
// themselves.
func (c *JetStreamCluster) Partition(ctx context.Context, n *JetStreamNode) error {
	cli, err := docker(ctx)
	if err != nil {
		return err
	}
	if err := cli.NetworkDisconnect(ctx, c.net.ID, n.tc.GetContainerID(), true); err != nil {
		return fmt.Errorf("disconnect %s: %w", n.Name, err)
	}
	n.mu.Lock()
	n.partitioned = true
	n.mu.Unlock()
	return poll(ctx, 100*time.Millisecond, func() error {
		var r routez
		if err := c.monitor(ctx, n, "/routez", &r); err != nil {
			return err
		}
		if len(r.Routes) > 0 {
			return fmt.Errorf("%s still has %d routes", n.Name, len(r.Routes))
		}
		for _, p := range c.Nodes {
			if p == n {
				continue
			}
			if err := c.monitor(ctx, p, "/routez", &r); err != nil {
				return err
			}
			for _, rt := range r.Routes {
				if rt.RemoteName == n.Name {
					return fmt.Errorf("%s still has a route to %s", p.Name, n.Name)
				}
			}
		}
		_, err := c.metaLeader(ctx)
		return err
	})
}

// Heal connects a partitioned node to the routes' network again (under
// its name) and waits until the whole cluster is healthy.
func (c *JetStreamCluster) Heal(ctx context.Context, n *JetStreamNode) error {
	cli, err := docker(ctx)
	if err != nil {
		return err
	}
	if err := cli.NetworkConnect(ctx, c.net.ID, n.tc.GetContainerID(), &dnetwork.EndpointSettings{Aliases: []string{n.Name}}); err != nil {
		return fmt.Errorf("connect %s: %w", n.Name, err)
	}
	n.mu.Lock()
	n.partitioned = false
	n.mu.Unlock()
	return c.WaitHealthy(ctx)
}

// WaitHealthy waits until every node runs, is not partitioned, answers
// 200 on /healthz (nats-server's own readiness: JetStream enabled, the
// meta leader known, its streams and consumers current), all nodes name
// the same meta leader, which sees every peer current, and the cluster
// places a stream with a replica on every node (placeable).
func (c *JetStreamCluster) WaitHealthy(ctx context.Context) error {
	return poll(ctx, 100*time.Millisecond, func() error {
		for _, n := range c.Nodes {
			if down, part := n.state(); down || part {
				return fmt.Errorf("%s is down or partitioned", n.Name)
			}
			if err := c.healthz(ctx, n); err != nil {
				return err
			}
		}
		leader, err := c.metaLeader(ctx)
		if err != nil {
			return err
		}
		var j jsz
		if err := c.monitor(ctx, c.Node(leader), "/jsz", &j); err != nil {
			return err
		}
		if got := len(j.Meta.Replicas) + 1; got != len(c.Nodes) {
			return fmt.Errorf("meta leader %s sees %d peers, want %d", leader, got, len(c.Nodes))
		}
		for _, r := range j.Meta.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("meta leader %s: peer %s not current", leader, r.Name)
			}
		}
		return c.placeable(ctx)
	})
}

// placementProbe is the stream placeable creates and deletes.
const placementProbe = "TESTENV_PLACEMENT_PROBE"

// placeable creates a stream with a replica on every node, in memory, and
// deletes it. The meta group can be current while its leader still counts
// a peer offline for placement (it learns that from the peer's statistics,
// which come later): a stream created then is refused with "no suitable
// peers for placement" (seen 2 s after the other checks passed, in the
// whole suite).
func (c *JetStreamCluster) placeable(ctx context.Context) error {
	nc, err := nats.Connect(c.URL(), nats.Timeout(2*time.Second), nats.MaxReconnects(0), nats.Name("testenv-placement-probe"))
	if err != nil {
		return fmt.Errorf("placement probe: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("placement probe: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// One name: a stream left by an attempt that timed out is the one the
	// next attempt creates (the same configuration) and deletes.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: placementProbe, Subjects: []string{"testenv.placement-probe"},
		Storage: jetstream.MemoryStorage, Replicas: len(c.Nodes),
	}); err != nil {
		return fmt.Errorf("placement probe: %w", err)
	}
	if err := js.DeleteStream(ctx, placementProbe); err != nil {
		return fmt.Errorf("placement probe: delete: %w", err)
	}
	return nil
}

func (c *JetStreamCluster) healthz(ctx context.Context, n *JetStreamNode) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/healthz", n.MonitorPort), nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s /healthz: %w", n.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s /healthz: %s %s", n.Name, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// metaLeader is the meta leader that every running, connected node names
// (an error while they disagree or name none).
func (c *JetStreamCluster) metaLeader(ctx context.Context) (string, error) {
	leader := ""
	for _, n := range c.Nodes {
		if down, part := n.state(); down || part {
			continue
		}
		var j jsz
		if err := c.monitor(ctx, n, "/jsz", &j); err != nil {
			return "", err
		}
		switch {
		case j.Meta.Leader == "":
			return "", fmt.Errorf("%s knows no meta leader", n.Name)
		case leader != "" && j.Meta.Leader != leader:
			return "", fmt.Errorf("meta leader: %s names %s, another node %s", n.Name, j.Meta.Leader, leader)
		}
		leader = j.Meta.Leader
	}
	if n := c.Node(leader); n == nil {
		return "", fmt.Errorf("meta leader %q is no node of the cluster", leader)
	} else if down, part := n.state(); down || part {
		return "", fmt.Errorf("meta leader %s is down or partitioned", leader)
	}
	return leader, nil
}

// StreamLeader is the node that leads stream (of the global account), as
// the running, connected nodes see it.
func (c *JetStreamCluster) StreamLeader(ctx context.Context, stream string) (*JetStreamNode, error) {
	states, err := c.StreamStates(ctx, stream)
	if err != nil {
		return nil, err
	}
	for _, s := range states {
		if s.Leader != "" {
			if n := c.Node(s.Leader); n != nil {
				return n, nil
			}
		}
	}
	return nil, fmt.Errorf("stream %s has no leader", stream)
}

// StreamState is a stream as one node holds it.
type StreamState struct {
	Node      string
	Leader    string // the stream's leader as this node knows it
	Messages  uint64
	FirstSeq  uint64
	LastSeq   uint64
	Consumers map[string]ConsumerState
}

// ConsumerState is a durable consumer as one node holds it.
type ConsumerState struct {
	Leader              string // the consumer's leader as this node knows it
	Delivered, AckFloor uint64 // stream sequences
	NumAckPending       int
	NumPending          uint64
}

// StreamStates reads stream and its durable consumers from every running,
// connected node's /jsz: each node's own replica.
func (c *JetStreamCluster) StreamStates(ctx context.Context, stream string) ([]StreamState, error) {
	var out []StreamState
	for _, n := range c.Nodes {
		if down, part := n.state(); down || part {
			continue
		}
		var j jsz
		// config=true: without it, /jsz leaves out the consumers' durable names.
		if err := c.monitor(ctx, n, "/jsz?accounts=true&streams=true&consumers=true&config=true", &j); err != nil {
			return nil, err
		}
		st := StreamState{Node: n.Name}
		found := false
		for _, a := range j.Accounts {
			for _, s := range a.Streams {
				if s.Name != stream {
					continue
				}
				found = true
				st.Leader = s.Cluster.Leader
				st.Messages, st.FirstSeq, st.LastSeq = s.State.Messages, s.State.FirstSeq, s.State.LastSeq
				st.Consumers = map[string]ConsumerState{}
				for _, cs := range s.Consumers {
					if cs.Config.Durable == "" {
						continue // an ephemeral consumer lives on one node only
					}
					st.Consumers[cs.Name] = ConsumerState{
						Leader:    cs.Cluster.Leader,
						Delivered: cs.Delivered.StreamSeq, AckFloor: cs.AckFloor.StreamSeq,
						NumAckPending: cs.NumAckPending, NumPending: cs.NumPending,
					}
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("%s holds no stream %s", n.Name, stream)
		}
		out = append(out, st)
	}
	return out, nil
}

// WaitStreamConverged waits until every node holds the same replica of
// stream (messages, first and last sequence) and of each of its durable
// consumers (acknowledged floor), and every consumer has been given
// everything and acknowledged it (none pending, none waiting for an ack,
// as its leader counts). It
// returns the last states read, also on failure.
func (c *JetStreamCluster) WaitStreamConverged(ctx context.Context, stream string) ([]StreamState, error) {
	var states []StreamState
	err := poll(ctx, 200*time.Millisecond, func() error {
		for _, n := range c.Nodes {
			if down, part := n.state(); down || part {
				return fmt.Errorf("%s is down or partitioned", n.Name)
			}
		}
		var err error
		if states, err = c.StreamStates(ctx, stream); err != nil {
			return err
		}
		ref := states[0]
		for _, s := range states {
			if s.Messages != ref.Messages || s.FirstSeq != ref.FirstSeq || s.LastSeq != ref.LastSeq {
				return fmt.Errorf("stream %s: %s holds %d messages (%d-%d), %s %d (%d-%d)",
					stream, s.Node, s.Messages, s.FirstSeq, s.LastSeq, ref.Node, ref.Messages, ref.FirstSeq, ref.LastSeq)
			}
			if len(s.Consumers) != len(ref.Consumers) {
				return fmt.Errorf("stream %s: %s holds %d consumers, %s %d", stream, s.Node, len(s.Consumers), ref.Node, len(ref.Consumers))
			}
			for name, cs := range s.Consumers {
				rc, ok := ref.Consumers[name]
				if !ok || cs.AckFloor != rc.AckFloor {
					return fmt.Errorf("consumer %s: acknowledged up to %d on %s, %d on %s", name, cs.AckFloor, s.Node, rc.AckFloor, ref.Node)
				}
				// Pending counts are the consumer leader's to keep.
				if s.Node == cs.Leader && (cs.NumAckPending != 0 || cs.NumPending != 0) {
					return fmt.Errorf("consumer %s: %d pending, %d awaiting an ack", name, cs.NumPending, cs.NumAckPending)
				}
			}
		}
		return nil
	})
	return states, err
}

// FormatStreamStates prints states one node a line, consumers sorted.
func FormatStreamStates(states []StreamState) string {
	var b strings.Builder
	for _, s := range states {
		fmt.Fprintf(&b, "%s (leader %s): %d messages, seq %d-%d;", s.Node, s.Leader, s.Messages, s.FirstSeq, s.LastSeq)
		names := make([]string, 0, len(s.Consumers))
		for n := range s.Consumers {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			cs := s.Consumers[n]
			fmt.Fprintf(&b, " %s acked %d pending %d/%d;", n, cs.AckFloor, cs.NumPending, cs.NumAckPending)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ClientNames lists the names of the node's client connections ("" for
// a client that gave none).
func (c *JetStreamCluster) ClientNames(ctx context.Context, n *JetStreamNode) ([]string, error) {
	var z connz
	if err := c.monitor(ctx, n, "/connz?limit=1024", &z); err != nil {
		return nil, err
	}
	names := make([]string, len(z.Conns))
	for i, cn := range z.Conns {
		names[i] = cn.Name
	}
	return names, nil
}

// monitor GETs a monitoring endpoint of n and decodes its JSON into v.
func (c *JetStreamCluster) monitor(ctx context.Context, n *JetStreamNode, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", n.MonitorPort, path), nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", n.Name, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", n.Name, path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s %s: %w", n.Name, path, err)
	}
	return nil
}

// The parts of nats-server's monitoring answers that the waits read.
type (
	jsz struct {
		Meta struct {
			Leader   string `json:"leader"`
			Replicas []struct {
				Name    string `json:"name"`
				Current bool   `json:"current"`
				Offline bool   `json:"offline"`
			} `json:"replicas"`
		} `json:"meta_cluster"`
		Accounts []struct {
			Name    string `json:"name"`
			Streams []struct {
				Name    string `json:"name"`
				Cluster struct {
					Leader string `json:"leader"`
				} `json:"cluster"`
				State struct {
					Messages uint64 `json:"messages"`
					FirstSeq uint64 `json:"first_seq"`
					LastSeq  uint64 `json:"last_seq"`
				} `json:"state"`
				Consumers []struct {
					Name   string `json:"name"`
					Config struct {
						Durable string `json:"durable_name"`
					} `json:"config"`
					Cluster struct {
						Leader string `json:"leader"`
					} `json:"cluster"`
					Delivered struct {
						StreamSeq uint64 `json:"stream_seq"`
					} `json:"delivered"`
					AckFloor struct {
						StreamSeq uint64 `json:"stream_seq"`
					} `json:"ack_floor"`
					NumAckPending int    `json:"num_ack_pending"`
					NumPending    uint64 `json:"num_pending"`
				} `json:"consumer_detail"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	routez struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	connz struct {
		Conns []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
)

// poll calls f every interval until it returns nil, or returns its last
// error when ctx is done.
func poll(ctx context.Context, interval time.Duration, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %v)", err, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// remove prints the nodes' last logs when the test failed, then removes
// the nodes and the routes' network.
func (c *JetStreamCluster) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		if n.tc == nil {
			continue
		}
		if c.tb.Failed() {
			c.printLogs(ctx, n)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.tc.Terminate(ctx); err != nil {
				c.tb.Logf("testenv: remove %s: %v", n.Name, err)
			}
		}()
	}
	wg.Wait()
	for _, nw := range []*testcontainers.DockerNetwork{c.net, c.ownClientNet} {
		if nw == nil {
			continue
		}
		if err := nw.Remove(ctx); err != nil {
			c.tb.Logf("testenv: remove the cluster's network %s: %v", nw.Name, err)
		}
	}
}

func (c *JetStreamCluster) printLogs(ctx context.Context, n *JetStreamNode) {
	rc, err := n.tc.Logs(ctx)
	if err != nil {
		return
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	c.tb.Logf("--- last logs of %s ---\n%s", n.Name, strings.Join(lines, "\n"))
}
