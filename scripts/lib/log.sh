# shellcheck shell=bash
# Messages of the project's scripts, sourced by scripts/lib/postgres.sh and
# scripts/bench.sh. The caller sets SCRIPT_NAME (for messages) first.

log() { printf '%s: %s\n' "${SCRIPT_NAME:-scripts}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# postgres://user:secret@host/db -> postgres://user:***@host/db
redact() { sed -E 's#(://[^/:@]*):[^@/]*@#\1:***@#' <<<"$1"; }
