# syntax=docker/dockerfile:1
# Build: a cached dependency layer, then the binary (migrations are embedded in it).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates/studyhall/Cargo.toml crates/studyhall/Cargo.toml
RUN mkdir -p crates/studyhall/src \
 && echo 'fn main() {}' > crates/studyhall/src/main.rs \
 && touch crates/studyhall/src/lib.rs \
 && cargo build --release --locked --bin studyhall \
 && rm -rf crates/studyhall/src
COPY crates/studyhall crates/studyhall
RUN touch crates/studyhall/src/main.rs crates/studyhall/src/lib.rs \
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
