#!/usr/bin/env bash
# Measures the release binary from outside, with a standard load tool:
#
#   scripts/bench.sh
#
# One run prints (and writes to target/bench/report.md):
#   - the pgbench ceiling: single-row JSONB inserts of the delivery body at
#     32 clients, and callback ingestion as a ratio of it;
#   - first deliveries and duplicates at 32 connections: throughput, p50, p99;
#   - p50 / p99 / max of first deliveries at a fixed 1,000/s;
#   - forged-token refusals/s at 64 connections beside GET /healthz measured
#     the same way, interleaved (ratio);
#   - RSS idle and under load (VmRSS of the service); start to /readyz 200;
#   - during the fixed-rate run, 100 open event streams (one timed: the
#     delay of each event from its commit) and two webhook endpoints, one
#     healthy (its delivery lag) and one that never answers
#     (bench/observers.py);
#   - with BENCH_SCALE_LOOKUPS (default 1,000,000) lookups stored: GET
#     /metrics, GET /v1/stats and POST /v1/lookups p50 / p95, a 1,000-item
#     batch, then POST /v1/lookups and the batch again with a daily budget;
#   - segments (bench/segments.sh): search and facet latency p50 / p95 for
#     each single filter, pairs, triples and facets with 0-3 filters, and the
#     export rate beside COPY of the same rows, at 100,000 and 1,000,000
#     profiles generated in SQL (`interests-receiver generate`).
# BENCHMARKS.md holds the latest output and what limits each missed target.
#
# What it needs and does:
#   - PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/
#     postgres; the role must be allowed to CREATE DATABASE). It makes a
#     scratch database ir_bench_<random> there and drops it at exit.
#   - wrk (Debian package; installed with apt-get when missing: it is the load
#     tool whose Lua hooks can pair each callback URL with its own body), and
#     pgbench/psql (postgresql-client, installed likewise), python3 (stdlib).
#   - Builds with scripts/build-release.sh (cargo build --release --locked).
#   - Runs the service in real mode (upstream credentials set) against an
#     upstream address that is never called: every lookup is already queued
#     with its request_id and nothing is due, so the workers stay idle.
#
# Settings (environment):
#   BENCH_SECONDS   length of each load run (default 10)
#   BENCH_LOOKUPS   queued lookups seeded for deliveries (default 200000)
#   BENCH_PROFILES  profile counts for search, space separated
#                   (default "100000 1000000"; "" skips search)
#   BENCH_ONLY      "segments": only the segments part (no delivery seeding,
#                   pgbench, delivery load runs or counting at scale)
#   BENCH_BITMAPS   set: also measure the in-process bitmap design for facet
#                   counts (bench/bitmap-probe, see bench/segments.sh)
#   BENCH_FLUSH     0: measure searches right after generate, under the
#                   kernel's writeback of the load (default: flush first)
#   BENCH_KEEP_DB   set: keep the scratch database at exit
#   BENCH_DB        the name of a database on that server to use (and keep)
#                   instead of a new scratch one, e.g. one kept earlier:
#                   profiles already in it count towards BENCH_PROFILES
#   BENCH_SCALE_LOOKUPS  lookups stored for the counting and create
#                   requests (default 1000000; 0 skips them)
#   BENCH_STREAMS   event streams open during the fixed-rate run (default 100)
#   BENCH_BIN       measure this binary instead of building one (to compare
#                   two builds, e.g. two allocators, run by run)
# Timings are never asserted; ratios are against baselines of the same run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

SCRIPT_NAME=scripts/bench.sh
# log, die, redact: the helpers scripts/lib/postgres.sh uses too.
# shellcheck source=scripts/lib/log.sh
source scripts/lib/log.sh

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
LOOKUPS="${BENCH_LOOKUPS:-200000}"
PROFILE_SIZES="${BENCH_PROFILES-100000 1000000}"
SCALE_LOOKUPS="${BENCH_SCALE_LOOKUPS:-1000000}"
STREAMS="${BENCH_STREAMS:-100}"
ONLY="${BENCH_ONLY:-}"
case "$ONLY" in "" | segments) ;; *) die "BENCH_ONLY: expected segments or nothing, got $ONLY" ;; esac
# The delivery part: seeding, pgbench baselines, the delivery load runs and
# the counting at scale.
deliveries() { [ -z "$ONLY" ]; }

# --- tools ------------------------------------------------------------------
apt_install() {
  log "installing $* with apt-get"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}
command -v wrk >/dev/null || apt_install wrk
command -v pgbench >/dev/null && command -v psql >/dev/null || apt_install postgresql-client
command -v python3 >/dev/null || apt_install python3
command -v curl >/dev/null || apt_install curl
[ -x /usr/bin/time ] || apt_install time
for tool in wrk pgbench psql python3 curl /usr/bin/time; do
  command -v "$tool" >/dev/null || die "$tool is still missing after installing it"
done
HELPER="python3 $ROOT/bench/bench.py"

# --- build ------------------------------------------------------------------
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
  log "measuring $BIN (BENCH_BIN; not built here)"
else
  log "building the release binary (scripts/build-release.sh)"
  scripts/build-release.sh
  BIN="$TARGET_DIR/release/interests-receiver"
fi
[ -x "$BIN" ] || die "no binary at $BIN"

# --- scratch database and files ---------------------------------------------
if [ -n "${BENCH_DB:-}" ]; then
  BENCH_KEEP_DB=1 NEW_DB=""
else
  BENCH_DB="ir_bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" NEW_DB=1
fi
DB_URL=$($HELPER dburl "$DATABASE_URL" "$BENCH_DB")
WORK="$TARGET_DIR/bench"
rm -rf "$WORK" && mkdir -p "$WORK"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
SERVICE_PID=""
SAMPLER_PID=""

cleanup() {
  local rc=$?
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
  [ -n "${OBSERVERS_PID:-}" ] && kill "$OBSERVERS_PID" 2>/dev/null
  if [ -n "$SERVICE_PID" ]; then
    kill "$SERVICE_PID" 2>/dev/null && wait "$SERVICE_PID" 2>/dev/null
  fi
  if [ -n "${BENCH_KEEP_DB:-}" ]; then
    log "kept the scratch database $BENCH_DB (BENCH_KEEP_DB)"
  else
    psql "$DATABASE_URL" -XAtqc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fact() { # name json-value
  printf '{"kind":"fact","name":"%s","value":%s}\n' "$1" "$2" >>"$RESULTS"
}
sql() { psql "$DB_URL" -XAtq -v ON_ERROR_STOP=1 "$@"; }

log "DATABASE_URL=$(redact "$DATABASE_URL"), scratch database $BENCH_DB, work files in $WORK"
[ -z "$NEW_DB" ] || psql "$DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 -c "CREATE DATABASE $BENCH_DB"

fact date "\"$(date -u '+%Y-%m-%d %H:%M UTC')\""
fact commit "\"$(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')\""
fact machine "\"$(nproc) CPUs, load average at start $(cut -d' ' -f1-3 /proc/loadavg)\""
fact cpu "\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')\""
fact memory "\"$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)\""
fact postgres "\"$(sql -c 'SHOW server_version')\""
fact pg_settings "\"$(sql -c "SELECT string_agg(name || '=' || setting || COALESCE(unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','synchronous_commit','max_connections','fsync','wal_level')")\""
fact load_tool "\"$(wrk -v 2>&1 | head -1 | cut -c1-60), pgbench $(pgbench --version | awk '{print $NF}')\""
fact durations "\"${SECONDS_PER_RUN} s per load run\""

# --- schema and delivery data -------------------------------------------------
export SERVICE_SECRET
SERVICE_SECRET="bench-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
API_TOKEN="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
SERVICE_ENV=(DATABASE_URL="$DB_URL" LISTEN_ADDR="127.0.0.1:$PORT" PUBLIC_BASE_URL="$BASE"
  UPSTREAM_BASE_URL="http://127.0.0.1:9" UPSTREAM_API_KEY=bench UPSTREAM_API_SECRET=bench
  API_TOKENS="bench=$API_TOKEN" SERVICE_SECRET="$SERVICE_SECRET"
  POLL_AFTER_SECS=86400 JOB_DEADLINE_SECS=31536000 RUST_LOG=info LOG_FORMAT=json
  WEBHOOK_ALLOW_PRIVATE=true)
if [ -n "$ONLY" ]; then
  # Segments only: sandbox mode (no upstream credentials). Nothing is
  # delivered then, and a kept database (BENCH_DB) holds generated,
  # synthetic profiles, which real mode refuses at start.
  sandbox_env=()
  for kv in "${SERVICE_ENV[@]}"; do
    case "$kv" in UPSTREAM_API_*) ;; *) sandbox_env+=("$kv") ;; esac
  done
  SERVICE_ENV=("${sandbox_env[@]}")
fi
# Seeded lookups carry the identity key of this SERVICE_SECRET, as the
# service writes them; otherwise it re-keys every one in the background.
KEY_ID=$($HELPER identity-key-id "$SERVICE_SECRET")
log "applying migrations"
env "${SERVICE_ENV[@]}" "$BIN" migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; die "migrate failed"; }

if deliveries; then # (not indented: the delivery part, up to "the service")
log "seeding $LOOKUPS queued lookups in SQL"
sql -v n="$LOOKUPS" -v key_id="$KEY_ID" -f bench/sql/queued_lookups.sql
$HELPER template tests/fixtures/completed.json >"$WORK/template.json"
queued_targets() { # file: targets of the lookups still queued
  sql -F' ' -c "SELECT id, request_id FROM lookups WHERE status = 'queued' ORDER BY email" |
    $HELPER targets "$SERVICE_SECRET" >"$1"
}
queued_targets "$WORK/first.targets"
$HELPER forged 1000 >"$WORK/forged.paths"
echo /healthz >"$WORK/healthz.paths"

# --- pgbench ceiling ------------------------------------------------------------
log "pgbench ceiling: single-row JSONB inserts, 32 clients, ${SECONDS_PER_RUN} s"
sql -f bench/sql/ceiling.sql
python3 - "$WORK/template.json" >"$WORK/ceiling.pgbench" <<'PY'
import sys
sys.path.insert(0, "bench")
from bench import pgbench_literal
pre, post = pgbench_literal(open(sys.argv[1]).read()).split("@RID@")
print("\\set r random(1, 9000000000000000)")
rid = "CAST(:client_id AS text) || '_' || CAST(:r AS text)"
print(f"INSERT INTO ceiling (request_id, body) VALUES ({rid}, "
      f"('{pre}' || {rid} || '{post}')::jsonb) ON CONFLICT DO NOTHING;")
PY
pgbench -n -M prepared -c 32 -j 2 -T "$SECONDS_PER_RUN" -f "$WORK/ceiling.pgbench" "$DB_URL" \
  >"$WORK/pgbench.out" 2>&1 || { cat "$WORK/pgbench.out" >&2; die "pgbench failed"; }
TPS=$(sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\)/\1/p' "$WORK/pgbench.out")
[ -n "$TPS" ] || { cat "$WORK/pgbench.out" >&2; die "no tps in pgbench output"; }
fact pgbench_tps "$TPS"
sql -c "DROP TABLE ceiling"

# Diagnostic: the service's own statement (apply_job_update, as
# src/store/results.rs calls it for a first callback delivery) driven by
# pgbench at the same concurrency, on lookups of its own. The service's rate
# beside this one says whether a delivery is bound by its SQL or by the
# service around it.
log "pgbench diagnostic: apply_job_update itself, 32 clients, ${SECONDS_PER_RUN} s"
APPLY_N=150000
sql -c "CREATE SEQUENCE bench_apply START $((LOOKUPS + 1))" \
  -c "INSERT INTO lookups (id, status, email, subject_key, request_id, submitted_at, next_action_at)
      SELECT md5('queued-' || i)::uuid, 'queued', 'apply' || i || '@bench.example',
             encode(sha256(convert_to('queued-' || i, 'UTF8')), 'hex'),
             md5('rid-' || i) || '_1717000000_' || lpad((i % 10000)::text, 4, '0'),
             now(), now() + interval '30 days'
        FROM generate_series($((LOOKUPS + 1)), $((LOOKUPS + APPLY_N))) AS i" \
  -c "INSERT INTO lookup_identities (identity, lookup_id)
      SELECT 'bench:' || id, id FROM lookups WHERE email LIKE 'apply%@bench.example'"
python3 - "$WORK/template.json" >"$WORK/apply.pgbench" <<'PY'
import json, sys
sys.path.insert(0, "bench")
from bench import facets, pgbench_literal
body = open(sys.argv[1]).read()
result = json.loads(body.replace("@RID@", "x"))["data"]["result"]
arrays = ", ".join("'{%s}'::text[]" % ",".join('"%s"' % v for v in f) for f in facets(result))
pre, post = pgbench_literal(body).split("@RID@")
print(f"""SELECT apply_job_update(l.id, l.request_id, 'completed',
  (('{pre}' || l.request_id || '{post}')::jsonb) -> 'data' -> 'result', now(), NULL, 'callback',
  gen_random_uuid(), {arrays}, true, md5(l.request_id), ('{pre}' || l.request_id || '{post}')::jsonb, 5)
  FROM (SELECT md5('queued-' || nextval('bench_apply'))::uuid AS id) n JOIN lookups l ON l.id = n.id;""".replace("\n", " "))
PY
pgbench -n -M prepared -c 32 -j 2 -T "$SECONDS_PER_RUN" -f "$WORK/apply.pgbench" "$DB_URL" \
  >"$WORK/pgbench-apply.out" 2>&1 || { cat "$WORK/pgbench-apply.out" >&2; die "pgbench (apply) failed"; }
APPLY_TPS=$(sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\)/\1/p' "$WORK/pgbench-apply.out")
APPLIED=$(sql -c "SELECT count(*) FROM lookups WHERE email LIKE 'apply%' AND status = 'completed'")
[ "$APPLIED" -lt "$APPLY_N" ] || die "the apply diagnostic ran out of lookups"
fact pgbench_apply_tps "$APPLY_TPS"
# The same with the lookup event trigger (lookups_event_on_status: an event
# row and NOTIFY under one global advisory lock, at commit) switched off:
# the difference is what that trigger costs a delivery.
sql -c "ALTER TABLE lookups DISABLE TRIGGER lookups_event_on_status"
pgbench -n -M prepared -c 32 -j 2 -T "$SECONDS_PER_RUN" -f "$WORK/apply.pgbench" "$DB_URL" \
  >"$WORK/pgbench-apply-no-event.out" 2>&1 || { cat "$WORK/pgbench-apply-no-event.out" >&2; die "pgbench (apply, no event) failed"; }
sql -c "ALTER TABLE lookups ENABLE TRIGGER lookups_event_on_status"
APPLIED=$(sql -c "SELECT count(*) FROM lookups WHERE email LIKE 'apply%' AND status = 'completed'")
[ "$APPLIED" -lt "$APPLY_N" ] || die "the apply diagnostic ran out of lookups"
fact pgbench_apply_no_event_tps \
  "$(sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\)/\1/p' "$WORK/pgbench-apply-no-event.out")"
# The bound of the statement's own writes: every trigger of the three
# tables it writes off (no event, no kept totals, no search postings, no
# facet log): what no change to the triggers can beat.
sql -c "ALTER TABLE lookups DISABLE TRIGGER USER" -c "ALTER TABLE profiles DISABLE TRIGGER USER" \
  -c "ALTER TABLE deliveries DISABLE TRIGGER USER"
pgbench -n -M prepared -c 32 -j 2 -T "$SECONDS_PER_RUN" -f "$WORK/apply.pgbench" "$DB_URL" \
  >"$WORK/pgbench-apply-bare.out" 2>&1 || { cat "$WORK/pgbench-apply-bare.out" >&2; die "pgbench (apply, no triggers) failed"; }
sql -c "ALTER TABLE lookups ENABLE TRIGGER USER" -c "ALTER TABLE profiles ENABLE TRIGGER USER" \
  -c "ALTER TABLE deliveries ENABLE TRIGGER USER"
fact pgbench_apply_bare_tps \
  "$(sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\)/\1/p' "$WORK/pgbench-apply-bare.out")"
# Groups of 16 first deliveries per statement and transaction (as the
# service's appliers make them under load), 4 clients (its appliers).
sed 's/AS id) n JOIN/AS id FROM generate_series(1, 16)) n JOIN/' "$WORK/apply.pgbench" >"$WORK/apply16.pgbench"
grep -q 'generate_series(1, 16)' "$WORK/apply16.pgbench" || die "the grouped apply script was not made"
pgbench -n -M prepared -c 4 -j 2 -T "$SECONDS_PER_RUN" -f "$WORK/apply16.pgbench" "$DB_URL" \
  >"$WORK/pgbench-apply16.out" 2>&1 || { cat "$WORK/pgbench-apply16.out" >&2; die "pgbench (apply, groups of 16) failed"; }
fact pgbench_apply16_tps \
  "$(sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\)/\1/p' "$WORK/pgbench-apply16.out")"
APPLIED=$(sql -c "SELECT count(*) FROM lookups WHERE email LIKE 'apply%' AND status = 'completed'")
[ "$APPLIED" -lt "$APPLY_N" ] || die "the apply diagnostics ran out of lookups"
sql -c "CHECKPOINT"
fi # deliveries

# --- the service ------------------------------------------------------------------
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVICE_PID/status"; }
# VmRSS, then its anonymous (heap, stacks) and file-backed (the binary's
# code, libraries) parts, in KiB, on one line.
rss_parts() { awk '/^(VmRSS|RssAnon|RssFile)/ {printf "%s ", $2} END {print ""}' "/proc/$SERVICE_PID/status"; }
# start_service [VAR=value...]: the service with SERVICE_ENV (and these),
# waited for until /readyz answers 200.
start_service() {
  local started
  started=$(date +%s%N)
  # env execs the binary: $! is the service's own pid (for /proc/<pid>/status).
  env "${SERVICE_ENV[@]}" "$@" "$BIN" serve >>"$WORK/service.log" 2>&1 &
  SERVICE_PID=$!
  until curl -fs -o /dev/null "$BASE/readyz"; do
    kill -0 "$SERVICE_PID" 2>/dev/null || { tail -20 "$WORK/service.log" >&2; die "the service stopped"; }
    [ $(( ($(date +%s%N) - started) / 1000000000 )) -lt 60 ] || die "not ready after 60 s"
    sleep 0.005
  done
}
stop_service() {
  kill "$SERVICE_PID" && wait "$SERVICE_PID" || true
  SERVICE_PID=""
}
# Rows stored in SQL each still have their event to place: a run measures
# requests once the sequencer has caught up (as after any bulk load), not
# beside it.
wait_for_sequencer() {
  for _ in $(seq 1 1200); do
    [ "$(sql -c "SELECT count(*) FROM event_inbox")" = 0 ] && return
    sleep 1
  done
  die "the sequencer did not place the seeded events in 20 minutes"
}
log "starting the service on $BASE"
START_NS=$(date +%s%N)
start_service
READY_NS=$(date +%s%N)
fact ready_ms "$(( (READY_NS - START_NS) / 1000000 ))"
fact ready_rows "$LOOKUPS"
sleep 2
fact rss_idle_kib "$(rss_kib)"
# RSS under load: sampled every 100 ms through every load run below.
( while kill -0 "$SERVICE_PID" 2>/dev/null; do rss_parts; sleep 0.1; done ) >"$WORK/rss.samples" 2>/dev/null &
SAMPLER_PID=$!
if deliveries; then
  # The seeded lookups' 'lookup.queued' events (earlier runs measured the
  # first deliveries beside the sequencer placing 200,000 of them).
  log "waiting for the event sequencer to place the seeded lookups' events"
  wait_for_sequencer
  sql -c "VACUUM ANALYZE event_inbox, events" >/dev/null
fi

# wrk NAME CONNECTIONS SCRIPT ARGS... : one run, its RESULT line kept.
run_wrk() {
  local name=$1 conns=$2 script=$3 extra=${EXTRA_JSON:-}
  shift 3
  local out="$WORK/$(tr -c 'a-z0-9_\n-' '_' <<<"$name").wrk"
  wrk -t2 -c"$conns" -d"${SECONDS_PER_RUN}s" --timeout 10s -s "$ROOT/bench/wrk/$script" "$BASE" -- "$@" \
    >"$out" 2>&1 || { cat "$out" >&2; die "wrk $name failed"; }
  local result
  result=$(sed -n 's/^RESULT //p' "$out")
  [ -n "$result" ] || { cat "$out" >&2; die "no result from wrk $name"; }
  printf '{"kind":"run","name":"%s","result":%s}\n' "$name" "${result%\}}${extra}}" >>"$RESULTS"
  echo "$result"
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# What the database sessions wait for during first deliveries: every 100 ms,
# the wait events of the service's connections (pg_stat_activity).
# Lock waits also name the waiting statement and the one holding the lock
# (written to lock-waits.txt beside the report: which rows are contended).
sample_waits() {
  while :; do
    sql -c "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU (no wait)') FROM pg_stat_activity
             WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()"
    sql -c "SELECT 'LOCK ' || w.wait_event || ' | ' || left(regexp_replace(w.query, '\s+', ' ', 'g'), 90)
                   || ' | held by: ' || left(regexp_replace(b.query, '\s+', ' ', 'g'), 90)
              FROM pg_stat_activity w, unnest(pg_blocking_pids(w.pid)) AS bp(pid)
              JOIN pg_stat_activity b ON b.pid = bp.pid
             WHERE w.datname = current_database() AND w.wait_event_type = 'Lock'"
    sleep 0.1
  done
}
# Every 100 ms: each active session's wait (or CPU) and statement.
sample_activity() {
  while :; do
    sql -c "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') || ' | '
                   || left(regexp_replace(query, '\s+', ' ', 'g'), 80) FROM pg_stat_activity
             WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()"
    sleep 0.1
  done
}
# start_observers PREFIX: bench/observers.py's event streams and webhook
# endpoints opened (PREFIX.json gets their figures at stop_observers).
start_observers() {
  rm -f "$1.ready"
  python3 bench/observers.py "$BASE" "$API_TOKEN" "$STREAMS" "$1.ready" "$1.json" 2>"$1.log" &
  OBSERVERS_PID=$!
  until [ -e "$1.ready" ]; do
    kill -0 "$OBSERVERS_PID" 2>/dev/null || { cat "$1.log" >&2; die "bench/observers.py stopped"; }
    sleep 0.05
  done
}
stop_observers() {
  kill -TERM "$OBSERVERS_PID"
  wait "$OBSERVERS_PID" || { cat "$1.log" >&2; die "bench/observers.py failed"; }
  OBSERVERS_PID=""
  # The endpoints are gone with the observers: left registered, every later
  # event (700,000 of them when the scale part stores its lookups) would
  # queue sends to them, and the sender's retries would run beside every
  # later measurement.
  sql -c "DELETE FROM webhooks" >/dev/null
}
if deliveries; then # (not indented: the delivery load runs, up to "segments")
log "first deliveries: 32 connections, ${SECONDS_PER_RUN} s"
sample_waits >"$WORK/waits.samples" 2>/dev/null &
WAITS_PID=$!
R=$(run_wrk first 32 deliveries.lua "$WORK/first.targets" "$WORK/template.json" 2)
kill "$WAITS_PID" 2>/dev/null || true
grep '^LOCK ' "$WORK/waits.samples" | sort | uniq -c | sort -rn | head -10 >"$WORK/lock-waits.txt" || true
[ ! -s "$WORK/lock-waits.txt" ] || { log "first deliveries: lock waits (waiting | holding statement):"; cat "$WORK/lock-waits.txt" >&2; }
grep -v '^LOCK ' "$WORK/waits.samples" | sort | uniq -c | sort -rn | head -8 >"$WORK/waits.txt"
fact waits "\"$(awk '{printf "%s%s x%s", (NR>1?"; ":""), $2, $1}' "$WORK/waits.txt")\""
[ "$(field "$R" wrapped)" = 0 ] || die "first deliveries ran out of queued lookups: raise BENCH_LOOKUPS"
[ "$(field "$R" other)" = 0 ] || die "first deliveries: unexpected answers ($R); see $WORK/service.log"

log "duplicates: 32 connections, ${SECONDS_PER_RUN} s"
sql -F' ' -c "SELECT id, request_id FROM lookups WHERE status = 'completed' ORDER BY completed_at" |
  $HELPER targets "$SERVICE_SECRET" >"$WORK/duplicate.targets"
R=$(run_wrk duplicate 32 deliveries.lua "$WORK/duplicate.targets" "$WORK/template.json" 2)
[ "$(field "$R" other)" = 0 ] && [ "$(field "$R" applied)" = 0 ] ||
  die "duplicates: unexpected answers ($R)"

log "fixed rate: first deliveries at 1,000/s, 50 connections, ${SECONDS_PER_RUN} s, nothing else open"
queued_targets "$WORK/paced-quiet.targets"
R=$(WRK_RATE=1000 run_wrk paced-quiet 50 deliveries.lua "$WORK/paced-quiet.targets" "$WORK/template.json" 2)
[ "$(field "$R" wrapped)" = 0 ] || die "paced (quiet): ran out of queued lookups ($R)"

log "fixed rate: first deliveries at 1,000/s, 50 connections, ${SECONDS_PER_RUN} s, with $STREAMS event streams and two webhook endpoints (one never answers)"
queued_targets "$WORK/paced.targets"
start_observers "$WORK/observers"
# The event feed's share of a stream's delay: the service's own histogram,
# scraped before and after the run.
curl -fs "$BASE/metrics" >"$WORK/metrics.before"
# Answers other than 200 (timeouts, 503s) are counted and reported, not
# fatal: under this load they are the figure.
R=$(WRK_RATE=1000 run_wrk paced 50 deliveries.lua "$WORK/paced.targets" "$WORK/template.json" 2)
[ "$(field "$R" wrapped)" = 0 ] || die "paced: ran out of queued lookups ($R)"
sleep 2 # the last events of the run reach the streams and the healthy endpoint
curl -fs "$BASE/metrics" >"$WORK/metrics.after"
stop_observers "$WORK/observers"
fact observers "$(cat "$WORK/observers.json")"
fact feed_delay "$($HELPER histogram-diff "$WORK/metrics.before" "$WORK/metrics.after" event_feed_delay_seconds)"

log "forged refusals and GET /healthz: 64 connections, interleaved, 3 rounds each"
for round in 1 2 3; do
  R=$(run_wrk healthz 64 paths.lua "$WORK/healthz.paths" GET 200)
  [ "$(field "$R" other)" = 0 ] || die "healthz: unexpected answers ($R)"
  R=$(run_wrk forged 64 paths.lua "$WORK/forged.paths" POST 404)
  [ "$(field "$R" other)" = 0 ] || die "forged: unexpected answers ($R)"
done
kill "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
PEAK=$(sort -n "$WORK/rss.samples" | tail -1)
fact rss_load_kib "$(cut -d' ' -f1 <<<"$PEAK")"
fact rss_load_anon_kib "$(cut -d' ' -f2 <<<"$PEAK")"
fact rss_load_file_kib "$(cut -d' ' -f3 <<<"$PEAK")"
fact rss_hwm_kib "$(awk '/^VmHWM/ {print $2}' "/proc/$SERVICE_PID/status")"
[ "$(sql -c "SELECT count(*) FROM deliveries WHERE outcome = 'refused'")" = 0 ] ||
  die "forged deliveries were written to the database"

# Optional: where the CPU goes, by process and by symbol (perf, Debian
# linux-perf), during more first deliveries and more forged refusals.
if [ -n "${BENCH_PERF:-}" ]; then
  command -v perf >/dev/null || apt_install linux-perf
  # paced: the fixed 1,000/s with the event streams and webhook endpoints.
  for what in first paced forged; do
    log "perf: system-wide profile of $what for ${SECONDS_PER_RUN} s"
    rate=""
    case $what in
      first | paced)
        queued_targets "$WORK/perf.targets"
        set -- deliveries.lua "$WORK/perf.targets" "$WORK/template.json" 2
        conns=32
        ;;
      forged)
        set -- paths.lua "$WORK/forged.paths" POST 404
        conns=64
        ;;
    esac
    if [ "$what" = paced ]; then
      start_observers "$WORK/perf-observers"
      rate=1000
      conns=50
    fi
    perf record -a -g -F 499 -o "$WORK/perf-$what.data" >"$WORK/perf-$what.log" 2>&1 &
    perf_pid=$!
    if [ -n "$rate" ]; then
      WRK_RATE=$rate run_wrk "perf-$what" "$conns" "$@" >/dev/null
    else
      run_wrk "perf-$what" "$conns" "$@" >/dev/null
    fi
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    [ "$what" != paced ] || stop_observers "$WORK/perf-observers"
    perf_top() { # file lines perf-report-args...: the first lines of a report
      local out=$1 lines=$2
      shift 2
      perf report -i "$WORK/perf-$what.data" --no-children --stdio "$@" >"$out.full" 2>/dev/null || true
      { grep -v -e '^#' -e '^$' "$out.full" || true; } | sed -n "1,${lines}p" >"$out"
    }
    perf_top "$WORK/perf-$what.comm.txt" 12 --sort comm -g none
    perf_top "$WORK/perf-$what.service.txt" 40 --pid "$SERVICE_PID" --sort dso,sym -g none
    perf_top "$WORK/perf-$what.postgres.txt" 25 --comm postgres --sort sym -g none
    log "perf $what: CPU by process"
    cat "$WORK/perf-$what.comm.txt" >&2
  done
fi

# --- counting and creating with a million lookups stored ----------------------------
# batch_seconds NAME: one 1,000-item batch of new people, its time recorded.
batch_seconds() {
  # Plain letters and digits in the address: every item must be a create.
  python3 -c 'import json,re,sys; p=re.sub("[^a-z0-9]", "-", sys.argv[1]); print(json.dumps({"items": [{"email": f"{p}-{i}@bench.example"} for i in range(1000)]}))' \
    "$1" >"$WORK/batch.json"
  local out
  out=$(curl -s -o "$WORK/batch.answer" -w '%{http_code} %{time_total}' -H "Authorization: Bearer $API_TOKEN" \
    -H 'Content-Type: application/json' --data-binary @"$WORK/batch.json" "$BASE/v1/lookups/batch")
  [ "${out%% *}" = 200 ] || { head -c 500 "$WORK/batch.answer" >&2; die "batch $1 answered ${out%% *}"; }
  local created
  created=$(python3 -c 'import json,sys; print(sum(i["status"] == 202 for i in json.load(open(sys.argv[1]))["items"]))' "$WORK/batch.answer")
  [ "$created" = 1000 ] || die "batch $1 created $created of 1000 lookups"
  printf '{"kind":"run","name":"%s","result":{"seconds":%s}}\n' "$1" "${out#* }" >>"$RESULTS"
}
if [ "$SCALE_LOOKUPS" -gt 0 ]; then
  stored=$(sql -c "SELECT count(*) FROM lookups")
  if [ "$stored" -lt "$SCALE_LOOKUPS" ]; then
    log "scale: storing $((SCALE_LOOKUPS - stored)) more completed lookups in SQL (to $SCALE_LOOKUPS)"
    sql -v n="$((SCALE_LOOKUPS - stored))" -v key_id="$KEY_ID" -f bench/sql/scale_lookups.sql
  fi
  log "scale: waiting for the event sequencer to place the stored lookups' events"
  wait_for_sequencer
  sql -c "VACUUM ANALYZE event_inbox, events, lookups, lookup_identities" >/dev/null
  fact scale_lookups "$(sql -c "SELECT count(*) FROM lookups")"
  export BENCH_TOKEN="$API_TOKEN"
  echo /metrics >"$WORK/metrics.paths"
  echo /v1/stats >"$WORK/stats.paths"
  log "scale: GET /metrics, GET /v1/stats, POST /v1/lookups, 4 connections each"
  # What the database sessions run meanwhile (the service's background
  # work shares the machine with the requests measured).
  sample_activity >"$WORK/scale-activity.samples" 2>/dev/null &
  ACTIVITY_PID=$!
  R=$(run_wrk "scale:GET /metrics" 4 paths.lua "$WORK/metrics.paths" GET 200)
  [ "$(field "$R" other)" = 0 ] || die "metrics: unexpected answers ($R)"
  R=$(run_wrk "scale:GET /v1/stats" 4 paths.lua "$WORK/stats.paths" GET 200)
  [ "$(field "$R" other)" = 0 ] || die "stats: unexpected answers ($R)"
  R=$(run_wrk "scale:POST /v1/lookups" 4 lookups.lua nobudget)
  [ "$(field "$R" other)" = 0 ] || die "lookups: unexpected answers ($R)"
  for round in 1 2 3; do batch_seconds "scale:batch-$round"; done
  kill "$ACTIVITY_PID" 2>/dev/null || true
  sort "$WORK/scale-activity.samples" | uniq -c | sort -rn | head -12 >"$WORK/scale-activity.txt"
  log "scale: what active sessions ran (samples every 100 ms: count, wait, statement)"
  cat "$WORK/scale-activity.txt" >&2
  log "scale: the same creates with a daily budget (CREDIT_BUDGET_DAILY), after a restart"
  stop_service
  start_service CREDIT_BUDGET_DAILY=1000000000
  R=$(run_wrk "scale:POST /v1/lookups (budget)" 4 lookups.lua budget)
  [ "$(field "$R" other)" = 0 ] || die "lookups with a budget: unexpected answers ($R)"
  for round in 1 2 3; do batch_seconds "scale:batch-budget-$round"; done
  stop_service
  start_service
fi

fi # deliveries

# --- segments -----------------------------------------------------------------
. "$ROOT/bench/segments.sh"

log "report"
$HELPER report "$RESULTS" | tee "$WORK/report.md"
log "report written to $WORK/report.md"
