#!/usr/bin/env bash
# Runs the whole test suite:   scripts/test.sh [extra arguments for the test runner]
#
# The database tests use #[sqlx::test], which creates a fresh database per test
# from DATABASE_URL, so they need a PostgreSQL server and a role allowed to
# create databases. This script finds one, in this order:
#   1. DATABASE_URL, when it is set, is used as it is.
#   2. A server already answering on 127.0.0.1:5432 is used as
#      postgres://postgres@127.0.0.1:5432/postgres (trust auth assumed).
#   3. Otherwise a throwaway cluster is made with the PostgreSQL binaries
#      (initdb/pg_ctl from PATH, else the newest /usr/lib/postgresql/*/bin):
#      a temp dir, a free port on 127.0.0.1 only, trust auth, no durability.
#      It is stopped and deleted when this script exits, however it exits.
#
# Then it runs `cargo nextest run --all-targets --features crashpoints "$@"`
# when cargo-nextest is installed, else the same with `cargo test`.
# `scripts/test.sh --release` (what CI runs) tests the release build. There are no doctests, so
# `cargo test --doc` is not run.
#
# Environment variables read by this script:
#   DATABASE_URL               use this server (step 1)
#   TEST_PG_FORCE_THROWAWAY=1  skip steps 1 and 2: always make a throwaway
#                              cluster (exercises step 3 on machines that
#                              have a server running)
#   TEST_PG_CHECK_ONLY=1       find/start PostgreSQL, check it answers a
#                              query, then stop without running any tests
#                              (tests this script itself)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCRIPT_NAME=scripts/test.sh
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

if [[ "${TEST_PG_CHECK_ONLY:-}" == 1 ]]; then
  if command -v psql >/dev/null 2>&1; then
    psql "$DATABASE_URL" -XAtqc 'select 1' >/dev/null
    log "max_connections=$(psql "$DATABASE_URL" -XAtqc 'show max_connections')"
  fi
  log "TEST_PG_CHECK_ONLY=1: PostgreSQL is usable; not running the tests"
  exit 0
fi

# The console's browser tests (tests/it/console/browser.rs) drive Debian's
# headless Chromium through chromedriver. Install them when missing rather
# than skip those tests; without root or apt the tests fail and say so.
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing chromium and chromium-driver for the console's browser tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    log "warning: chromium/chromedriver missing and cannot be installed here (needs root and apt-get); the console's browser tests will fail: apt-get install -y chromium chromium-driver"
  fi
fi

# The crash hooks (cargo feature `crashpoints`) are compiled into the test
# build only. With --release, the binary under test is first built by
# scripts/build-release.sh (the shipped build plus that feature), so CI
# tests what ships.
features=(--features crashpoints)
for arg in "$@"; do
  if [[ "$arg" == --release ]]; then
    log "building the release binary under test: scripts/build-release.sh ${features[*]}"
    scripts/build-release.sh "${features[@]}"
  fi
done

# Not exec'd: the EXIT trap must still run afterwards to remove the cluster.
if cargo nextest --version >/dev/null 2>&1; then
  log "running: cargo nextest run --all-targets ${features[*]} $*"
  cargo nextest run --all-targets "${features[@]}" "$@"
else
  log "running: cargo test --all-targets ${features[*]} $*"
  cargo test --all-targets "${features[@]}" "$@"
fi
