#!/usr/bin/env bash
# Installs sigmavault with every extra into .venv (CPU torch first, so nothing pulls CUDA) and runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests start for real, installed (one apt-get update) when root and missing:
# redis-server (a loopback server for the Redis KV tier's tests).
need=()
command -v redis-server >/dev/null || need+=(redis-server)
if [ "$(id -u)" = 0 ] && [ "${#need[@]}" -gt 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
python3 -m venv .venv
.venv/bin/pip install --quiet torch==2.13.0
.venv/bin/pip install --quiet -e '.[all]'
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
