# syntax=docker/dockerfile:1.7
#
# The gridwatch image: the release binary and the WASM SmartModules.
#
#   docker build -t gridwatch:dev .
#   docker run --rm -p 8080:8080 -e GRIDWATCH_ADMIN__TOKEN=secret gridwatch:dev \
#     run --listen 0.0.0.0:8080
#
# tests/deploy/check_dockerfile.py checks (without docker) that everything the
# stages copy exists and that the workspace builds from what is copied.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

# ---- builder: the WASM modules and the release binary ----------------------
FROM rust:${RUST_VERSION}-${DEBIAN} AS builder
WORKDIR /src
# The toolchain file pins the channel and the wasm32-wasip1 target; rustup
# installs both here, in a layer of its own.
COPY rust-toolchain.toml ./
RUN rustup show active-toolchain || rustup toolchain install
# Every workspace member must be present for cargo to load the workspace.
COPY Cargo.toml Cargo.lock ./
COPY schemas ./schemas
COPY smartmodules ./smartmodules
COPY pipeline ./pipeline
COPY connectors ./connectors
COPY tests ./tests
COPY benches ./benches
COPY examples ./examples
COPY scripts ./scripts
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    scripts/build-modules \
 && cargo build --locked --release -p gridwatch --bin gridwatch \
 && mkdir -p /out/bin /out/modules \
 && cp target/wasm32-wasip1/release-lto/gridwatch_validate.wasm \
       target/wasm32-wasip1/release-lto/gridwatch_detect.wasm /out/modules/ \
 && cp target/release/gridwatch /out/bin/gridwatch \
 && mkdir -p /out/smartmodules/gridwatch-validate /out/smartmodules/gridwatch-detect /out/data \
 && cp smartmodules/validate/SmartModule.toml /out/smartmodules/gridwatch-validate/ \
 && cp smartmodules/detect/SmartModule.toml /out/smartmodules/gridwatch-detect/

# ---- runtime: glibc, CA certificates, nothing else --------------------------
# distroless/cc has libc, libgcc and ca-certificates and no shell or package
# manager; probes use HTTP, so none is needed.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="gridwatch" \
      org.opencontainers.image.description="Real-time anomaly detection for power-grid sensor streams on Fluvio" \
      org.opencontainers.image.source="https://github.com/gridwatch/gridwatch" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/bin/gridwatch /usr/local/bin/gridwatch
COPY --from=builder /out/modules/ /usr/share/gridwatch/modules/
# Package metadata for `gridwatch modules publish` (what `smdk load` reads).
COPY --from=builder /out/smartmodules/ /usr/share/gridwatch/smartmodules/
# The configuration reference, for operators (the binary embeds it).
COPY pipeline/gridwatch/config/default.yaml /usr/share/gridwatch/config/default.yaml
# A writable data directory for `docker run`; Kubernetes mounts a volume here.
COPY --from=builder --chown=10001:10001 /out/data/ /var/lib/gridwatch/
# runtime.modules_dir and data_dir, as the Helm chart also sets them.
ENV GRIDWATCH_RUNTIME__MODULES_DIR=/usr/share/gridwatch/modules \
    GRIDWATCH_DATA_DIR=/var/lib/gridwatch
WORKDIR /var/lib/gridwatch
# The numeric uid the chart's securityContext uses (runAsNonRoot needs a
# number to verify); distroless "nonroot" is 65532, this one owns nothing.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gridwatch"]
CMD ["run"]
