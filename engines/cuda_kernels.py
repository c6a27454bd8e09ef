"""CUDA kernels for the GPU path, so only uint8 frames cross PCIe, with NumPy twins for the tests.

- ``u8hwc_to_nchw_{f32,f16}``: uint8 [N,H,W,3] RGB (or BGR) with any row pitch ->
  float/half [N,3,OH,OW] in 0..1: bilinear resize to RHxRW (half-pixel centres,
  clamped at the border; a plain copy when the size does not change), then
  reflect-pad to OHxOW (the network wants a multiple of 8).
- ``nchw_to_u8hwc_{f32,f16}``: float/half [N,3,IH,IW] -> uint8 [N,H,W,3], cropping the
  top-left HxW, rounding ``clip(x,0,1)*255`` half up; optionally fused with the
  temporal EMA of ``streamer.temporal.EmaSmoothing`` (state kept in float32 HxWx3 on
  the device; the N frames of a batch are consecutive in time and blended in order).

The source is plain CUDA C (``extern "C"`` entry points), compiled by pycuda's
``SourceModule`` at run time (nvcc) and, in the GPU tests, also by CuPy's
``RawModule`` (NVRTC), so a machine without pycuda still checks the kernels.
Arithmetic uses ``__fmul_rn``/``__fadd_rn`` where the NumPy twin must match bit for bit.
"""
from __future__ import annotations

import numpy as np

from engines.base import EngineError, EngineInfo, check_inputs

BLOCK = (32, 8, 1)

KERNEL_SOURCE = r"""
#include <cuda_fp16.h>

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }

__device__ __forceinline__ int reflect(int i, int n) {  /* numpy.pad(mode="reflect"), one bounce */
    return i < n ? i : 2 * (n - 1) - i;
}

template <typename T>
__device__ void to_nchw(const unsigned char* __restrict__ src, T* __restrict__ dst, int h, int w, int pitch,
                        int rh, int rw, int oh, int ow, int bgr, float sy_scale, float sx_scale) {
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y, n = blockIdx.z;
    if (x >= ow || y >= oh) return;
    int cy = reflect(y, rh), cx = reflect(x, rw);
    const unsigned char* frame = src + (size_t)n * h * pitch;
    size_t plane = (size_t)oh * ow, o = (size_t)n * 3 * plane + (size_t)y * ow + x;
    float v[3];
    if (rh == h && rw == w) {
        const unsigned char* p = frame + (size_t)cy * pitch + cx * 3;
        v[0] = p[0]; v[1] = p[1]; v[2] = p[2];
    } else {
        float sy = fmaxf(__fadd_rn(__fmul_rn(cy + 0.5f, sy_scale), -0.5f), 0.0f);
        float sx = fmaxf(__fadd_rn(__fmul_rn(cx + 0.5f, sx_scale), -0.5f), 0.0f);
        int y0 = min((int)sy, h - 1), x0 = min((int)sx, w - 1);
        int y1 = min(y0 + 1, h - 1), x1 = min(x0 + 1, w - 1);
        float fy = __fadd_rn(sy, -(float)y0), fx = __fadd_rn(sx, -(float)x0);
        const unsigned char *r0 = frame + (size_t)y0 * pitch, *r1 = frame + (size_t)y1 * pitch;
        for (int c = 0; c < 3; ++c) {
            float top = __fadd_rn(__fmul_rn(r0[x0 * 3 + c], 1.0f - fx), __fmul_rn(r0[x1 * 3 + c], fx));
            float bot = __fadd_rn(__fmul_rn(r1[x0 * 3 + c], 1.0f - fx), __fmul_rn(r1[x1 * 3 + c], fx));
            v[c] = __fadd_rn(__fmul_rn(top, 1.0f - fy), __fmul_rn(bot, fy));
        }
    }
    for (int c = 0; c < 3; ++c) store(dst + o + (size_t)c * plane, __fdiv_rn(v[bgr ? 2 - c : c], 255.0f));
}

template <typename T>
__device__ void to_u8hwc(const T* __restrict__ src, unsigned char* __restrict__ dst, float* __restrict__ prev,
                         int n, int h, int w, int ih, int iw, int pitch, int bgr, float a, float b, int first) {
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    size_t plane = (size_t)ih * iw;
    for (int c = 0; c < 3; ++c) {
        int oc = bgr ? 2 - c : c;
        float p = prev ? prev[((size_t)y * w + x) * 3 + c] : 0.0f;
        for (int i = 0; i < n; ++i) {
            float s = load(src + (size_t)i * 3 * plane + (size_t)c * plane + (size_t)y * iw + x);
            float v = floorf(__fadd_rn(__fmul_rn(fminf(fmaxf(s, 0.0f), 1.0f), 255.0f), 0.5f));
            if (prev) {
                p = (first && i == 0) ? v : __fadd_rn(__fmul_rn(a, v), __fmul_rn(b, p));
                v = fminf(fmaxf(__fadd_rn(p, 0.5f), 0.0f), 255.0f);
            }
            dst[(size_t)i * h * pitch + (size_t)y * pitch + x * 3 + oc] = (unsigned char)v;
        }
        if (prev) prev[((size_t)y * w + x) * 3 + c] = p;
    }
}

extern "C" {
__global__ void u8hwc_to_nchw_f32(const unsigned char* src, float* dst, int h, int w, int pitch, int rh, int rw,
                                  int oh, int ow, int bgr, float sy, float sx) {
    to_nchw(src, dst, h, w, pitch, rh, rw, oh, ow, bgr, sy, sx);
}
__global__ void u8hwc_to_nchw_f16(const unsigned char* src, __half* dst, int h, int w, int pitch, int rh, int rw,
                                  int oh, int ow, int bgr, float sy, float sx) {
    to_nchw(src, dst, h, w, pitch, rh, rw, oh, ow, bgr, sy, sx);
}
__global__ void nchw_to_u8hwc_f32(const float* src, unsigned char* dst, float* prev, int n, int h, int w, int ih,
                                  int iw, int pitch, int bgr, float a, float b, int first) {
    to_u8hwc(src, dst, prev, n, h, w, ih, iw, pitch, bgr, a, b, first);
}
__global__ void nchw_to_u8hwc_f16(const __half* src, unsigned char* dst, float* prev, int n, int h, int w, int ih,
                                  int iw, int pitch, int bgr, float a, float b, int first) {
    to_u8hwc(src, dst, prev, n, h, w, ih, iw, pitch, bgr, a, b, first);
}
}
"""

def check_uint8_inputs(info: EngineInfo, frames: np.ndarray, style: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 path's contract: frames uint8 [N,H,W,3], validated like the float path; returns (frames, style [N,100])."""
    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise EngineError(f"{info.backend}: uint8 frames must be [N,H,W,3] uint8, got {frames.dtype} {list(frames.shape)}")
    n, h, w, _ = frames.shape
    return frames, check_inputs(info, _NCHWShape(n, h, w), style)


class _NCHWShape:
    """Stands in for a float [N,3,H,W] batch in ``check_inputs`` (which reads only the shape)."""

    def __init__(self, n: int, h: int, w: int) -> None:
        self.shape, self.ndim = (n, 3, h, w), 4


_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}


def _grid(width: int, height: int, depth: int = 1) -> tuple[int, int, int]:
    return ((width + BLOCK[0] - 1) // BLOCK[0], (height + BLOCK[1] - 1) // BLOCK[1], depth)


def to_nchw_launch(src, dst, n: int, h: int, w: int, pitch: int, rh: int, rw: int, oh: int, ow: int,
                   bgr: bool, dtype) -> tuple[str, tuple, tuple]:
    """(kernel name, grid, args) for ``u8hwc_to_nchw``; ``src``/``dst`` are whatever the launcher takes as pointers."""
    if oh - rh >= rh or ow - rw >= rw:
        raise ValueError(f"padding {rw}x{rh} to {ow}x{oh} needs more than one reflection")
    i32, f32 = np.int32, np.float32
    args = (src, dst, i32(h), i32(w), i32(pitch), i32(rh), i32(rw), i32(oh), i32(ow), i32(bgr),
            f32(h / rh), f32(w / rw))
    return f"u8hwc_to_nchw_{_SUFFIX[np.dtype(dtype)]}", _grid(ow, oh, n), args


def to_u8hwc_launch(src, dst, prev, n: int, h: int, w: int, ih: int, iw: int, pitch: int, bgr: bool, dtype,
                    alpha: float = 1.0, first: bool = True) -> tuple[str, tuple, tuple]:
    """(kernel name, grid, args) for ``nchw_to_u8hwc``; ``prev`` is the float32 HxWx3 EMA state or a null pointer."""
    i32, f32 = np.int32, np.float32
    args = (src, dst, prev, i32(n), i32(h), i32(w), i32(ih), i32(iw), i32(pitch), i32(bgr),
            f32(alpha), f32(1.0 - alpha), i32(first))
    return f"nchw_to_u8hwc_{_SUFFIX[np.dtype(dtype)]}", _grid(w, h), args


class PycudaKernels:
    """The kernels compiled by pycuda for the current context; launches are asynchronous on ``stream``."""

    def __init__(self) -> None:
        from pycuda.compiler import SourceModule   # optional: pycuda exists only where a GPU build is installed

        self._module = SourceModule(KERNEL_SOURCE, no_extern_c=True, options=["-O3"])
        self._funcs: dict = {}

    def launch(self, spec: tuple[str, tuple, tuple], stream) -> None:
        name, grid, args = spec
        if name not in self._funcs:
            self._funcs[name] = self._module.get_function(name)
        self._funcs[name](*args, block=BLOCK, grid=grid, stream=stream)


# ---------------------------------------------------------------- NumPy twins (the tests' reference)

def ref_to_nchw(frames: np.ndarray, rh: int, rw: int, oh: int, ow: int, bgr: bool = False,
                dtype=np.float32) -> np.ndarray:
    """NumPy twin of ``u8hwc_to_nchw``: uint8 [N,H,W,3] -> [N,3,OH,OW] in ``dtype``."""
    n, h, w, _ = frames.shape
    f32 = np.float32
    if (rh, rw) == (h, w):
        v = frames.astype(f32)
    else:
        sy = np.maximum((np.arange(rh, dtype=f32) + f32(0.5)) * f32(h / rh) + f32(-0.5), f32(0))
        sx = np.maximum((np.arange(rw, dtype=f32) + f32(0.5)) * f32(w / rw) + f32(-0.5), f32(0))
        y0 = np.minimum(sy.astype(np.int64), h - 1)
        x0 = np.minimum(sx.astype(np.int64), w - 1)
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        fy = (sy - y0.astype(f32))[None, :, None, None]
        fx = (sx - x0.astype(f32))[None, None, :, None]
        src = frames.astype(f32)
        top = src[:, y0][:, :, x0] * (f32(1) - fx) + src[:, y0][:, :, x1] * fx
        bot = src[:, y1][:, :, x0] * (f32(1) - fx) + src[:, y1][:, :, x1] * fx
        v = top * (f32(1) - fy) + bot * fy
    if bgr:
        v = v[..., ::-1]
    v = np.pad(v / f32(255), ((0, 0), (0, oh - rh), (0, ow - rw), (0, 0)), mode="reflect")
    return np.ascontiguousarray(v.transpose(0, 3, 1, 2)).astype(dtype)


def ref_to_u8hwc(nchw: np.ndarray, h: int, w: int, bgr: bool = False, prev: np.ndarray | None = None,
                 alpha: float = 1.0, first: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """NumPy twin of ``nchw_to_u8hwc``: returns (uint8 [N,H,W,3], new float32 HxWx3 EMA state or None)."""
    v = np.floor(np.clip(nchw[:, :, :h, :w].astype(np.float32), 0, 1) * np.float32(255) + np.float32(0.5))
    v = v.transpose(0, 2, 3, 1)
    if prev is not None:
        a, b = np.float32(alpha), np.float32(1.0 - alpha)
        out = np.empty_like(v)
        p = prev.astype(np.float32)
        for i in range(v.shape[0]):
            p = v[i] if (first and i == 0) else a * v[i] + b * p
            out[i] = np.clip(p + np.float32(0.5), 0, 255)
        v, prev = out, p
    if bgr:
        v = v[..., ::-1]
    return np.ascontiguousarray(v.astype(np.uint8)), prev
