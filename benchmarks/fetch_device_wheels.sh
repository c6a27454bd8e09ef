#!/usr/bin/env bash
# Fetch what benchmarks/device_check.sh needs on the GPU test machine (no network there) into .whl/
# (git-ignored through .git/info/exclude; about 38 MB, carried with `carry: [".whl"]`).
# Python there is CPython 3.12 on x86-64; numpy, setuptools, wheel, typing-extensions, MarkupSafe,
# cupy, torch and onnxruntime are already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
mkdir -p .whl
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d .whl \
  av==18.1.0 polygraphy==0.53.6 pytools==2026.1.1 platformdirs==4.14.8 mako==1.4.3 siphash24==1.9
# pycuda is built there from its sdist with the machine's nvcc; --no-build-isolation keeps pip from
# fetching numpy's sources just to read the metadata
python3 -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d .whl pycuda==2026.1
ls -la .whl && du -sh .whl
