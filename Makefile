# Every target works from a clean checkout with nothing but Go (and, for
# the containers mode of the tests, a Docker engine).
SHELL := /bin/bash
export TESTCONTAINERS_RYUK_DISABLED ?= true

# go test ./... does not work at a go.work root: name each module's packages.
MODULE_PKGS = $(shell go list -m -f '{{.Path}}/...')

.PHONY: dev test test-jetstream lint bench clean-containers

## dev: run the whole system locally (embedded NATS Streaming, or JetStream with EVENT_BUS=jetstream, and MongoDB stand-in) on http://localhost:8080
dev:
	go run ./devstack

# The whole-system scenarios that make test runs on NATS JetStream too: the
# purchase, the faults that test the transport (a crash between write and
# publish, a broker outage) and the 3-node cluster's (a node killed, a node
# partitioned). The events suite runs on both transports in the first pass;
# make test-jetstream runs all of e2e on JetStream.
E2E_ON_JETSTREAM = TestPurchaseFlow|TestCrashBetweenWriteAndPublish|TestNATSOutage|TestJetStreamCluster

## test: every test of every module, against real servers (testenv-prepare prints the mode and readies the images), then the transport's whole-system scenarios once more on NATS JetStream
test:
	go run ./testenv/cmd/testenv-prepare
	go test -count=1 -timeout 20m $(MODULE_PKGS)
	TESTENV_EVENT_BUS=jetstream go test -count=1 -timeout 20m -run '$(E2E_ON_JETSTREAM)' ./e2e/...

## test-jetstream: all the whole-system tests (e2e) on NATS JetStream
test-jetstream:
	go run ./testenv/cmd/testenv-prepare
	TESTENV_EVENT_BUS=jetstream go test -count=1 -timeout 30m ./e2e/...

## lint: gofmt and go vet over every module
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	go vet $(MODULE_PKGS)

## bench: the load generator against a fresh local stack (docs/BENCHMARK.md; knobs: BENCH_* env, see loadgen/bench.sh)
bench:
	./loadgen/bench.sh

## clean-containers: remove containers the tests left behind (they are labelled)
clean-containers:
	-docker ps -aq --filter label=ticketing.testenv=1 | xargs -r docker rm -f
