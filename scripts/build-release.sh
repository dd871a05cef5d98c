#!/usr/bin/env bash
# The one release build of interests-receiver.
#
# Both the Dockerfile's builder stage and CI (.ci/run) call this script, so the
# binary that is tested in CI is built exactly like the one that ships in the
# image. Change the build here, never in only one of those places.
#
# --locked: fail instead of silently updating Cargo.lock.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked --bin interests-receiver
