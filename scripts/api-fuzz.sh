#!/usr/bin/env bash
# Property-based check of the REST API against its own OpenAPI document:
#   scripts/api-fuzz.sh [path to a built interests-receiver binary]
#
# Installs a pinned schemathesis into a throwaway virtualenv, starts the
# binary in sandbox mode on a free loopback port with a database of its own
# (on the PostgreSQL of DATABASE_URL, default the local server), and runs
# every check (no server errors, responses match the documented schema and
# status codes, authentication never ignored) with a bounded number of
# examples per operation. Everything it made is removed when it exits.
# `GET /v1/events` (an endless stream) is left out. Examples are derandomised
# (the same every run), so a CI result does not depend on luck.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf 'scripts/api-fuzz.sh: %s\n' "$*" >&2; }

SCHEMATHESIS_VERSION=3.39.16
# The hypothesis release of the same month: later ones break this schemathesis.
HYPOTHESIS_VERSION=6.123.2
EXAMPLES="${API_FUZZ_EXAMPLES:-25}"
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/interests-receiver}"
[[ -x "$BIN" ]] || { log "no binary at $BIN: run scripts/build-release.sh first"; exit 2; }

SERVER_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="ir_api_fuzz_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
WORK="$(mktemp -d)"
PID=""
cleanup() {
  [[ -n "$PID" ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  psql "$SERVER_URL" -XAtqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log "installing schemathesis $SCHEMATHESIS_VERSION into a throwaway virtualenv"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==$HYPOTHESIS_VERSION"

psql "$SERVER_URL" -XAtqc "CREATE DATABASE $DB" >/dev/null
DB_URL="${SERVER_URL%/*}/$DB"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
TOKEN="api-fuzz-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

log "starting $BIN in sandbox mode on 127.0.0.1:$PORT"
env -i PATH="$PATH" DATABASE_URL="$DB_URL" LISTEN_ADDR="127.0.0.1:$PORT" \
  API_TOKENS="$TOKEN" SANDBOX_TIME_SCALE=0.01 RUST_LOG=warn \
  "$BIN" serve >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$WORK/server.log" >&2; exit 1; }

log "running schemathesis: every check, $EXAMPLES examples per operation"
status=0
"$WORK/venv/bin/st" run "http://127.0.0.1:$PORT/openapi.json" \
  --base-url "http://127.0.0.1:$PORT" \
  --experimental=openapi-3.1 \
  --checks all \
  --hypothesis-max-examples "$EXAMPLES" \
  --hypothesis-derandomize \
  --hypothesis-deadline none \
  --hypothesis-suppress-health-check all \
  --request-timeout 10000 \
  --exclude-path /v1/events \
  -H "Authorization: Bearer $TOKEN" \
  --no-color || status=$?
if [[ $status -ne 0 ]]; then
  log "schemathesis found problems; server log follows"
  tail -50 "$WORK/server.log" >&2
fi
exit $status
