#!/usr/bin/env bash
# Set up a fresh Debian machine (Python 3.11, root or sudo) for tpm-agent: the Debian libraries for
# offscreen rendering (EGL through Mesa llvmpipe), then a virtual environment in .venv with the
# package, its simulator extra and the development tools. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: installing tpm-agent with the sim and dev extras"
.venv/bin/python -m pip install -q -e ".[sim,dev]"
echo "setup: done"
