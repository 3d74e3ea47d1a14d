#!/usr/bin/env bash
# Install (first run only) and serve the dashboard: panel serve apps/explorer.py
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/panel serve apps/explorer.py --show "$@"
