# The likestream project image: the ingest API, migrations and the Bytewax flows.
#
#   docker build -t likestream:local .
#   docker run --rm likestream:local config --json     # = likes config --json
#   docker run --rm likestream:local likes migrate     # `likes` may be spelled out
#
# Dependencies come from uv.lock exactly (uv sync --frozen), without the dev group.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install "uv==0.13.8"

WORKDIR /app

# Third-party dependencies first: this layer survives changes to the code.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

# Then the project itself, installed editable so that paths relative to the
# repository root (core.settings.REPO_ROOT, schemas/migrations) stay valid.
COPY core/ core/
COPY schemas/ schemas/
COPY sinks/ sinks/
COPY analytics/ analytics/
COPY flows/ flows/
COPY ingest_api/ ingest_api/
COPY ops/ ops/
COPY devstack/ devstack/
COPY loadgen/ loadgen/
COPY cli/ cli/
RUN uv sync --frozen --no-dev


FROM ${PYTHON_IMAGE}

# tini reaps children and forwards SIGTERM, so `docker stop` ends the API and
# the flows promptly.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 likes \
    && useradd --system --uid 10001 --gid likes --home-dir /home/likes --create-home \
        --shell /usr/sbin/nologin likes \
    && mkdir -p /data/recovery \
    && chown -R likes:likes /data

# `likes SUBCOMMAND ...`, `SUBCOMMAND ...` and `--help` run the CLI; any other
# program on PATH (python, sh) runs as given.
RUN printf '%s\n' \
        '#!/bin/sh' \
        'set -e' \
        'if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ] || ! command -v "$1" >/dev/null 2>&1; then' \
        '    set -- likes "$@"' \
        'fi' \
        'exec "$@"' \
        > /usr/local/bin/likes-entrypoint \
    && chmod 0755 /usr/local/bin/likes-entrypoint

COPY --from=build /app /app

# Runtime data (LIKES_HOME) and Bytewax recovery live under /data, owned by the
# unprivileged user; mount volumes there.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LIKES_HOME=/data \
    LIKES_RECOVERY_DIR=/data/recovery

WORKDIR /app
USER likes:likes
EXPOSE 8000

ENTRYPOINT ["/usr/bin/tini", "--", "likes-entrypoint"]
CMD ["likes", "--help"]
