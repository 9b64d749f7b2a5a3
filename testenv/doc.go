// Package testenv gives integration tests real servers: a NATS Streaming
// server, a NATS JetStream server and a MongoDB-protocol server (the
// official mongo image, or the project's MongoDB stand-in, see module
// standin), isolated per test.
//
// Two modes, chosen once per test process (see [Mode]):
//
//   - "containers" (default when a Docker engine answers): the servers run in
//     containers started with testcontainers-go. The images default to the
//     official mongo:7 and nats-streaming:0.25.6 (env TESTENV_MONGO_IMAGE,
//     TESTENV_NATS_IMAGE override them). When a default image is neither
//     present nor pullable (no registry), a local stand-in image is built
//     once per machine and reused by every later test process and run: the
//     NATS Streaming server and the MongoDB stand-in compiled with
//     CGO_ENABLED=0 into FROM scratch images, tagged
//     ticketing-testenv/nats-streaming:0.25.6 and
//     ticketing-testenv/mongo-standin:<hash of the standin sources>.
//   - "embedded" (when no Docker engine answers, or TESTENV_MODE=embedded):
//     the same servers run in-process.
//
// Both modes offer the same API and pass the same tests. Servers are shared
// per test process and started on first use (the fixed cost is paid once per
// package, not per test); isolation is by a fresh database per test
// ([Mongo]) and a unique subject prefix per test ([NATSStreaming]).
// [DedicatedNATS] gives a test its own NATS Streaming server that it may
// stop and start again.
//
// JetStream ([NATSFor] with [BusJetStream]) is nats-server with JetStream
// on file: in-process, or the official nats:2 image, else
// ticketing-testenv/nats-server:2.15.3 built from source the same way
// (TESTENV_JETSTREAM_IMAGE overrides it). [EventBus] and
// [DedicatedEventBus] give the bus TESTENV_EVENT_BUS names (stan, the
// default, or jetstream): tests that use them run on either.
//
// [StartJetStreamCluster] starts a 3-node JetStream cluster in containers
// for fault tests (containers mode only, see [RequireContainers]): the
// routes on an internal network of the cluster's own, the clients on a
// second one (the host through ports published on 127.0.0.1); a node can
// be killed and started again, or partitioned from its peers (disconnected
// from the routes' network, its clients keeping their connections) and
// healed, each returning once the change is observed on the nodes'
// monitoring port.
//
// Every test package that uses testenv declares
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// so the shared servers are removed when the process ends. Containers carry
// the label ticketing.testenv=1 (`make clean-containers` removes leftovers)
// and the pid of their process: a process that dies past Main (a test
// timeout panics) leaves them behind, and the next testenv process of the
// machine removes them.
// testenv sets TESTCONTAINERS_RYUK_DISABLED=true when it is unset: the Ryuk
// reaper image cannot be pulled on machines without a registry.
//
// [BuildGoImage], [SourceHash] and [Labels] are exported for other test
// modules (e2e) that package Go binaries as images the same way.
//
// Cost on this machine (2 cores): a stand-in image is built in 2.5-6 s with
// a warm Go build cache (2m50s for mongo-standin, 45 s for the NATS server
// with a cold one), and reused in about 2 ms once tagged; a container starts
// in about 0.4 s (NATS) and 1 s (mongo-standin); the in-process servers in
// milliseconds.
package testenv
