#!/usr/bin/env bash
# Installs sigmavault with the default embedder into .venv and runs the quickstart tour.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet torch==2.13.0
.venv/bin/pip install --quiet -e '.[embed]'
.venv/bin/sigmavault quickstart "$@"
