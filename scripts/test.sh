#!/usr/bin/env bash
# Installs sigmavault with every extra into .venv (CPU torch first, so nothing pulls CUDA) and runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests start for real, installed with one apt-get update when root and missing:
# chromium (the dashboard test drives a real headless browser), redis-server (a loopback server for
# the Redis KV tier's tests).
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ "$(id -u)" = 0 ] && [ "${#need[@]}" -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install --quiet torch==2.13.0
.venv/bin/pip install --quiet -e '.[all]'
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
