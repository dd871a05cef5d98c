# Multi-stage build of interests-receiver.
#   chef     toolchain + cargo-chef
#   planner  computes the dependency "recipe" from the manifests
#   builder  builds the dependencies (cached until Cargo.toml/Cargo.lock
#            change), then the binary through scripts/build-release.sh, the
#            same command CI runs
#   runtime  debian slim with CA certificates and the binary, as a non-root
#            user. Migrations are embedded in the binary (sqlx::migrate!), so
#            nothing else is copied.

FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN scripts/build-release.sh

FROM debian:bookworm-slim AS runtime
# ca-certificates: the upstream API is reached over HTTPS and the TLS stack
# verifies it against the system trust store. Not version-pinned (DL3008):
# bookworm's security updates replace old versions, which would break the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 receiver \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin receiver
COPY --from=builder /app/target/release/interests-receiver /usr/local/bin/interests-receiver

USER 10001
EXPOSE 8080
# The runtime image has no curl or wget: the binary probes itself.
# It probes /healthz on the port of LISTEN_ADDR (so a container moved to
# another port stays healthy); HEALTHCHECK_URL points it elsewhere, e.g. at
# the sandbox when the image runs `sandbox`.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["interests-receiver", "healthcheck"]
ENTRYPOINT ["interests-receiver"]
CMD ["serve"]
