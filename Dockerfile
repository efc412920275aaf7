# syntax=docker/dockerfile:1
#
# token-rotator operator image: one static binary on distroless, running as non-root.
#
#   docker build -t ghcr.io/token-rotator/token-rotator:0.1.0 .
#
# Stage 1 builds a static musl binary; stage 2 copies it onto gcr.io/distroless/static, which has no
# shell or package manager, only CA certificates, /etc/passwd entries and tzdata. The result is a
# few tens of MB and matches the chart's pod security settings (UID/GID 65532, read-only root
# filesystem: the operator writes no files).

# --- build -----------------------------------------------------------------------------------------
# Same Rust as the workspace's rust-version. On Alpine the host target is *-linux-musl, which links
# statically by default, so the binary needs no libc at run time. TLS is rustls (ring): no OpenSSL.
FROM rust:1.89-alpine AS build
# ring compiles a little C and assembly: it needs a C compiler and the musl headers.
RUN apk add --no-cache musl-dev gcc
WORKDIR /src
# The whole workspace: Cargo needs every member's manifest (sandbox/ is a test-only member and is
# not built). .dockerignore keeps target/, .cache/ and .git/ out of the context.
COPY . .
# Strip symbols for a smaller image without touching Cargo.toml's release profile.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
# Cache mounts keep the crate registry and build artefacts between builds (BuildKit); the binary is
# copied out of the cached target dir because the mount is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin token-rotator \
    && cp target/release/token-rotator /token-rotator

# --- run -------------------------------------------------------------------------------------------
# static-debian12:nonroot runs as user `nonroot` (65532:65532) and ships /etc/ssl/certs, which the
# Twilio client's TLS verifier reads (the Kubernetes client trusts the cluster CA from the
# ServiceAccount mount instead).
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="token-rotator" \
      org.opencontainers.image.description="Kubernetes operator that rotates Twilio credentials stored in Secrets with zero downtime" \
      org.opencontainers.image.source="https://github.com/token-rotator/token-rotator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /token-rotator /token-rotator
# Numeric, so Kubernetes' runAsNonRoot check can verify it without reading /etc/passwd.
USER 65532:65532
# /metrics, /healthz, /readyz (TOKEN_ROTATOR_HTTP_ADDR, default 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/token-rotator"]
# `run` starts the controller; configuration comes from flags or TOKEN_ROTATOR_* environment
# variables (see the Helm chart). Other subcommands: crd, rotate, abort, status.
CMD ["run"]
