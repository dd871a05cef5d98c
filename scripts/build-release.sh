#!/usr/bin/env bash
# The one release build of interests-receiver.
#
#   scripts/build-release.sh                       the shipped binary
#   scripts/build-release.sh --features crashpoints the same build plus the
#                                                  test-only crash hooks
#
# The Dockerfile's builder stage runs it without arguments; the test script
# runs it with the test feature, so the binary that CI's crash and replica
# tests drive differs from the shipped one by that feature alone. Change the
# build here, never in only one of those places.
#
# --locked: fail instead of silently updating Cargo.lock.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked --bin interests-receiver "$@"
