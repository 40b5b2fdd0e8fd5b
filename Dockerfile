# syntax=docker/dockerfile:1
# mirror: a pull-through cache for Docker Hub.
#   docker build -t mirror .
#   docker run -d -p 5000:5000 -v mirror-data:/var/lib/mirror mirror
# Config: /etc/mirror/config.toml (deploy/container/config.toml); mount your own over it.

ARG PYTHON_IMAGE=python:3.12-slim

# --- stage 1: build wheels for mirror and every dependency ----------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# README.md is the package's readme (pyproject.toml); .dockerignore lets only these in.
COPY pyproject.toml README.md ./
COPY mirror ./mirror
RUN pip wheel --wheel-dir /wheels .

# --- stage 2: runtime, no compiler, no source tree -------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Installed offline from stage 1's wheels; the bind mount keeps the wheels out of the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels mirror \
 && groupadd --system --gid 10001 mirror \
 && useradd --system --uid 10001 --gid mirror --home-dir /var/lib/mirror --no-create-home \
        --shell /usr/sbin/nologin mirror \
 && mkdir -p /var/lib/mirror /etc/mirror \
 && chown mirror:mirror /var/lib/mirror \
 && chmod 0750 /var/lib/mirror
COPY deploy/container/config.toml /etc/mirror/config.toml

USER 10001:10001
WORKDIR /var/lib/mirror
VOLUME /var/lib/mirror
# 5000: pulls. 5001: /admin/, /metrics and health checks ([admin] listen in the image's config).
EXPOSE 5000 5001

# slim has no curl: urllib raises (exit 1) on a refused connection or a non-2xx answer. The admin
# port first (the image's config); a mounted config without [admin] listen is probed on 5000.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u\ntry: u.urlopen('http://127.0.0.1:5001/healthz', timeout=2)\nexcept OSError: u.urlopen('http://127.0.0.1:5000/healthz', timeout=2)"]

ENTRYPOINT ["mirror"]
CMD ["serve", "--config", "/etc/mirror/config.toml"]
