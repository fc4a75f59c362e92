# engagewatch: one image for every command (worker, topics, replay, simulate, demo, run).
#   docker build -t engagewatch:local .
#   docker run --rm engagewatch:local --help
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 engagewatch \
 && useradd --system --uid 10001 --gid engagewatch --home-dir /var/lib/engagewatch --create-home \
            --shell /usr/sbin/nologin engagewatch

WORKDIR /src
COPY pyproject.toml README.md ./
COPY processors ./processors
COPY streams ./streams
# The rocksdb extra lets a worker keep its checkpoint table in RocksDB (ENGAGEWATCH_KAFKA__STORE=rocksdb://).
RUN pip install ".[rocksdb]" && rm -rf /src

WORKDIR /var/lib/engagewatch
USER 10001:10001

# Inside a container the exporter must listen on every interface of the container's own network namespace
# for Prometheus to reach it; publish it on the host as 127.0.0.1:PORT only.
ENV ENGAGEWATCH_METRICS_HOST=0.0.0.0 \
    ENGAGEWATCH_METRICS_PORT=9464 \
    ENGAGEWATCH_LOG_FORMAT=json \
    ENGAGEWATCH_KAFKA__DATA_DIR=/var/lib/engagewatch/worker

EXPOSE 9464
ENTRYPOINT ["engagewatch"]
CMD ["worker"]
