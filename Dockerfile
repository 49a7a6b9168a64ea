# syntax=docker/dockerfile:1
# image-proxy as a container: README.md, "Deploy". Build from the repository's root:
#   docker build -t image-proxy .
# tests/e2e/deploy/test_container.py runs this file's install steps (the RUN lines of the build
# stage, as written) in a fresh virtualenv and serves its default command from it; hadolint
# lints it.

# --- build: a virtualenv with the gateway and its dependencies -------------------------------
# Every dependency ships binary wheels for this Python: no compiler is needed, even here.
FROM python:3.11.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/image-proxy
ENV PATH="${VIRTUAL_ENV}/bin:${PATH}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy/ proxy/
RUN python -m venv "${VIRTUAL_ENV}"
RUN --mount=type=cache,target=/root/.cache/pip pip install .

# --- the image: the virtualenv, a user, nothing to build with ---------------------------------
FROM python:3.11.11-slim-bookworm

ENV VIRTUAL_ENV=/opt/image-proxy \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IMAGE_PROXY_DATA_DIR=/var/lib/image-proxy
ENV PATH="${VIRTUAL_ENV}/bin:${PATH}"

# jemalloc, the allocator `serve` preloads (memory.allocator: auto): the memory a burst of jobs
# took goes back to the system once it is over. A runtime library, nothing to build with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libjemalloc2=5.3.0-1 \
    && rm -rf /var/lib/apt/lists/*

# A system user of its own; the data directory is its home and its only writable place.
RUN groupadd --system --gid 10001 image-proxy \
    && useradd --system --uid 10001 --gid image-proxy --no-create-home \
        --home-dir /var/lib/image-proxy --shell /usr/sbin/nologin image-proxy \
    && mkdir -p /var/lib/image-proxy /etc/image-proxy \
    && chown image-proxy:image-proxy /var/lib/image-proxy

COPY --from=build /opt/image-proxy /opt/image-proxy
# The default configuration: the built-in renderer on 0.0.0.0:8080, one gateway key whose
# SHA-256 comes from $IMAGE_PROXY_KEY_SHA256. Mount your own over it (read-only):
#   -v ./gateway.yaml:/etc/image-proxy/gateway.yaml:ro
COPY deploy/container/gateway.yaml /etc/image-proxy/gateway.yaml
COPY deploy/container/healthcheck.py /usr/local/lib/image-proxy/healthcheck.py

USER 10001:10001
WORKDIR /var/lib/image-proxy
# The usage ledger (SQLite, unless usage.database_url names PostgreSQL), hosted images and the
# ledger's spill files. Secrets come from the environment (${VAR} in the configuration).
VOLUME ["/var/lib/image-proxy"]
EXPOSE 8080

# SIGTERM drains (server.shutdown_grace, 25 s by default, then up to 5 s to finish writing):
# give the container longer than that to stop (docker run --stop-timeout 40, compose's
# stop_grace_period: 40s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/image-proxy/healthcheck.py"]

ENTRYPOINT ["image-proxy"]
CMD ["serve", "--config", "/etc/image-proxy/gateway.yaml"]
