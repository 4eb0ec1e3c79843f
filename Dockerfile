# One image for all five trackd services; docker-compose.yml picks the service with
# `command: ["python", "-m", "trackd_services.<name>"]`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# README.m[d]: copied when present (pyproject names it as the long description), no error when not.
COPY pyproject.toml README.m[d] ./
COPY libs ./libs
COPY services ./services

RUN pip install . \
    && useradd --create-home --uid 10001 trackd

WORKDIR /home/trackd
USER trackd

# Overridden per service by docker-compose.yml.
CMD ["python", "-m", "trackd_services.run"]
