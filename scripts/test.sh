#!/usr/bin/env bash
# Installs sigmavault with every extra into .venv (CPU torch first, so nothing pulls CUDA) and runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# The dashboard test drives a real headless browser: Debian's chromium (installed when root and missing).
if [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install --quiet torch==2.13.0
.venv/bin/pip install --quiet -e '.[all]'
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
