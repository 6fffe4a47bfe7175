#!/usr/bin/env bash
# Install Debian's Chromium (and its driver) for the real-browser test
# (tests/browser/test_jupyterlab.py). System packages, not Python ones: needs root (or sudo).
# Called by `make browser-deps`. Exits 0 without doing anything where Chromium is present.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "Chromium is already installed: $(command -v chromium || command -v chromium-browser)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install Chromium with your system's package manager" \
         "(or set CRYOML_CHROMIUM to its path); the browser test is skipped without it." >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
$SUDO apt-get install -y chromium chromium-driver
chromium --version || true
