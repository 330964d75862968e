# syntax=docker/dockerfile:1
# Build: a cached dependency layer, then the binary (migrations are embedded in it).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates/core/Cargo.toml crates/core/Cargo.toml
COPY crates/log/Cargo.toml crates/log/Cargo.toml
COPY crates/auth/Cargo.toml crates/auth/Cargo.toml
COPY crates/jobs/Cargo.toml crates/jobs/Cargo.toml
COPY crates/module/Cargo.toml crates/module/Cargo.toml
COPY crates/ui/Cargo.toml crates/ui/Cargo.toml
COPY crates/events/Cargo.toml crates/events/Cargo.toml
COPY crates/stats/Cargo.toml crates/stats/Cargo.toml
COPY crates/streams/Cargo.toml crates/streams/Cargo.toml
COPY crates/social/Cargo.toml crates/social/Cargo.toml
COPY crates/grades/Cargo.toml crates/grades/Cargo.toml
COPY crates/console/Cargo.toml crates/console/Cargo.toml
COPY crates/studyhall/Cargo.toml crates/studyhall/Cargo.toml
RUN for crate in crates/*/; do mkdir -p "${crate}src" && touch "${crate}src/lib.rs"; done \
 && echo 'fn main() {}' > crates/studyhall/src/main.rs \
 && cargo build --release --locked --bin studyhall \
 && rm -rf crates/*/src
COPY crates crates
RUN find crates -path '*/src/*' -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin studyhall

# Run: a slim image, a non-root user, no secrets (they come from the environment).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin studyhall \
 && mkdir -p /data && chown studyhall /data
COPY --from=build /src/target/release/studyhall /usr/local/bin/studyhall
USER 10001
WORKDIR /data
ENV STUDYHALL_LISTEN=0.0.0.0:8080 \
    STUDYHALL_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["studyhall"]
CMD ["serve"]
