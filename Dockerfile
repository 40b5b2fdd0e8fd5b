# mirror: a pull-through cache for Docker Hub.
#   docker build -t mirror .
#   docker run -d -p 5000:5000 -v mirror-data:/var/lib/mirror mirror
# Config: /etc/mirror/config.toml (deploy/container/config.toml); mount your own over it.
#
# Offline builds (what tests/test_container_image.py does):
#   --build-arg PYTHON_IMAGE=<any image with python3 and its venv module>, e.g. one imported from
#   `mmdebstrap --include=python3,python3-venv,ca-certificates bookworm`;
#   a wheels/ folder in the build context (every dependency and setuptools, built for the base's
#   Python) makes pip install from it alone, with no index.
# No `# syntax=` line: the classic builder and BuildKit's built-in frontend both build this file,
# and neither has to fetch anything from a registry but PYTHON_IMAGE.

ARG PYTHON_IMAGE=python:3.12-slim

# --- stage 1: a virtual environment with mirror and every dependency ------------------------
# The same base as the runtime stage: the venv's interpreter path (/usr/local/bin/python3 on the
# official image, /usr/bin/python3 on Debian's) is the same in both.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# .dockerignore lets in only pyproject.toml, README.md (the package's readme), mirror/, the
# container config and an optional wheels/ folder.
COPY . ./
RUN python3 -m venv /opt/mirror \
 && if [ -d wheels ]; then set -- --no-index --find-links wheels; fi \
 && /opt/mirror/bin/pip install "$@" . \
 && /opt/mirror/bin/pip uninstall --quiet --yes pip

# --- stage 2: runtime: the venv (without pip), no source tree, no wheels ---------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/mirror/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 mirror \
 && useradd --system --uid 10001 --gid mirror --home-dir /var/lib/mirror --no-create-home \
        --shell /usr/sbin/nologin mirror \
 && mkdir -p /var/lib/mirror /etc/mirror \
 && chown mirror:mirror /var/lib/mirror \
 && chmod 0750 /var/lib/mirror
COPY --from=build /opt/mirror /opt/mirror
COPY deploy/container/config.toml /etc/mirror/config.toml

USER 10001:10001
WORKDIR /var/lib/mirror
VOLUME /var/lib/mirror
# 5000: pulls. 5001: /admin/, /metrics and health checks ([admin] listen in the image's config).
EXPOSE 5000 5001

# slim has no curl: urllib raises (exit 1) on a refused connection or a non-2xx answer. The admin
# port first (the image's config); a mounted config without [admin] listen is probed on 5000.
# `python` is the venv's (first on PATH), on either base.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u\ntry: u.urlopen('http://127.0.0.1:5001/healthz', timeout=2)\nexcept OSError: u.urlopen('http://127.0.0.1:5000/healthz', timeout=2)"]

ENTRYPOINT ["mirror"]
CMD ["serve", "--config", "/etc/mirror/config.toml"]
