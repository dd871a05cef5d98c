#!/usr/bin/env bash
# Runs the service benchmark:   scripts/bench.sh
#
# Builds the bench in release mode (`cargo bench --bench service`), which
# creates a database of its own on the PostgreSQL server of DATABASE_URL
# (default postgres://postgres@127.0.0.1:5432/postgres; the role must be
# allowed to CREATE DATABASE), measures, writes bench/RESULTS.md, prints it
# and drops the database. What is measured and how to read it:
# bench/README.md.
#
# Environment variables read by this script and the bench:
#   DATABASE_URL   server to use (any database on it; the bench makes its own)
#   BENCH_SCALE    multiplies the request and profile counts (default 1);
#                  e.g. 0.1 for a quick smoke run. Do not compare ratios of
#                  runs made at different scales.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'scripts/bench.sh: %s\n' "$*" >&2; }

# postgres://user:secret@host/db -> postgres://user:***@host/db
redact() { sed -E 's#(://[^/:@]*):[^@/]*@#\1:***@#' <<<"$1"; }

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
# Named here rather than in the bench so that, should the bench be killed
# before it can drop its database, the EXIT trap below still can.
BENCH_DATABASE="ir_bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
export BENCH_DATABASE

cleanup() {
  local rc=$?
  if command -v psql >/dev/null 2>&1; then
    psql "$DATABASE_URL" -XAtqc "DROP DATABASE IF EXISTS $BENCH_DATABASE WITH (FORCE)" \
      >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
# Turn Ctrl-C / kill into an ordinary exit so that the EXIT trap cleans up.
trap 'exit 130' INT
trap 'exit 143' TERM

log "DATABASE_URL=$(redact "$DATABASE_URL") (bench database $BENCH_DATABASE)"
log "running: cargo bench --bench service"
cargo bench --bench service
