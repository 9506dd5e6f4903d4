# Switchboard server image: build with the Rust toolchain, run on a slim Debian.
#
#   docker build -t switchboard .
#   docker run --rm -p 8080:8080 -e SWITCHBOARD_NO_DEMO=true switchboard
#
# Configuration comes from SWITCHBOARD_* environment variables (`switchboard serve --help`).
# `docker stop` sends SIGTERM: the server drains (SWITCHBOARD_DRAIN_WINDOW, default 10 s)
# and then waits up to SWITCHBOARD_SHUTDOWN_TIMEOUT (default 10 s), so give it
# `docker stop --time 25` (the default 10 s would cut the drain short).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p switchboard \
    && install -m 0755 target/release/switchboard /usr/local/bin/switchboard

FROM debian:bookworm-slim
# ca-certificates: `rediss://` brokers and JWKS keys are verified against the system roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin switchboard
COPY --from=build /usr/local/bin/switchboard /usr/local/bin/switchboard
USER switchboard
ENV SWITCHBOARD_LOG_FORMAT=json
EXPOSE 8080
STOPSIGNAL SIGTERM
# No HEALTHCHECK: it would need curl (or similar) in the image, one more package to patch
# for a probe that orchestrators run themselves anyway. Point their probes at the server:
# liveness GET /healthz, readiness GET /readyz (503 while draining or without Redis).
ENTRYPOINT ["switchboard", "serve", "--listen", "0.0.0.0:8080"]
