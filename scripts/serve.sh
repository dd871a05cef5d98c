#!/usr/bin/env bash
# Runs the service locally:   scripts/serve.sh [extra `serve` flags]
#
# With no upstream credentials in the environment this is sandbox mode: a
# built-in simulator of the upstream API answers instead of the real one, so
# the whole loop works with no account. PostgreSQL is found or started as
# scripts/lib/postgres.sh describes (a throwaway cluster is deleted on exit).
# Unless DATABASE_URL is given, the service keeps its data in a database of
# its own, `interests_receiver` (created when missing), so a shared server's
# `postgres` database is left alone.
#
# Defaults set here for local use (override any of them in the environment):
#   LISTEN_ADDR=127.0.0.1:8080, LOG_FORMAT=pretty, and, in sandbox mode only,
#   API_TOKENS=sandbox-demo-token-0123456789 so the README's curl examples
#   work as written.
#
# ctrl-c or SIGTERM stops the service (gracefully) and then the throwaway
# cluster, if one was started.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCRIPT_NAME=scripts/serve.sh
DATABASE_URL_GIVEN="${DATABASE_URL:-}"
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

DB_NAME=interests_receiver
if [[ -z "$DATABASE_URL_GIVEN" ]]; then
  command -v psql >/dev/null 2>&1 ||
    die "psql is needed to create the $DB_NAME database; install the PostgreSQL client or set DATABASE_URL"
  if [[ "$(psql "$DATABASE_URL" -XAtqc "select 1 from pg_database where datname = '$DB_NAME'")" != 1 ]]; then
    psql "$DATABASE_URL" -XAtqc "create database $DB_NAME" >/dev/null ||
      die "cannot create the database $DB_NAME on $(redact "$DATABASE_URL")"
    log "created the database $DB_NAME"
  fi
  # Same server, own database: replace the path of the URL.
  export DATABASE_URL="${DATABASE_URL%/*}/$DB_NAME"
  log "using DATABASE_URL=$(redact "$DATABASE_URL")"
fi

export LISTEN_ADDR="${LISTEN_ADDR:-127.0.0.1:8080}"
export LOG_FORMAT="${LOG_FORMAT:-pretty}"
if [[ -z "${UPSTREAM_API_KEY:-}" && -z "${UPSTREAM_API_SECRET:-}" ]]; then
  export API_TOKENS="${API_TOKENS:-sandbox-demo-token-0123456789}"
fi

# Ask cargo where it builds (CARGO_TARGET_DIR, a config file, or target/).
target_dir=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
if [[ ! -x "${target_dir:-target}/release/interests-receiver" ]]; then
  log "first run: compiling the release binary; this takes a few minutes (about 5 on 2 cores), later runs start in seconds"
else
  log "building (only what changed since the last run)"
fi
# JSON on stdout names the binary that was built; diagnostics stay readable
# on stderr.
BIN=$(cargo build --release --locked --bin interests-receiver \
  --message-format=json-render-diagnostics |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[[ -x "$BIN" ]] || die "cargo did not report the interests-receiver binary"

log "starting interests-receiver on $LISTEN_ADDR (ctrl-c stops it)"
# Run in the background and wait, so that this shell can take ctrl-c and
# SIGTERM and pass them on: the service stops gracefully, then the EXIT trap
# of scripts/lib/postgres.sh removes a throwaway cluster.
"$BIN" serve "$@" &
SERVICE_PID=$!
stop_service() {
  log "stopping interests-receiver"
  kill -TERM "$SERVICE_PID" 2>/dev/null || true
}
trap stop_service INT TERM
status=0
# `wait` returns early when a trapped signal arrives; wait again until the
# service has really exited.
while kill -0 "$SERVICE_PID" 2>/dev/null; do
  wait "$SERVICE_PID" && status=0 || status=$?
done
trap - INT TERM
log "interests-receiver exited with status $status"
exit "$status"
