#!/usr/bin/env bash
# make bench: the load generator against a fresh local stack, or against
# given URLs.
#
# Default: starts Debian's PostgreSQL (installed with apt-get when missing),
# creates an empty database, runs the MongoDB stand-in (FerretDB) on its
# PostgreSQL backend, runs the dev stack (every service as a child process
# behind the proxy, embedded NATS Streaming with a fresh store) against it,
# runs the bench, and stops everything it started.
#
#   MONGO_URI=mongodb://127.0.0.1:27017 make bench   # a real MongoDB instead
#                                                      # (its service databases are dropped first)
#   BENCH_BASE_URL=http://127.0.0.1:8080 BENCH_MONGO_URI=... BENCH_NATS_URL=... make bench
#                                                      # an already running stack (no reset)
#
# PostgreSQL acknowledges a commit before flushing it to disk
# (synchronous_commit=off; BENCH_PG_SYNCHRONOUS_COMMIT=on to change): a crash
# may lose the last few hundred milliseconds but never corrupts, which is
# what mongod's default write concern gives (w:1 without j: the journal is
# flushed every 100 ms), the store the stand-in stands in for. The stand-in
# reaches PostgreSQL on loopback without TLS (sslmode=disable): mongod has
# no such hop, and TLS on it cost PostgreSQL a tenth of its CPU.
#
# CPU is read from /proc for every process of the system: the services, the
# dev stack (which runs NATS Streaming in its process), the stand-in and
# PostgreSQL's postmaster with its backends; the stand-in's command counts
# are read over HTTP (mongo-standin -counts-listen).
#
# Knobs (env): BENCH_RUN (10s per run), BENCH_CONCURRENCY (16; e.g. 1,16,64),
# BENCH_ONLY (workloads whose names contain one of these, e.g. PUT,propagation),
# BENCH_RATES (200,20 updates/s), BENCH_PROP (5s each), BENCH_OUT (bench/out),
# BENCH_VIA_PROXY=1 (through the proxy, not straight to the services),
# BENCH_STORE_COUNTS=1s (the stand-in logs commands per collection to
# bench/out/standin.log), BENCH_STORE_PPROF=127.0.0.1:6060 (the stand-in's CPU
# profile), BENCH_PG_SYNCHRONOUS_COMMIT (off), BENCH_IDLE_CPU (0.05 of a core),
# BENCH_IDLE_WINDOW (500ms), BENCH_IDLE_CAP (120s). Loopback only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=/usr/local/go/bin:$PATH
export BENCH_OUT=${BENCH_OUT:-$ROOT/bench/out}
WORK=$(mktemp -d /tmp/ticketing-bench.XXXXXX)
PIDS=()
PG_STARTED=""

log() { echo "bench: $*" >&2; }

cleanup() {
	local i
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[i]}" 2>/dev/null || true
		wait "${PIDS[i]}" 2>/dev/null || true
	done
	if [[ -n $PG_STARTED ]]; then
		pg_ctlcluster $PG_STARTED stop || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# wait_http URL SECONDS PID: polls URL until it answers 200, failing early
# when PID died.
wait_http() {
	local url=$1 deadline=$((SECONDS + $2)) pid=$3
	until curl -fsS -o /dev/null "$url" 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "process $pid died while waiting for $url"
			return 1
		fi
		if ((SECONDS > deadline)); then
			log "timeout waiting for $url"
			return 1
		fi
		sleep 0.2
	done
}

mkdir -p "$BENCH_OUT"
log "building the load generator"
go build -o "$WORK/loadgen" ./loadgen

if [[ -n ${BENCH_BASE_URL:-} ]]; then
	log "running against $BENCH_BASE_URL (not reset)"
	exec "$WORK/loadgen" "$@"
fi

# Ports apart from make dev's (8080, 4222, 27017) so both can run.
PROXY_PORT=${BENCH_PROXY_PORT:-18080}
NATS_PORT=${BENCH_NATS_PORT:-14222}
MONGO_PORT=${BENCH_MONGO_PORT:-17017}
COUNTS_PORT=${BENCH_STORE_COUNTS_PORT:-17018}
CPU_ARGS=()

if [[ -n ${MONGO_URI:-} ]]; then
	STORE="MongoDB ($MONGO_URI)"
	log "using MongoDB at $MONGO_URI: dropping the service databases"
	"$WORK/loadgen" reset -mongo "$MONGO_URI"
else
	if ! command -v pg_ctlcluster >/dev/null; then
		log "installing postgresql"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
	fi
	read -r PG_VER PG_CLUSTER PG_PORT PG_STATUS _ PG_DATA _ < <(pg_lsclusters -h | head -n1)
	if [[ $PG_STATUS != online ]]; then
		log "starting PostgreSQL $PG_VER/$PG_CLUSTER"
		pg_ctlcluster "$PG_VER" "$PG_CLUSTER" start
		PG_STARTED="$PG_VER $PG_CLUSTER"
	fi
	# The postmaster's pid (first line of postmaster.pid): the bench counts
	# its CPU with its backends'.
	CPU_ARGS+=(-pg-pid "$(head -n1 "$PG_DATA/postmaster.pid")")
	PG_PASS=bench-local-only
	su postgres -c "psql -q -v ON_ERROR_STOP=1 -p $PG_PORT" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ticketing_bench') THEN
    CREATE ROLE ticketing_bench LOGIN PASSWORD '$PG_PASS';
  END IF;
END \$\$;
DROP DATABASE IF EXISTS ticketing_bench WITH (FORCE);
CREATE DATABASE ticketing_bench OWNER ticketing_bench;
ALTER DATABASE ticketing_bench SET synchronous_commit = '${BENCH_PG_SYNCHRONOUS_COMMIT:-off}';
SQL
	PG_URL="postgres://ticketing_bench:$PG_PASS@127.0.0.1:$PG_PORT/ticketing_bench?sslmode=disable"
	log "starting the MongoDB stand-in (FerretDB, PostgreSQL backend) on :$MONGO_PORT"
	go build -o "$WORK/mongo-standin" ./standin/cmd/mongo-standin
	"$WORK/mongo-standin" -listen "127.0.0.1:$MONGO_PORT" -counts-listen "127.0.0.1:$COUNTS_PORT" -count-every "${BENCH_STORE_COUNTS:-0}" ${BENCH_STORE_PPROF:+-pprof "$BENCH_STORE_PPROF"} -handler postgresql -postgresql-url "$PG_URL" >"$BENCH_OUT/standin.log" 2>&1 &
	PIDS+=($!)
	CPU_ARGS+=(-store-pid $! -store-counts "http://127.0.0.1:$COUNTS_PORT/counts")
	MONGO_URI="mongodb://127.0.0.1:$MONGO_PORT"
	"$WORK/loadgen" reset -mongo "$MONGO_URI" -wait 60s
	STORE="MongoDB stand-in: FerretDB on PostgreSQL $PG_VER"
fi

log "building and starting the dev stack on :$PROXY_PORT (log: $BENCH_OUT/devstack.log)"
go build -o "$WORK/devstack" ./devstack
DEV_ADDR="127.0.0.1:$PROXY_PORT" DEV_DATA_DIR="$WORK/data" DEV_NATS_PORT=$NATS_PORT \
	MONGO_URI="$MONGO_URI" STRIPE_KEY=${STRIPE_KEY:-sk_test_bench_unused} LOG_LEVEL=${LOG_LEVEL:-warn} \
	"$WORK/devstack" >"$BENCH_OUT/devstack.log" 2>&1 &
DEV_PID=$!
PIDS+=($DEV_PID)
wait_http "http://127.0.0.1:$PROXY_PORT/api/users/currentuser" 600 "$DEV_PID"
wait_http "http://127.0.0.1:$PROXY_PORT/api/tickets?limit=1" 60 "$DEV_PID"

log "running the bench"
"$WORK/loadgen" -base "http://127.0.0.1:$PROXY_PORT" -mongo "$MONGO_URI" \
	-nats "nats://127.0.0.1:$NATS_PORT" -bin-dir "$WORK/data/bin" -store "$STORE" \
	-devstack-pid "$DEV_PID" "${CPU_ARGS[@]}" "$@"
