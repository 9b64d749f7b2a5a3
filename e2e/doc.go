// Package e2e holds the end-to-end and fault tests of the whole system: each
// service built with CGO_ENABLED=0 into a FROM scratch image, run with the
// MongoDB-protocol server and NATS Streaming (file store; NATS JetStream
// with TESTENV_EVENT_BUS=jetstream) as containers on
// one Docker network (testcontainers-go), two replicas of tickets and of
// orders. The tests drive the system over HTTP only and read the databases
// only to check invariants. They need a Docker engine and are skipped
// without one.
//
// With TESTENV_EVENT_BUS=jetstream, TestJetStreamCluster runs the system
// on a 3-node JetStream cluster (streams of 3 replicas) through a kill and
// a partition of the stream's leader.
//
// E2E_SOAK sets the soak duration (default 20s; e.g. E2E_SOAK=2m).
package e2e
