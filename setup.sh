#!/usr/bin/env bash
# One-step setup: a virtual environment in .venv with the project, its training/Space/test extras, and
# (where apt is available and we are root) Debian's Chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The pinned CPU build of torch first: an unpinned `torch` would pull a multi-GB CUDA build.
# (On a GPU machine, install the torch build you want before running this script; it is kept.)
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[all]"
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: Chromium not installed; the browser tests will be skipped (sudo apt-get install chromium)." >&2
  fi
fi
echo "setup done: activate with  . .venv/bin/activate"
