# syntax=docker/dockerfile:1
# writ: a static-ish release binary on distroless. No shell, no package manager,
# runs as a numeric non-root UID, writes nothing to its root filesystem (the policy
# is mounted read-only at /etc/writ), so readOnlyRootFilesystem: true just works.
#
#   docker build -t writ .
#   docker run --rm -v "$PWD/config/examples:/etc/writ:ro" writ check --config /etc/writ/orders.yaml

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions of Cargo.lock, reviewed by cargo-deny.
RUN cargo build --release --locked --bin writ \
 && install -D -m 0755 target/release/writ /out/writ

# glibc, libgcc and CA certificates (for https upstreams and jwks_url), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="writ" \
      org.opencontainers.image.description="Execution-authority proxy: per-action authorization in front of unmodified backends" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/writ-dev/writ" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /out/writ /usr/local/bin/writ
# distroless's `nonroot` user, by number so runAsNonRoot can verify it.
USER 65532:65532
# proxy (sidecar: WRIT_LISTEN), admin (/healthz /readyz /metrics), webhook.
EXPOSE 8080 9901 8443
ENTRYPOINT ["writ"]
CMD ["run", "--config", "/etc/writ/writ.yaml"]
