# syntax=docker/dockerfile:1
# The edict operator image: `edict run` on distroless, as UID 65532, with nothing writable but
# the /tmp the chart mounts (an emptyDir: the embedded bundle store lives in /tmp/edict/store).
#
#   docker build -t ghcr.io/edict-dev/edict:0.1.0 .
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t ... .
#
# Stages: `chef` (the Rust toolchain and cargo-chef), `planner` (the dependency recipe, from
# Cargo.toml and Cargo.lock only), `builder` (dependencies first, in their own cached layer,
# then edict itself) and the final distroless image.

ARG RUST_VERSION=1.95
# glibc (the AWS SDK's aws-lc and kube's rustls link to it) and libgcc, nothing else: no shell,
# no package manager. `nonroot` runs as 65532:65532.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:${RUST_VERSION}-bookworm AS chef
# cargo-chef turns the dependency graph into a recipe, so that the layer that compiles the
# dependencies (minutes on CI) is rebuilt only when Cargo.toml or Cargo.lock change.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# Symbols stripped: a smaller image (backtraces still name the functions, without lines).
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin edict --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin edict \
    && install -D -m 0755 target/release/edict /out/edict

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/edict-dev/edict
LABEL org.opencontainers.image.title="edict" \
      org.opencontainers.image.description="A Kubernetes-native policy control plane for Open Policy Agent" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=builder /out/edict /usr/local/bin/edict
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 65532:65532
# 8181: the OPA bundle API; 8080: /metrics, /healthz, /readyz.
EXPOSE 8080 8181
ENTRYPOINT ["/usr/local/bin/edict"]
CMD ["run", "--addr=0.0.0.0:8181", "--metrics-addr=0.0.0.0:8080"]
