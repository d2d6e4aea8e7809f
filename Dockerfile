# teams-bridge: one image for every role (`serve`, `worker hr-audit`, `relay`, `migrate`, ...).
#   docker build -t teams-bridge .
#   docker run --rm -p 3978:3978 -e DATABASE_URL=... -e NATS_URL=... -e TEAMS_WEBHOOKS=... teams-bridge
# Works with the classic builder and BuildKit alike (no cache mounts).

FROM rust:1-bookworm AS builder
WORKDIR /src

# Dependencies first, against stub sources, so that a source change rebuilds only this crate.
# The load generator (bench/) is a workspace member the image does not build: only its
# manifest is needed for cargo to read the workspace.
COPY Cargo.toml Cargo.lock ./
COPY bench/Cargo.toml ./bench/
RUN mkdir -p src bench/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs bench/src/lib.rs \
 && cargo build --release --locked -p teams-bridge \
 && rm -rf src

COPY openapi.json ./
COPY migrations ./migrations
COPY src ./src
# COPY keeps the files' old modification times: make cargo see that they replaced the stubs.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked -p teams-bridge --bin teams-bridge \
 && install -m 0755 target/release/teams-bridge /usr/local/bin/teams-bridge

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 teams-bridge \
 && useradd --system --uid 10001 --gid teams-bridge --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin teams-bridge \
 && mkdir -p /var/lib/teams-bridge/keys \
 && chown 10001:10001 /var/lib/teams-bridge/keys \
 && chmod 0700 /var/lib/teams-bridge/keys
COPY --from=builder /usr/local/bin/teams-bridge /usr/local/bin/teams-bridge
USER 10001:10001
# 3978: webhooks, /healthz, /readyz, /metrics, /api/audit (`serve`).
# 9464: /healthz and /metrics of `worker hr-audit` (WORKER_LISTEN_ADDR).
EXPOSE 3978 9464
ENTRYPOINT ["teams-bridge"]
CMD ["serve"]
