# One image for all five trackd gRPC services and the web UI; docker-compose.yml and the Kubernetes
# manifests (deploy/base/services/*.yaml) pick one with `python -m trackd_services.<name>`.
#   docker build -t trackd:dev .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# README.m[d]: copied when present (pyproject names it as the long description), no error when not.
COPY pyproject.toml README.m[d] ./
COPY libs ./libs
COPY services ./services

RUN pip install ".[server]" \
    && groupadd --gid 10001 trackd \
    && useradd --create-home --uid 10001 --gid 10001 trackd

WORKDIR /home/trackd
# numeric, so Kubernetes' runAsNonRoot can check it
USER 10001:10001
# gRPC 50051-50055 (one per service), Prometheus /metrics on gRPC port + 1000; the web UI's HTTP
# (pages, /healthz, /metrics) on 8080
EXPOSE 50051 50052 50053 50054 50055 51051 51052 51053 51054 51055 8080

# Overridden per service by docker-compose.yml.
CMD ["python", "-m", "trackd_services.run"]
