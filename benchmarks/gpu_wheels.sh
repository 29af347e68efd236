#!/usr/bin/env bash
# Download the wheels that benchmarks/gpu_check.sh installs on a GPU machine without internet, into benchmarks/wheels/
# (git-ignored; carry it with the tree). Run it where pip reaches PyPI.
#
#   bash benchmarks/gpu_wheels.sh [--python 3.12] [PACKAGE==VERSION ...]
#
# Default packages: gymnasium and its farama-notifications, the pure-Python dependencies of ssmworld that the lent
# H200 image lacks (/work/.library/device/KINDS.md lists what it has: torch, numpy, rich, pyyaml, safetensors, pytest,
# cloudpickle, typing-extensions are there). gymnasium is pinned as constraints.txt pins it. Wheels are fetched
# without their dependencies (--no-deps, so that nothing the image has comes twice): name each missing one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_VERSION=3.12
if [ "${1:-}" = --python ]; then PYTHON_VERSION="$2"; shift 2; fi
GYMNASIUM=$(sed -n 's/^gymnasium==//p' constraints.txt)
PACKAGES=("$@")
[ ${#PACKAGES[@]} -gt 0 ] || PACKAGES=("gymnasium${GYMNASIUM:+==$GYMNASIUM}" farama-notifications)
mkdir -p benchmarks/wheels
python3 -m pip download --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d benchmarks/wheels "${PACKAGES[@]}"
ls -l benchmarks/wheels
