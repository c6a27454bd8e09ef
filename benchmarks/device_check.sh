#!/usr/bin/env bash
# The one prepared GPU check: run from the repository root on the GPU test machine, within 8 minutes.
#
#   1. installs the carried wheels (.whl/: av, polygraphy, pytools, platformdirs, mako, siphash24)
#   2. builds pycuda from its carried sdist with the machine's nvcc, in the background
#   3. runs the GPU-marked tests (PyTorch CUDA backend vs ONNX Runtime; the CUDA kernels through CuPy)
#   4. benchmarks/device_check.py: fp16 PSNR, model-only fps 720p/1080p, uint8 in-flight fps,
#      NVENC vs libx264, end-to-end 1080p decode/infer/encode and `streamer convert`
#   5. once pycuda is built: the kernels through pycuda (SourceModule) against the NumPy twins
# Writes to $OUT (at most 8 files): device.log, pycuda_build.log, pytest_torch.txt,
# pytest_pycuda.txt, device_check.json, device_check.md.  Fetch wheels here first:
#   bash benchmarks/fetch_device_wheels.sh   (here, before the run; then carry .whl)
set -uo pipefail
OUT=${OUT:-$PWD/out/device_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PY:-python3}
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
exec > >(tee "$OUT/device.log") 2>&1

echo "== wheels ($(elapsed) s)"
SITE=/tmp/site
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
  || echo "WARNING: wheel install failed"
export PYTHONPATH="$SITE:$PWD"

echo "== pycuda build in the background ($(elapsed) s)"
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_ROOT=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
echo "nvcc=$NVCC CUDA_ROOT=$CUDA_ROOT"
export PATH="$CUDA_ROOT/bin:$PATH"
(
  set -e
  rm -rf /tmp/pycuda-src /tmp/site-pycuda /tmp/cudalib && mkdir -p /tmp/pycuda-src /tmp/cudalib
  tar xzf .whl/pycuda-*.tar.gz -C /tmp/pycuda-src --strip-components=1
  # link against the driver: the toolkit's stub if there is one, else the installed libcuda.so.1
  LIBCUDA=$(ls "$CUDA_ROOT"/lib64/stubs/libcuda.so "$CUDA_ROOT"/targets/x86_64-linux/lib/stubs/libcuda.so 2>/dev/null | head -1)
  [ -n "$LIBCUDA" ] || LIBCUDA=$(ldconfig -p | awk '/libcuda\.so\.1 /{print $NF; exit}')
  [ -n "$LIBCUDA" ] || LIBCUDA=$(ls /usr/local/nvidia/lib64/libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.1 2>/dev/null | head -1)
  ln -sf "$LIBCUDA" /tmp/cudalib/libcuda.so
  LIBDIRS="/tmp/cudalib,$CUDA_ROOT/lib64,$CUDA_ROOT/lib,$CUDA_ROOT/targets/x86_64-linux/lib"
  cd /tmp/pycuda-src
  $PY configure.py --cuda-root="$CUDA_ROOT" --cudadrv-lib-dir="$LIBDIRS" --cudart-lib-dir="$LIBDIRS" \
      --no-cuda-enable-curand
  printf '\n[build_ext]\nparallel = 16\n' >> setup.cfg
  $PY -m pip install --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site-pycuda .
  echo "pycuda built"
) > "$OUT/pycuda_build.log" 2>&1 &
PYCUDA_PID=$!

echo "== GPU ($(elapsed) s)"
nvidia-smi --query-gpu=name,driver_version,memory.total,temperature.gpu,clocks.sm --format=csv || true

echo "== GPU-marked tests: PyTorch CUDA backend, kernels through CuPy ($(elapsed) s)"
timeout 150 $PY -m pytest -q -rs -m gpu -p no:cacheprovider -W ignore::DeprecationWarning \
  tests/test_gpu_backends.py tests/test_gpu_kernels.py -k "not pycuda" 2>&1 | tee "$OUT/pytest_torch.txt" | tail -25

echo "== measurements ($(elapsed) s)"
QUICK=""
[ "$(elapsed)" -gt 200 ] && QUICK="--quick"
timeout 270 $PY benchmarks/device_check.py "$OUT" $QUICK || echo "WARNING: device_check.py exited $?"

echo "== pycuda kernels ($(elapsed) s)"
LEFT=$(( 450 - $(elapsed) )); [ $LEFT -lt 10 ] && LEFT=10
timeout $LEFT tail --pid=$PYCUDA_PID -f /dev/null || echo "WARNING: pycuda build still running; killed"
kill $PYCUDA_PID 2>/dev/null
tail -3 "$OUT/pycuda_build.log"
if [ -d /tmp/site-pycuda/pycuda ]; then
  PYTHONPATH="/tmp/site-pycuda:$PYTHONPATH" timeout 90 $PY -m pytest -q -rs -m gpu -p no:cacheprovider \
    tests/test_gpu_kernels.py -k pycuda 2>&1 | tee "$OUT/pytest_pycuda.txt" | tail -8
  PYTHONPATH="/tmp/site-pycuda:$PYTHONPATH" $PY -c "import engines.tensorrt as t; print('tensorrt backend:', t.availability())"
else
  echo "pycuda not built: see pycuda_build.log" | tee "$OUT/pytest_pycuda.txt"
fi
echo "== done in $(elapsed) s"
[ -f "$OUT/device_check.md" ] && cat "$OUT/device_check.md"
