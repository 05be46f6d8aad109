#!/usr/bin/env bash
# Installs what likestream needs on a bare Debian machine: Debian packages (PostgreSQL,
# Redis, supervisor, Prometheus, Java, Maven), uv, the locked Python environment in .venv.
# Debian's prometheus may start its own system service (0.0.0.0:9090, where systemd runs
# and no policy-rc.d forbids it); ours is a separate process on 127.0.0.1:59090 with its
# own config and data under .local/prometheus, so the two never share a port or files.
# Idempotent, and quick when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
need=()
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || need+=(postgresql-15)
command -v redis-server >/dev/null || need+=(redis-server)
command -v supervisord >/dev/null || need+=(supervisor)
[[ -x /usr/bin/prometheus ]] || need+=(prometheus)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
if ((${#need[@]})); then
  echo "bootstrap: installing Debian packages: ${need[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [[ ! -x .cache/tools/bin/uv ]]; then
  echo "bootstrap: installing uv ${UV_VERSION}"
  python3 -m venv .cache/tools
  .cache/tools/bin/pip install -q "uv==${UV_VERSION}"
fi
export UV_CACHE_DIR="$PWD/.cache/uv"
# --compile-bytecode and compileall: Python's own cache of compiled modules is off where
# PYTHONDONTWRITEBYTECODE is set (as on the machines this project is built on), so every
# process compiled every module it imports at each start: 2.4 s to import the counts
# flow, 1.0 s with the bytecode written once here (10 s, the first time only).
.cache/tools/bin/uv sync --frozen --quiet --compile-bytecode
.venv/bin/python -m compileall -q -j 0 core schemas sinks analytics flows ingest_api ops \
  devstack loadgen cli bench >/dev/null

# Every other port of the stack lies below Linux's ephemeral range (32768-60999 by
# default), so no outgoing connection can be handed one of them as its local port and
# keep a restarted server from binding it. Prometheus' 59090 is fixed by the contract
# (section 7) and lies inside that range: reserve it when this machine lets us (root,
# writable /proc/sys), so a long-lived client socket cannot hold it across a restart.
reserved=/proc/sys/net/ipv4/ip_local_reserved_ports
if [[ $(id -u) -eq 0 && -w $reserved ]] && ! grep -qw 59090 "$reserved"; then
  current=$(cat "$reserved")
  if echo "${current:+$current,}59090" >"$reserved" 2>/dev/null; then
    echo "bootstrap: reserved port 59090 (Prometheus) against ephemeral allocation"
  fi
fi
