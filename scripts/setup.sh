#!/usr/bin/env bash
# Set up a fresh Debian machine (Python 3.11, root or sudo) for tpm-agent: the Debian libraries for
# offscreen rendering (EGL through Mesa llvmpipe), then a virtual environment in .venv with the
# package, its simulator extra and the development tools. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# EGL + Mesa for offscreen MuJoCo rendering; libusb for pyrealsense2 (the `real` extra);
# hidapi for the 3D mouse that `record` reads through pyspacemouse (the `teleop` extra).
DEBIAN_PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libusb-1.0-0 libhidapi-hidraw0)
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
# torch first, pinned to the build that lies on this machine kind's disk (any other version
# downloads gigabytes); the vision extra's packages then find it installed.
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
# sim: the MuJoCo world; real: Franka (franky-control, panda-python) and RealSense drivers, whose
# tests run against the franky-sim server; vision: Grounding DINO, SAM, MobileSAM; gpu: ONNX
# Runtime (runs on the CPU provider without a GPU); reasoning-lm: the offline reasoner's small
# language model; serve: the HTTP service; llm: the OpenAI-compatible reasoner; tpm: the policy's
# training and export (zarr datasets, onnx, plots); view: the rerun live view; cluster: Ray for
# collect / eval --ray; teleop: the 3D mouse for `record`; dev: test tools.
EXTRAS="sim,real,vision,gpu,reasoning-lm,serve,llm,tpm,view,cluster,teleop,dev"
echo "setup: installing tpm-agent with the extras $EXTRAS"
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
# groundingdino-py pulls opencv-python, which shares the cv2/ folder with the contrib build and
# may overwrite it (pip's order is not guaranteed): put the contrib build (CSRT, KCF) back.
CONTRIB=$(.venv/bin/python -m pip show opencv-contrib-python-headless | sed -n 's/^Version: //p')
.venv/bin/python -m pip install -q --force-reinstall --no-deps "opencv-contrib-python-headless==$CONTRIB"
.venv/bin/python -c "import cv2; cv2.TrackerCSRT.create(); cv2.TrackerKCF.create()" \
  || { echo "setup: OpenCV trackers are missing (opencv-contrib-python-headless)" >&2; exit 1; }
echo "setup: done"
