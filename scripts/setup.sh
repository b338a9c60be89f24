#!/usr/bin/env bash
# Set up everything on a fresh machine (idempotent): a virtualenv in .venv with CPU
# torch 2.13.0 and this package with its test extras.
#     bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# Pin torch first: an unpinned requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[test]"
# Headless Chromium renders the HTML report in tests/test_report.py. Installed only when
# running as root with apt (CI containers, Debian); elsewhere that one test is skipped.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y --no-install-recommends chromium)
fi
