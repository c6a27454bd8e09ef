"""CUDA kernels for the GPU path, so only uint8 frames cross PCIe, with NumPy twins for the tests.

- ``u8hwc_to_nchw_{f32,f16}``: uint8 [N,H,W,3] RGB (or BGR) with any row pitch ->
  float/half [N,3,OH,OW] in 0..1: bilinear resize to RHxRW (half-pixel centres,
  clamped at the border; a plain copy when the size does not change), then
  reflect-pad to OHxOW (the network wants a multiple of 8).
- ``nchw_to_u8hwc_{f32,f16}``: float/half [N,3,IH,IW] -> uint8 [N,H,W,3], cropping the
  top-left HxW, rounding ``clip(x,0,1)*255`` half up; optionally fused with the
  temporal EMA of ``streamer.temporal.EmaSmoothing`` (state kept in float32 HxWx3 on
  the device; the N frames of a batch are consecutive in time and blended in order).
- ``flow_blend_u8``: the warp + blend half of ``streamer.temporal.FlowSmoothing`` for one
  frame: the backward flow and the blend weight, computed on the CPU at a low resolution
  (``FlowSmoothing.estimate``), are upsampled bilinearly (as ``cv2.resize``), the previous
  uint8 output is sampled at ``x + flow(x)`` (bilinear, border replicated, rounded to
  uint8, as ``cv2.remap`` of OpenCV 5) and blended as ``cv2.blendLinear`` does:
  ``out = round((w * warped + (1 - w) * stylized) / (w + (1 - w) + 1e-5))``, half to even.
  One launch per frame, in order: frame i reads frame i-1's output. (The PyTorch engine
  runs the same steps as torch ops; the TensorRT engine does not launch it yet.)

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

/* cv2.resize INTER_LINEAR along one axis of n samples: half-pixel centres, clamped at the border. */
__device__ __forceinline__ void up_coord(int i, float scale, int n, int* i0, int* i1, float* f) {
    float s = fmaxf(__fadd_rn(__fmul_rn(i + 0.5f, scale), -0.5f), 0.0f);
    int a = min((int)s, n - 1);
    *i0 = a;
    *i1 = min(a + 1, n - 1);
    *f = __fadd_rn(s, -(float)a);
}

__device__ __forceinline__ float lerp2(const float* p, int stride, int pitch, int y0, int y1, int x0, int x1,
                                       float fy, float fx) {
    float top = __fadd_rn(__fmul_rn(p[(y0 * pitch + x0) * stride], 1.0f - fx),
                          __fmul_rn(p[(y0 * pitch + x1) * stride], fx));
    float bot = __fadd_rn(__fmul_rn(p[(y1 * pitch + x0) * stride], 1.0f - fx),
                          __fmul_rn(p[(y1 * pitch + x1) * stride], fx));
    return __fadd_rn(__fmul_rn(top, 1.0f - fy), __fmul_rn(bot, fy));
}

extern "C" {
__global__ void flow_blend_u8(const unsigned char* __restrict__ prev, const unsigned char* __restrict__ cur,
                              const float* __restrict__ flow, const float* __restrict__ weight,
                              unsigned char* __restrict__ dst, int h, int w, int sh, int sw,
                              float sy_scale, float sx_scale) {
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h) return;
    int ya, yb, xa, xb;
    float fy, fx;
    up_coord(y, sy_scale, sh, &ya, &yb, &fy);
    up_coord(x, sx_scale, sw, &xa, &xb, &fx);
    float u = lerp2(flow, 2, sw, ya, yb, xa, xb, fy, fx);
    float v = lerp2(flow + 1, 2, sw, ya, yb, xa, xb, fy, fx);
    float wt = lerp2(weight, 1, sw, ya, yb, xa, xb, fy, fx);
    /* the source position; corners outside the frame are clamped to its border (BORDER_REPLICATE) */
    float sx = fminf(fmaxf(__fadd_rn((float)x, u), -1e9f), 1e9f);
    float sy = fminf(fmaxf(__fadd_rn((float)y, v), -1e9f), 1e9f);
    int x0 = (int)floorf(sx), y0 = (int)floorf(sy);
    float ax = __fadd_rn(sx, -(float)x0), ay = __fadd_rn(sy, -(float)y0);
    int xl = min(max(x0, 0), w - 1), xr = min(max(x0 + 1, 0), w - 1);
    int yt = min(max(y0, 0), h - 1), yd = min(max(y0 + 1, 0), h - 1);
    const unsigned char *rt = prev + (size_t)yt * w * 3, *rd = prev + (size_t)yd * w * 3;
    size_t o = ((size_t)y * w + x) * 3;
    float keep = 1.0f - wt, den = __fadd_rn(__fadd_rn(wt, keep), 1e-5f);      /* cv2.blendLinear's weights */
    for (int c = 0; c < 3; ++c) {
        float top = __fadd_rn(__fmul_rn(rt[xl * 3 + c], 1.0f - ax), __fmul_rn(rt[xr * 3 + c], ax));
        float bot = __fadd_rn(__fmul_rn(rd[xl * 3 + c], 1.0f - ax), __fmul_rn(rd[xr * 3 + c], ax));
        float warped = floorf(__fadd_rn(__fadd_rn(__fmul_rn(top, 1.0f - ay), __fmul_rn(bot, ay)), 0.5f));
        float out = rintf(__fdiv_rn(__fadd_rn(__fmul_rn(wt, warped), __fmul_rn(keep, cur[o + c])), den));
        dst[o + c] = (unsigned char)fminf(fmaxf(out, 0.0f), 255.0f);
    }
}
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


def flow_blend_launch(prev, cur, flow, weight, dst, h: int, w: int, sh: int, sw: int) -> tuple[str, tuple, tuple]:
    """(kernel name, grid, args) for ``flow_blend_u8`` on one HxW frame: ``prev``/``cur``/``dst`` uint8 HxWx3
    (packed rows), ``flow`` float32 SHxSWx2 and ``weight`` float32 SHxSW (``streamer.temporal.FlowStep``).
    ``dst`` must not be ``prev`` (other threads still read it)."""
    i32, f32 = np.int32, np.float32
    args = (prev, cur, flow, weight, dst, i32(h), i32(w), i32(sh), i32(sw), f32(sh / h), f32(sw / w))
    return "flow_blend_u8", _grid(w, h), args


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


def _up_axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``up_coord`` for every output index: (first sample, second sample, fraction), as cv2.resize INTER_LINEAR."""
    f32 = np.float32
    s = np.maximum((np.arange(n_out, dtype=f32) + f32(0.5)) * f32(n_in / n_out) + f32(-0.5), f32(0))
    i0 = np.minimum(s.astype(np.int64), n_in - 1)
    return i0, np.minimum(i0 + 1, n_in - 1), s - i0.astype(f32)


def ref_flow_blend(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """NumPy twin of ``flow_blend_u8``: uint8 HxWx3 ``prev`` (the previous output) warped onto this frame with the
    SHxSWx2 backward ``flow`` and blended with uint8 HxWx3 ``cur`` by the SHxSW ``weight``; returns uint8 HxWx3.

    The definition of ``streamer.temporal.FlowSmoothing.blend`` (cv2.resize, cv2.remap, cv2.blendLinear) in
    float32 steps a kernel can repeat exactly: with OpenCV 5 the two agree but for a rare gray level where float
    rounding differs (OpenCV 4's remap rounds the position to 1/32 pixel, which adds a few more)."""
    f32 = np.float32
    h, w = cur.shape[:2]
    sh, sw = weight.shape
    ya, yb, fy = _up_axis(h, sh)
    xa, xb, fx = _up_axis(w, sw)
    fy, fx = fy[:, None, None], fx[None, :, None]
    small = np.dstack([flow.astype(f32), weight.astype(f32)])                   # u, v, weight
    top = small[ya][:, xa] * (f32(1) - fx) + small[ya][:, xb] * fx
    bot = small[yb][:, xa] * (f32(1) - fx) + small[yb][:, xb] * fx
    full = top * (f32(1) - fy) + bot * fy
    u, v, wt = full[..., 0], full[..., 1], full[..., 2:]
    sx = np.clip(np.arange(w, dtype=f32)[None, :] + u, f32(-1e9), f32(1e9))
    sy = np.clip(np.arange(h, dtype=f32)[:, None] + v, f32(-1e9), f32(1e9))
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    ax, ay = (sx - x0.astype(f32))[..., None], (sy - y0.astype(f32))[..., None]
    xl, xr = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    yt, yd = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    p = prev.astype(f32)
    top = p[yt, xl] * (f32(1) - ax) + p[yt, xr] * ax
    bot = p[yd, xl] * (f32(1) - ax) + p[yd, xr] * ax
    warped = np.floor(top * (f32(1) - ay) + bot * ay + f32(0.5))
    keep = f32(1) - wt
    out = np.rint((wt * warped + keep * cur.astype(f32)) / (wt + keep + f32(1e-5)))
    return np.clip(out, 0, 255).astype(np.uint8)
