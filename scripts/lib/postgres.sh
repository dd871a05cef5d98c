# shellcheck shell=bash
# Finds or starts the PostgreSQL that scripts/test.sh and scripts/serve.sh
# use, and exports DATABASE_URL. Sourced, not run. In this order:
#   1. DATABASE_URL, when it is set, is used as it is.
#   2. A server already answering on 127.0.0.1:5432 is used as
#      postgres://postgres@127.0.0.1:5432/postgres (trust auth assumed).
#   3. Otherwise a throwaway cluster is made with the PostgreSQL binaries
#      (initdb/pg_ctl from PATH, else the newest /usr/lib/postgresql/*/bin):
#      a temp dir, a free port on 127.0.0.1 only, trust auth, no durability.
#      It is stopped and deleted when the sourcing script exits.
# TEST_PG_FORCE_THROWAWAY=1 skips steps 1 and 2.
# The caller sets SCRIPT_NAME (for messages) before sourcing.

# log, die, redact.
# shellcheck source=scripts/lib/log.sh
source "$(dirname "${BASH_SOURCE[0]}")/log.sh"

# True when something accepts TCP connections on 127.0.0.1:$1.
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

server_on_5432() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h 127.0.0.1 -p 5432 -t 3
  else
    tcp_open 5432
  fi
}

# Directory holding initdb and pg_ctl: PATH first (Debian does not put them
# there), then the newest /usr/lib/postgresql/<version>/bin.
find_pg_bindir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return
  fi
  local dir
  dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
    printf '%s\n' "$dir"
    return
  fi
  return 1
}

# PostgreSQL refuses to run as root, so as root the cluster belongs to an
# unprivileged account: `postgres` when the packages created it, else `nobody`.
PG_USER=""
if [[ $EUID -eq 0 ]]; then
  if id -u postgres >/dev/null 2>&1; then PG_USER=postgres; else PG_USER=nobody; fi
fi

as_pg_user() {
  if [[ -z "$PG_USER" ]]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u "$PG_USER" -- "$@"
  else
    # su needs an explicit shell: nobody's login shell is nologin.
    su -s /bin/bash "$PG_USER" -c "$(printf '%q ' "$@")"
  fi
}

PG_TMP=""
PG_BINDIR=""

cleanup() {
  local rc=$?
  if [[ -n "$PG_TMP" ]]; then
    if [[ -f "$PG_TMP/data/postmaster.pid" ]]; then
      as_pg_user "$PG_BINDIR/pg_ctl" -D "$PG_TMP/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf -- "$PG_TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
# Turn Ctrl-C / kill into an ordinary exit so that the EXIT trap cleans up.
trap 'exit 130' INT
trap 'exit 143' TERM

start_throwaway_cluster() {
  PG_BINDIR=$(find_pg_bindir) ||
    die "no PostgreSQL found: set DATABASE_URL, start a server on 127.0.0.1:5432, or install the PostgreSQL server binaries (initdb, pg_ctl)"

  PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/interests-receiver-pg.XXXXXX")
  if [[ -n "$PG_USER" ]]; then
    chown "$PG_USER" "$PG_TMP"
    as_pg_user test -w "$PG_TMP" ||
      die "user $PG_USER cannot write $PG_TMP (set TMPDIR to a directory others can traverse, e.g. /tmp)"
  fi

  # A free port, starting from a random one so that parallel runs rarely race.
  local port="" candidate i
  for ((i = 0; i < 100; i++)); do
    candidate=$((20000 + (RANDOM % 20000)))
    if ! tcp_open "$candidate"; then port=$candidate; break; fi
  done
  [[ -n "$port" ]] || die "no free TCP port found on 127.0.0.1"

  if ! as_pg_user "$PG_BINDIR/initdb" -D "$PG_TMP/data" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C --no-sync >"$PG_TMP/initdb.log" 2>&1; then
    cat "$PG_TMP/initdb.log" >&2
    die "initdb failed"
  fi

  # max_connections: every test process keeps a pool of its own, and sqlx::test
  # adds one pool per test. Durability is pointless for a cluster that is
  # deleted afterwards, and turning it off makes the tests much faster.
  cat >>"$PG_TMP/data/postgresql.conf" <<EOF

# Added by scripts/lib/postgres.sh for a throwaway cluster.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_TMP'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

  if ! as_pg_user "$PG_BINDIR/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/postgres.log" \
      -w -t 60 start >/dev/null; then
    cat "$PG_TMP/postgres.log" >&2 || true
    die "the throwaway PostgreSQL did not start"
  fi

  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  PG_SOURCE="throwaway cluster from $PG_BINDIR in $PG_TMP"
}

PG_SOURCE=""
if [[ "${TEST_PG_FORCE_THROWAWAY:-}" == 1 ]]; then
  start_throwaway_cluster
elif [[ -n "${DATABASE_URL:-}" ]]; then
  PG_SOURCE="DATABASE_URL from the environment"
elif server_on_5432; then
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
  PG_SOURCE="server already running on 127.0.0.1:5432"
else
  start_throwaway_cluster
fi

log "PostgreSQL: $PG_SOURCE"
log "DATABASE_URL=$(redact "$DATABASE_URL")"

# Fail here, with a clear message, rather than in every database test.
if command -v psql >/dev/null 2>&1; then
  version=$(psql "$DATABASE_URL" -XAtqc 'show server_version') ||
    die "cannot connect to $(redact "$DATABASE_URL")"
  log "server version $version"
fi

