# dts-watcher: a small image for running the service (see README, "Running in production").
#
#   docker build -t dts-watcher .
#   docker run -d --name dts-watcher \
#     -e ALIBABA_CLOUD_ACCESS_KEY_ID -e ALIBABA_CLOUD_ACCESS_KEY_SECRET \
#     -e DTS_WATCHER_DTS__REGIONS='["cn-hangzhou"]' \
#     -e DTS_WATCHER_NATS__URL=nats://nats.internal:4222 \
#     -v dts-watcher-state:/var/lib/dts-watcher -p 8080:8080 dts-watcher
#
# Two stages: the first builds a virtualenv with the watcher and its dependencies (all of
# them ship wheels, so no compiler is needed even there); the second is the slim Python
# base plus that virtualenv, run as an unprivileged user, without pip or setuptools.
# Configuration is by environment only (DTS_WATCHER_*, ALIBABA_CLOUD_*); the state (the
# SQLite baseline and outbox) lives in the declared volume.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/dts-watcher
WORKDIR /src
COPY pyproject.toml README.md ./
COPY watcher ./watcher
RUN /opt/dts-watcher/bin/pip install --no-cache-dir . \
 && /opt/dts-watcher/bin/pip uninstall --yes pip setuptools \
 && /opt/dts-watcher/bin/dts-watcher --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="dts-watcher" \
      org.opencontainers.image.description="Watches Alibaba Cloud DTS synchronization jobs and publishes change events to NATS JetStream" \
      org.opencontainers.image.licenses="Apache-2.0"
# An unprivileged user with a fixed id (for volume ownership), and no packaging tools.
RUN groupadd --system --gid 10001 dts-watcher \
 && useradd --system --uid 10001 --gid dts-watcher --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin dts-watcher \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/dts-watcher \
 && python -m pip uninstall --yes --no-cache-dir pip setuptools wheel
COPY --from=build /opt/dts-watcher /opt/dts-watcher
ENV PATH=/opt/dts-watcher/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DTS_WATCHER_STATE__PATH=/var/lib/dts-watcher \
    DTS_WATCHER_HTTP__PORT=8080
VOLUME ["/var/lib/dts-watcher"]
EXPOSE 8080
USER 10001:10001
# Liveness from /healthz where DTS_WATCHER_HTTP__HOST/PORT put it (no curl in the image:
# the standard library does it); with the endpoint off (PORT=0) there is nothing to check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "watcher.healthcheck"]
ENTRYPOINT ["dts-watcher"]
CMD ["run"]
