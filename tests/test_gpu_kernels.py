"""The uint8 <-> NCHW and temporal-blend kernels: NumPy twins checked on the CPU, the CUDA source on a GPU.

The GPU tests compile ``engines.cuda_kernels.KERNEL_SOURCE`` with pycuda (nvcc) and with
CuPy (NVRTC), whichever is installed, and compare every output element with the NumPy
twin on fresh random frames, after poisoning the output buffers.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from engines import cuda_kernels as ck
from streamer.temporal import EmaSmoothing


def frames_u8(rng, n, h, w):
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- NumPy twins (CPU)

def test_ref_to_nchw_same_size_is_scaled_transpose_with_reflect_pad():
    rng = np.random.default_rng(1)
    f = frames_u8(rng, 2, 13, 21)
    out = ck.ref_to_nchw(f, 13, 21, 16, 24)
    want = np.pad(f.astype(np.float32) / np.float32(255), ((0, 0), (0, 3), (0, 3), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(out, want.transpose(0, 3, 1, 2))
    assert out.dtype == np.float32 and out.flags.c_contiguous


def test_ref_to_nchw_bgr_matches_opencv_conversion_and_half_output():
    rng = np.random.default_rng(2)
    bgr = frames_u8(rng, 2, 8, 12)
    rgb = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in bgr])      # OpenCV decides what BGR means
    want = rgb.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255)
    np.testing.assert_array_equal(ck.ref_to_nchw(bgr, 8, 12, 8, 12, bgr=True), want)
    half = ck.ref_to_nchw(bgr, 8, 12, 8, 12, bgr=True, dtype=np.float16)
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, want.astype(np.float16))
    # with a resize and a pad too: OpenCV's conversion, then its bilinear resize, then NumPy's reflect pad
    img = cv2.GaussianBlur(frames_u8(rng, 1, 90, 160)[0], (0, 0), 3)
    ours = ck.ref_to_nchw(img[None], 45, 80, 48, 80, bgr=True)[0].transpose(1, 2, 0) * 255
    theirs = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32), (80, 45),
                        interpolation=cv2.INTER_LINEAR)
    assert np.abs(ours - np.pad(theirs, ((0, 3), (0, 0), (0, 0)), mode="reflect")).max() < 0.02


def test_ref_resize_matches_opencv_bilinear_and_keeps_constants():
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(frames_u8(rng, 1, 90, 160)[0], (0, 0), 3)
    for rh, rw in ((45, 80), (120, 200), (72, 128)):
        ours = ck.ref_to_nchw(img[None], rh, rw, rh, rw)[0].transpose(1, 2, 0) * 255
        theirs = cv2.resize(img.astype(np.float32), (rw, rh), interpolation=cv2.INTER_LINEAR)
        assert np.abs(ours - theirs).max() < 0.02, (rh, rw)
    flat = np.full((1, 30, 40, 3), 77, np.uint8)
    np.testing.assert_allclose(ck.ref_to_nchw(flat, 16, 24, 16, 24), 77 / 255, rtol=1e-6)


def test_ref_to_u8hwc_rounds_half_up_clips_and_crops():
    x = np.array([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 2.0], np.float32)
    nchw = np.broadcast_to(x, (1, 3, 2, 7)).copy()
    out, state = ck.ref_to_u8hwc(nchw, 1, 7)
    assert state is None and out.shape == (1, 1, 7, 3)
    assert out[0, 0, :, 0].tolist() == [0, 0, 1, 2, 128, 255, 255]


def test_ref_ema_matches_streamer_temporal_bit_for_bit():
    rng = np.random.default_rng(4)
    seq = rng.random((6, 3, 10, 12), dtype=np.float32)
    smoother = EmaSmoothing(alpha=0.7)
    state = np.zeros((10, 12, 3), np.float32)
    for i in range(6):
        plain, _ = ck.ref_to_u8hwc(seq[i:i + 1], 10, 12)
        want = smoother(None, plain[0])
        got, state = ck.ref_to_u8hwc(seq[i:i + 1], 10, 12, prev=state, alpha=0.7, first=i == 0)
        np.testing.assert_array_equal(got[0], want)


def ema_by_hand(seq: np.ndarray, h: int, w: int, alpha: float, prev: np.ndarray, first: bool):
    """The kernel's formula written out per element in float32 scalars, one frame after another (no array ops):
    v = floor(clip(x, 0, 1) * 255 + 0.5); p = v on a first frame, else a*v + (1-a)*p; out = trunc(clip(p + 0.5))."""
    f32 = np.float32
    a, b = f32(alpha), f32(1.0 - alpha)
    n = seq.shape[0]
    out, state = np.zeros((n, h, w, 3), np.uint8), np.zeros((h, w, 3), np.float32)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                p = f32(prev[y, x, c])
                for i in range(n):
                    s = min(max(f32(seq[i, c, y, x]), f32(0.0)), f32(1.0))
                    v = f32(math.floor(s * f32(255.0) + f32(0.5)))
                    p = v if (first and i == 0) else a * v + b * p
                    out[i, y, x, c] = int(min(max(p + f32(0.5), f32(0.0)), f32(255.0)))
                state[y, x, c] = p
    return out, state


@pytest.mark.parametrize("first", [True, False])
def test_ref_ema_over_a_batch_matches_the_formula_frame_by_frame(first):
    rng = np.random.default_rng(5)
    seq = (rng.random((5, 3, 8, 9), dtype=np.float32) * 1.2 - 0.1).astype(np.float32)   # some outside 0..1
    prev = (rng.random((8, 9, 3), dtype=np.float32) * 255).astype(np.float32)
    batch, state = ck.ref_to_u8hwc(seq, 8, 9, prev=prev.copy(), alpha=0.35, first=first)
    want, want_state = ema_by_hand(seq, 8, 9, 0.35, prev, first)
    np.testing.assert_array_equal(batch, want)
    np.testing.assert_array_equal(state, want_state)


def test_launch_specs_pick_the_dtype_variant_and_refuse_double_reflection():
    name, grid, args = ck.to_nchw_launch("src", "dst", 2, 1080, 1920, 5760, 1080, 1920, 1088, 1920, False, np.float16)
    assert name == "u8hwc_to_nchw_f16" and grid == (60, 136, 2) and len(args) == 12
    name, grid, _ = ck.to_u8hwc_launch("src", "dst", 0, 4, 1080, 1920, 1088, 1920, 5760, True, np.float32, 0.5)
    assert name == "nchw_to_u8hwc_f32" and grid == (60, 135, 1)
    with pytest.raises(ValueError, match="reflection"):
        ck.to_nchw_launch("s", "d", 1, 4, 4, 12, 4, 4, 16, 16, False, np.float32)


# ---------------------------------------------------------------- the CUDA source on a GPU

def _pycuda_launcher():
    try:
        import pycuda.driver as cuda
    except ImportError:
        pytest.skip("pycuda not installed (the device check builds it from its sdist)")
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            pytest.skip("no CUDA GPU (pycuda sees no device)")
    except cuda.Error as exc:
        pytest.skip(f"no CUDA GPU (CUDA driver error: {exc})")
    ctx = cuda.Device(0).retain_primary_context()
    ctx.push()
    kernels = ck.PycudaKernels()
    stream = cuda.Stream()

    class Launcher:
        def to_dev(self, arr):
            d = cuda.mem_alloc(max(arr.nbytes, 1))
            cuda.memcpy_htod(d, np.ascontiguousarray(arr))
            return d

        def empty(self, nbytes):
            d = cuda.mem_alloc(nbytes)
            cuda.memset_d8(d, 0xA5, nbytes)         # poison: every element must be written
            return d

        def get(self, d, shape, dtype):
            out = np.empty(shape, dtype)
            cuda.memcpy_dtoh(out, d)
            return out

        null = np.uintp(0)

        def launch(self, spec):
            kernels.launch(spec, stream)
            stream.synchronize()

        def close(self):
            ctx.pop()

    return Launcher()


def _cupy_launcher():
    cp = pytest.importorskip("cupy", reason="cupy not installed")
    try:
        if cp.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no CUDA GPU (cupy sees no device)")
    except Exception as exc:
        pytest.skip(f"no CUDA GPU ({exc})")
    module = cp.RawModule(code=ck.KERNEL_SOURCE, options=("--std=c++17",))

    class Launcher:
        def to_dev(self, arr):
            return cp.asarray(np.ascontiguousarray(arr))

        def empty(self, nbytes):
            return cp.full(nbytes, 0xA5, dtype=cp.uint8)

        def get(self, d, shape, dtype):
            return cp.asnumpy(d).view(dtype).reshape(shape)

        null = np.uintp(0)

        def launch(self, spec):
            name, grid, args = spec
            module.get_function(name)(grid, ck.BLOCK, args)
            cp.cuda.runtime.deviceSynchronize()

        def close(self):
            pass

    return Launcher()


@pytest.fixture(params=["pycuda", "cupy"])
def gpu(request):
    launcher = _pycuda_launcher() if request.param == "pycuda" else _cupy_launcher()
    yield launcher
    launcher.close()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("size", [(2, 37, 61, 37, 61), (1, 90, 160, 45, 80), (3, 64, 48, 100, 75)])
@pytest.mark.parametrize("bgr", [False, True])
def test_gpu_to_nchw_matches_numpy(gpu, dtype, size, bgr):
    n, h, w, rh, rw = size
    oh, ow = -(-rh // 8) * 8, -(-rw // 8) * 8
    rng = np.random.default_rng()
    f = frames_u8(rng, n, h, w)
    src = gpu.to_dev(f)
    out_bytes = n * 3 * oh * ow * np.dtype(dtype).itemsize
    dst = gpu.empty(out_bytes)
    gpu.launch(ck.to_nchw_launch(src, dst, n, h, w, w * 3, rh, rw, oh, ow, bgr, dtype))
    got = gpu.get(dst, (n, 3, oh, ow), dtype).astype(np.float32)
    want = ck.ref_to_nchw(f, rh, rw, oh, ow, bgr=bgr, dtype=dtype).astype(np.float32)
    tol = 1e-6 if dtype == np.float32 else 1e-3
    np.testing.assert_allclose(got, want, atol=tol, rtol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("bgr", [False, True])
def test_gpu_to_u8hwc_and_ema_match_numpy(gpu, dtype, bgr):
    n, h, w, ih, iw = 3, 45, 77, 48, 80
    rng = np.random.default_rng()
    state_ref = None
    state = gpu.to_dev(np.zeros((h, w, 3), np.float32))
    for step in range(3):
        x = (rng.random((n, 3, ih, iw), dtype=np.float32) * 1.2 - 0.1).astype(dtype)
        src, dst = gpu.to_dev(x), gpu.empty(n * h * w * 3)
        plain_dst = gpu.empty(n * h * w * 3)
        gpu.launch(ck.to_u8hwc_launch(src, plain_dst, gpu.null, n, h, w, ih, iw, w * 3, bgr, dtype))
        plain, _ = ck.ref_to_u8hwc(x, h, w, bgr=bgr)
        np.testing.assert_array_equal(gpu.get(plain_dst, (n, h, w, 3), np.uint8), plain)
        gpu.launch(ck.to_u8hwc_launch(src, dst, state, n, h, w, ih, iw, w * 3, bgr, dtype, 0.35, step == 0))
        want, state_ref = ck.ref_to_u8hwc(x, h, w, bgr=bgr,
                                          prev=np.zeros((h, w, 3), np.float32) if state_ref is None else state_ref,
                                          alpha=0.35, first=step == 0)
        got = gpu.get(dst, (n, h, w, 3), np.uint8)
        assert np.abs(got.astype(int) - want).max() <= 1 and (got == want).mean() > 0.999
