"""The uint8 <-> NCHW and temporal-blend kernels: NumPy twins checked on the CPU, the CUDA source on a GPU.

The flow warp + blend twin is checked against its formula written out per pixel and against the CPU smoother
(``streamer.temporal.FlowSmoothing``) on real frames; where nvcc is installed, the CUDA source is compiled to
PTX on the CPU too.

The GPU tests compile ``engines.cuda_kernels.KERNEL_SOURCE`` with pycuda (nvcc) and with
CuPy (NVRTC), whichever is installed, and compare every output element with the NumPy
twin on fresh random frames, after poisoning the output buffers.
"""
from __future__ import annotations

import math
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from engines import cuda_kernels as ck
from streamer.sample_media import panning_frames
from streamer.temporal import EmaSmoothing, FlowSmoothing

# OpenCV 5's remap samples at the exact position (as the kernel does); OpenCV 4's rounds it to 1/32 pixel first.
FLOW_TOL = 1 if int(cv2.__version__.split(".")[0]) >= 5 else 3


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


def flow_blend_by_hand(prev, cur, flow, weight):
    """``flow_blend_u8`` written out per pixel in float32 scalars (no array ops): upsample flow and weight
    (half-pixel centres, clamped), sample ``prev`` bilinearly at x + flow (corners clamped), round half up, then
    round((w * warped + (1 - w) * cur) / (w + (1 - w) + 1e-5)) half to even."""
    f32 = np.float32
    h, w = cur.shape[:2]
    sh, sw = weight.shape

    def up(i, n_out, n_in):
        s = max(f32(i + 0.5) * f32(n_in / n_out) + f32(-0.5), f32(0))
        a = min(int(s), n_in - 1)
        return a, min(a + 1, n_in - 1), s - f32(a)

    def lerp(get, y0, y1, x0, x1, fy, fx):
        top = get(y0, x0) * (f32(1) - fx) + get(y0, x1) * fx
        bot = get(y1, x0) * (f32(1) - fx) + get(y1, x1) * fx
        return top * (f32(1) - fy) + bot * fy

    out = np.zeros_like(cur)
    for y in range(h):
        ya, yb, fy = up(y, h, sh)
        for x in range(w):
            xa, xb, fx = up(x, w, sw)
            u = lerp(lambda j, i: f32(flow[j, i, 0]), ya, yb, xa, xb, fy, fx)
            v = lerp(lambda j, i: f32(flow[j, i, 1]), ya, yb, xa, xb, fy, fx)
            wt = lerp(lambda j, i: f32(weight[j, i]), ya, yb, xa, xb, fy, fx)
            sx, sy = min(max(f32(x) + u, f32(-1e9)), f32(1e9)), min(max(f32(y) + v, f32(-1e9)), f32(1e9))
            x0, y0 = math.floor(sx), math.floor(sy)
            ax, ay = sx - f32(x0), sy - f32(y0)
            xl, xr = min(max(x0, 0), w - 1), min(max(x0 + 1, 0), w - 1)
            yt, yd = min(max(y0, 0), h - 1), min(max(y0 + 1, 0), h - 1)
            keep = f32(1) - wt
            for c in range(3):
                warped = f32(math.floor(lerp(lambda j, i: f32(prev[j, i, c]), yt, yd, xl, xr, ay, ax) + f32(0.5)))
                o = np.rint((wt * warped + keep * f32(cur[y, x, c])) / (wt + keep + f32(1e-5)))
                out[y, x, c] = int(min(max(o, f32(0)), f32(255)))
    return out


def test_ref_flow_blend_matches_the_formula_pixel_by_pixel():
    rng = np.random.default_rng(7)
    prev, cur = frames_u8(rng, 2, 9, 13)
    flow = rng.uniform(-5, 5, (4, 6, 2)).astype(np.float32)            # some sources outside the frame
    weight = rng.random((4, 6), dtype=np.float32)
    got = ck.ref_flow_blend(prev, cur, flow, weight)
    assert got.dtype == np.uint8 and got.shape == (9, 13, 3)
    np.testing.assert_array_equal(got, flow_blend_by_hand(prev, cur, flow, weight))
    # no weight: the current frame exactly; no flow and full weight: the previous output exactly
    np.testing.assert_array_equal(ck.ref_flow_blend(prev, cur, flow, np.zeros_like(weight)), cur)
    np.testing.assert_array_equal(ck.ref_flow_blend(prev, cur, np.zeros_like(flow), np.ones_like(weight)), prev)


@pytest.mark.parametrize("size", [(160, 120), (97, 61)])
def test_ref_flow_blend_matches_the_cpu_flow_smoother_on_real_frames(size):
    """The twin and FlowSmoothing.blend (cv2.resize, cv2.remap, cv2.blendLinear) on the flow and weights that
    FlowSmoothing.estimate finds on a real pan; the twin's output feeds the next frame, as on the device."""
    w, h = size
    frames = panning_frames(w, h, 40)[:8]
    smoother = FlowSmoothing()
    prev = None
    blended = 0
    for f in frames:
        stylized = cv2.GaussianBlur(255 - f, (0, 0), 1.0)      # any picture that is not the input
        step = smoother.estimate(f)
        if step is None:
            prev = stylized
            continue
        want = smoother.blend(step, prev, stylized)
        got = ck.ref_flow_blend(prev, stylized, step.flow, step.weight)
        d = np.abs(got.astype(int) - want)
        assert d.max() <= FLOW_TOL and (d == 0).mean() > (0.999 if FLOW_TOL == 1 else 0.95), (d.max(), (d == 0).mean())
        assert not np.array_equal(got, stylized)              # it did blend
        blended += 1
        prev = got
    assert blended == len(frames) - 1
    # estimate + blend is what FlowSmoothing's __call__ does
    again, calls = FlowSmoothing(), []
    for f in frames:
        calls.append(again(f, cv2.GaussianBlur(255 - f, (0, 0), 1.0)))
    split, sm, prev = [], FlowSmoothing(), None
    for f in frames:
        y = cv2.GaussianBlur(255 - f, (0, 0), 1.0)
        step = sm.estimate(f)
        prev = y if step is None else sm.blend(step, prev, y)
        split.append(prev)
    for a, b in zip(calls, split):
        np.testing.assert_array_equal(a, b)


def test_flow_blend_launch_spec():
    name, grid, args = ck.flow_blend_launch("p", "c", "f", "w", "d", 405, 720, 108, 192)
    assert name == "flow_blend_u8" and grid == (23, 51, 1) and len(args) == 11
    assert args[5:9] == (405, 720, 108, 192) and args[9] == np.float32(108 / 405) and args[10] == np.float32(192 / 720)


def test_kernel_source_compiles_to_ptx_where_nvcc_is_installed(tmp_path):
    """No GPU needed: nvcc compiles the source that pycuda (nvcc) and CuPy (NVRTC) build on a GPU machine."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not installed (the GPU tests compile the kernels on a GPU machine)")
    src, ptx = tmp_path / "kernels.cu", tmp_path / "kernels.ptx"
    src.write_text(ck.KERNEL_SOURCE)
    r = subprocess.run([nvcc, "-ptx", "-O3", "-o", str(ptx), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    text = ptx.read_text()
    for name in ("flow_blend_u8", "u8hwc_to_nchw_f32", "u8hwc_to_nchw_f16", "nchw_to_u8hwc_f32", "nchw_to_u8hwc_f16"):
        assert f".entry {name}(" in text, name
    body = text[text.index(".entry flow_blend_u8("):]
    body = body[:body.index("\n}\n")]
    assert "fma." not in body                  # every product and sum rounded on its own, as in the twin
    assert "div.rn.f32" in body and "cvt.rni.f32.f32" in body     # IEEE division, round half to even


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


@pytest.mark.gpu
@pytest.mark.parametrize("size", [(45, 77, 12, 20), (90, 160, 34, 60)])
def test_gpu_flow_blend_matches_numpy(gpu, size):
    h, w, sh, sw = size
    rng = np.random.default_rng()
    prev, cur = frames_u8(rng, 2, h, w)
    flow = rng.uniform(-6, 6, (sh, sw, 2)).astype(np.float32)
    weight = rng.random((sh, sw), dtype=np.float32)
    dst = gpu.empty(h * w * 3)
    gpu.launch(ck.flow_blend_launch(gpu.to_dev(prev), gpu.to_dev(cur), gpu.to_dev(flow), gpu.to_dev(weight), dst,
                                    h, w, sh, sw))
    got = gpu.get(dst, (h, w, 3), np.uint8)
    want = ck.ref_flow_blend(prev, cur, flow, weight)
    assert np.abs(got.astype(int) - want).max() <= 1 and (got == want).mean() > 0.999
