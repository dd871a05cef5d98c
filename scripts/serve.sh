#!/usr/bin/env bash
# Runs the service locally:   scripts/serve.sh [extra `serve` flags]
#
# With no upstream credentials in the environment this is sandbox mode: a
# built-in simulator of the upstream API answers instead of the real one, so
# the whole loop works with no account. PostgreSQL is found or started as
# scripts/lib/postgres.sh describes (a throwaway cluster is deleted on exit).
#
# Defaults set here for local use (override any of them in the environment):
#   LISTEN_ADDR=127.0.0.1:8080, LOG_FORMAT=pretty, and, in sandbox mode only,
#   API_TOKENS=sandbox-demo-token-0123456789 so the README's curl examples
#   work as written.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCRIPT_NAME=scripts/serve.sh
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

export LISTEN_ADDR="${LISTEN_ADDR:-127.0.0.1:8080}"
export LOG_FORMAT="${LOG_FORMAT:-pretty}"
if [[ -z "${UPSTREAM_API_KEY:-}" && -z "${UPSTREAM_API_SECRET:-}" ]]; then
  export API_TOKENS="${API_TOKENS:-sandbox-demo-token-0123456789}"
fi

log "building and starting interests-receiver on $LISTEN_ADDR (ctrl-c stops it)"
# Not exec'd: the EXIT trap must still run afterwards to remove a cluster.
cargo run --release --locked --bin interests-receiver -- serve "$@"
