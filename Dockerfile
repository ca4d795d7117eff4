# syntax=docker/dockerfile:1.7
#
# The `medallion` image: one static-enough binary on a distroless base, run as a non-root user,
# with the shipped pipeline as the default configuration (Kubernetes mounts its own over it).
#
#   docker build -t medallion:0.1.0 .
#   docker run --rm -v "$PWD/demo:/work" -w /work medallion:0.1.0 validate
#
# The build needs BuildKit (cache mounts). It contains no credentials: storage credentials
# come from the environment or the pod's role at run time.

# --- build ---------------------------------------------------------------------------------
FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY crates ./crates
# The registry and target directories are cache mounts: a rebuild after a source change
# recompiles only the engine's crates. `--locked` builds exactly the committed Cargo.lock.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --package medallion-cli --bin medallion \
    && install -D -m 0755 target/release/medallion /out/medallion

# --- runtime -------------------------------------------------------------------------------
# glibc, libgcc and CA certificates, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
# checkov:skip=CKV_DOCKER_2:A batch job has no server to probe; Kubernetes Jobs track the exit code instead of a HEALTHCHECK.
LABEL org.opencontainers.image.title="medallion" \
      org.opencontainers.image.description="Medallion lakehouse ETL: landed files to Bronze, Silver and Gold Delta tables" \
      org.opencontainers.image.source="https://github.com/medallion-lakehouse/medallion" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/medallion /usr/local/bin/medallion
COPY layers.yaml /etc/medallion/layers.yaml
ENV MEDALLION_CONFIG=/etc/medallion/layers.yaml \
    MEDALLION_LOG_FORMAT=json
# distroless's `nonroot` user and group.
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/medallion"]
CMD ["--help"]
