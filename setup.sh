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
# Chromium for the browser tests is optional: setup never fails for want of it (those tests skip, saying why).
# apt-get waits up to 10 minutes for apt's lock when another install holds it, instead of failing at once.
APT_WAIT=(-o DPkg::Lock::Timeout=600)
chromium_note() {
  echo "note: Chromium not installed ($1); the browser tests will be skipped." \
    "Install it later with: sudo apt-get install -y chromium" >&2
}
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Chromium with apt-get (waits up to 10 minutes if another install holds apt's lock)" >&2
    # A failed list update (another update holding its lock, no network) is no reason to stop: try the lists there are.
    apt-get "${APT_WAIT[@]}" update -qq \
      || echo "note: apt-get update failed (see above); trying Chromium from the current package lists." >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get "${APT_WAIT[@]}" install -y -qq chromium >/dev/null; then
      chromium_note "apt-get install failed, see above; apt's lock may have been held for over 10 minutes"
    fi
  else
    chromium_note "installing it needs root and apt-get"
  fi
fi
echo "setup done: activate with  . .venv/bin/activate"
