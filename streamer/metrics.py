"""Quality measures, one definition each (NumPy/OpenCV only, no torch): what `distill eval` and the benchmarks report.

Images are HxWx3 RGB, uint8 0..255 or float 0..1; every measure works on 0..1 pixels (uint8 is divided by 255).
Why each measure exists:

- ``ssim``: structural similarity (Wang et al. 2004) with ONE window, 11x11 Gaussian, sigma 1.5, K = 0.01 / 0.03,
  borders reflected (OpenCV's BORDER_REFLECT_101). The student is judged by SSIM against the teacher *at quarter
  scale* (``ssim(downscale(a), downscale(b))``): the teacher's fine texture is not stable under 2 px shifts (its
  output against itself shifted by 2 px scores only about 0.34 at full resolution), so no student can match it
  pixel for pixel; at quarter scale the colours and shapes a viewer recognizes as "the teacher's look" are stable.
  `distill.losses.ssim_downscaled_loss` is this measure made differentiable (same window and borders; a test
  checks the training term equals 1 - this). The temporal benchmark uses it for "does smoothing keep the look".
- ``psnr`` / ``psnr_from_mse``: 10 log10(1 / MSE) on 0..1 pixels, the classic fidelity number; full-resolution
  PSNR against the teacher next to the trivial baseline, and the temporal benchmark's drift PSNR (masked MSE
  between a smoothed output and the per-frame stylization of the same frame).
- ``texture_energy``: mean |4-neighbour Laplacian| of the grey (mean of RGB) image, the guard against a blurry
  student: a pixel or SSIM loss alone averages the teacher's unstable textures into blur, which scores well on
  SSIM/4 and badly here. Same kernel and grey as `distill.losses.texture_energy` (the training term); reported
  as a ratio to the teacher's.
- ``foreign_spectral_peak``: a regular pattern the reference does not have (a crosshatch at a fixed pixel period on
  flat walls and skies). Texture energy rewards any high-frequency energy, and a periodic pattern is the cheapest
  way to get it, so a student can score well there and still look like a woven mat; this measure compares where
  in frequency the detail energy sits, whatever its phase, so the teacher against itself shifted by 3 px scores
  about 3-5 and a crosshatch hundreds to thousands.
- ``lab`` / ``color_error``: mean CIE76 delta E at 1/8 scale, palette and colour layout without texture.
- ``reinhard_transfer``: not a measure but the no-network baseline (Reinhard et al. 2001) every style score is
  reported next to.
- ``edge_fscore``: Canny-edge F-score against the photo at half scale: are object outlines still readable?
- ``style_score``: the "how stylized" yardstick, measured in the teacher's own style space (vectors from the
  teacher's style predictor): 0 = as far from the style as the photo, 1 = as close as the teacher's output.
  SSIM against the teacher cannot say this: a blurred or colour-transferred photo can score well on SSIM/4.
- ``warping_error`` (E_warp) with ``visible_masks``, ``pair_warping_error`` and ``masked_mse``: temporal
  flicker, see the section below.
"""
from __future__ import annotations

import cv2
import numpy as np

from streamer.warp import backward_warp, occlusion_mask

SSIM_WINDOW = 11          # Gaussian window side (Wang et al. 2004)
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def to_unit(img: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 0..255 -> float 0..1 (float input is passed through, cast to ``dtype``)."""
    if img.dtype == np.uint8:
        return img.astype(dtype) * dtype(1.0 / 255.0)
    return img.astype(dtype, copy=False)


# --- fidelity --------------------------------------------------------------------------------------

def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over pixels and channels (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K = 0.01, 0.03,
    dynamic range 1), borders reflected (BORDER_REFLECT_101). 1 = identical; negative = anti-correlated."""
    a, b = to_unit(a, np.float64), to_unit(b, np.float64)
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    blur = lambda x: cv2.GaussianBlur(x, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA,  # noqa: E731
                                      borderType=cv2.BORDER_REFLECT_101)
    mu_a, mu_b = blur(a), blur(b)
    va, vb, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(s.mean())


def psnr_from_mse(mse: float) -> float:
    """10 log10(1 / mse) for an MSE of 0..1 pixels; inf for mse == 0."""
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB on 0..1 pixels (peak 1)."""
    return psnr_from_mse(float(np.mean((to_unit(a, np.float64) - to_unit(b, np.float64)) ** 2)))


def downscale(img: np.ndarray, factor: int = 4) -> np.ndarray:
    """Area-average downscale by an integer factor (the quarter-scale view SSIM/4 is measured on)."""
    h, w = img.shape[:2]
    return cv2.resize(img, (w // factor, h // factor), interpolation=cv2.INTER_AREA)


def texture_energy(img: np.ndarray) -> float:
    """Mean absolute 4-neighbour Laplacian of the grey (mean of RGB) image, 0..1 pixels: falls when an output is
    blurred."""
    gray = to_unit(img, np.float64).mean(axis=2)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_64F, ksize=1)).mean())


def detail_spectrum(img: np.ndarray) -> np.ndarray:
    """Power spectrum of the grey image's detail (a 4 px Gaussian high-pass, Hann window), normalized to sum 1,
    with the lowest frequencies (radius < 6 bins) removed: where the texture's energy sits in frequency."""
    g = to_unit(img).mean(axis=2)
    g = g - cv2.GaussianBlur(g, (0, 0), 4)
    win = np.outer(np.hanning(g.shape[0]), np.hanning(g.shape[1])).astype(np.float32)
    power = np.abs(np.fft.fftshift(np.fft.fft2(g * win))) ** 2
    h, w = power.shape
    yy, xx = np.mgrid[:h, :w]
    power[np.hypot(yy - h / 2, xx - w / 2) < 6] = 0
    return (power / max(power.sum(), 1e-12)).astype(np.float32)


def foreign_spectral_peak(out: np.ndarray, ref: np.ndarray) -> float:
    """The largest ratio of ``out``'s detail spectrum to ``ref``'s (both lightly smoothed): 1-5 when ``out`` puts
    its texture energy where ``ref`` does, hundreds when ``out`` has a periodic pattern ``ref`` lacks."""
    s, t = detail_spectrum(out), detail_spectrum(ref)
    eps = 0.01 / s.size
    return float((cv2.GaussianBlur(s, (0, 0), 1) / (cv2.GaussianBlur(t, (0, 0), 3) + eps)).max())


# --- colour, outlines, stylization -----------------------------------------------------------------

def lab(img: np.ndarray) -> np.ndarray:
    """CIE Lab (D65, sRGB gamma; L 0..100) of an RGB image, float32."""
    return cv2.cvtColor(to_unit(img, np.float32), cv2.COLOR_RGB2LAB)


def color_error(a: np.ndarray, b: np.ndarray, factor: int = 8) -> float:
    """Mean CIE76 delta E between the 8x-downscaled images: palette and colour layout, not texture."""
    return float(np.linalg.norm(lab(downscale(a, factor)) - lab(downscale(b, factor)), axis=2).mean())


def reinhard_transfer(content: np.ndarray, style: np.ndarray) -> np.ndarray:
    """Reinhard et al. 2001 colour transfer: the content's Lab mean and std matched to the style's, per channel.

    The baseline every style score is reported next to: no network, about a millisecond, and it already moves a
    photo part of the way towards a painting in the teacher's style space. Returns uint8 RGB."""
    c, s = lab(content), lab(style)
    out = (c - c.mean((0, 1))) / (c.std((0, 1)) + 1e-6) * s.std((0, 1)) + s.mean((0, 1))
    rgb = cv2.cvtColor(out.astype(np.float32), cv2.COLOR_LAB2RGB)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def edge_fscore(out: np.ndarray, photo: np.ndarray, tolerance: int = 2) -> float:
    """F-score of Canny edges at half scale, output against the photo: are object outlines still readable?

    uint8 RGB input. An edge counts as matched when the other image has one within `tolerance` pixels (of the
    half-scale image). 1 = the same outlines; 0 = no edge in common (e.g. a blank output)."""
    def edges(img: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(downscale(img, 2), cv2.COLOR_RGB2GRAY)
        return cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 1.0), 50, 150) > 0

    eo, ep = edges(out), edges(photo)
    kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    near_o = cv2.dilate(eo.astype(np.uint8), kernel) > 0
    near_p = cv2.dilate(ep.astype(np.uint8), kernel) > 0
    precision = (eo & near_p).sum() / max(eo.sum(), 1)
    recall = (ep & near_o).sum() / max(ep.sum(), 1)
    return float(2 * precision * recall / max(precision + recall, 1e-9))


def style_score(e_photo: np.ndarray, e_out: np.ndarray, e_teacher: np.ndarray, e_style: np.ndarray) -> float:
    """How far an output moved from the photo towards the style in the teacher's style space, relative to the
    teacher's own output: 1.0 = as stylized as the teacher, 0 = the photo itself (vectors from the style predictor).

    (d(photo) - d(out)) / (d(photo) - d(teacher)), d = Euclidean distance to the style image's vector."""
    d = lambda v: float(np.linalg.norm(np.ravel(v) - np.ravel(e_style)))  # noqa: E731
    return (d(e_photo) - d(e_out)) / max(d(e_photo) - d(e_teacher), 1e-6)


# --- temporal: warping error (Lai et al. 2018) -----------------------------------------------------
#
# E_warp measures flicker: how much an output frame O_t differs from the previous output O_{t-1} carried along
# the motion of the scene,
#
#     E_warp(O_t, O_{t-1}) = sum_x M_t(x) |O_t(x) - W(O_{t-1})(x)|^2 / (C sum_x M_t(x))   (0..1 pixels, C channels)
#
# and a clip's E_warp is the mean over its consecutive pairs. W is `streamer.warp.backward_warp` with the
# BACKWARD flow of the INPUT frames, from frame t to frame t-1 (O_{t-1} sampled at x + flow(x)): the exact flow for
# synthetic clips (benchmarks/synthetic_motion.py), DIS optical flow (medium preset) on the input frames for real
# footage. The flow comes from the inputs, never the outputs, so a stylization whose texture crawls or pops
# independently of the scene motion scores high even where it is self-consistent. A static, perfectly stable
# video scores 0; the input frames themselves score only their noise and resampling error.
# M_t is the non-occlusion mask (`visible_masks`): pixels of frame t that are visible in frame t-1, i.e. NOT
# excluded by the forward-backward check of Ruder et al. 2016 as used by Lai et al. 2018 (`streamer.warp.
# occlusion_mask`: flow inconsistency, motion boundaries, and - our addition - points that warp from outside the
# frame), so disocclusions and newly entering content, which no method can predict, do not count.

def visible_masks(flows_back, flows_fwd) -> list[np.ndarray | None]:
    """Per frame t >= 1, True where the pixel of frame t is visible in frame t-1 (the non-occlusion mask M_t).

    ``flows_back[t]``: flow from frame t to t-1; ``flows_fwd[t]``: flow from t-1 to t; entry 0 is None."""
    return [None if b is None else ~occlusion_mask(b, f) for b, f in zip(flows_back, flows_fwd)]


def pair_warping_error(cur: np.ndarray, prev: np.ndarray, flow_back: np.ndarray, visible: np.ndarray) -> float:
    """E_warp of one pair: sum M (O_t - W(O_{t-1}))^2 / sum M over pixels and channels, 0..1 pixels.

    With no visible pixel at all, the unmasked mean (so a pair is never silently dropped)."""
    cur, prev = to_unit(cur), to_unit(prev)
    diff = cur - backward_warp(prev, flow_back)
    m = visible.astype(np.float32)
    n = float(m.sum()) * (diff.shape[2] if diff.ndim == 3 else 1)
    if diff.ndim == 3:
        m = m[..., None]
    if n == 0:
        return float(np.mean(diff ** 2))
    return float(np.sum(m * diff * diff) / n)


def warping_error(outputs, flows_back, visible) -> tuple[float, list[float]]:
    """E_warp of a clip: the mean over consecutive pairs, and the per-pair values (for frames 1..T-1)."""
    errs = [pair_warping_error(outputs[t], outputs[t - 1], flows_back[t], visible[t]) for t in range(1, len(outputs))]
    return float(np.mean(errs)), errs


def masked_mse(a: np.ndarray, b: np.ndarray, visible: np.ndarray) -> float:
    """Mean squared difference (0..1 pixels) over the visible pixels (the temporal benchmark's drift)."""
    d = to_unit(a) - to_unit(b)
    return float(np.mean((d * d)[visible]))
