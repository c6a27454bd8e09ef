"""Image metrics in NumPy/OpenCV (no torch): SSIM, PSNR, texture energy. Images are HxWx3 float in 0..1 or uint8."""
from __future__ import annotations

import cv2
import numpy as np


def _float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) over the channels, on 0..1 data."""
    a, b = _float(a), _float(b)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    va, vb, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(s.mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((_float(a) - _float(b)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def downscale(img: np.ndarray, factor: int = 4) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (w // factor, h // factor), interpolation=cv2.INTER_AREA)


def texture_energy(img: np.ndarray) -> float:
    """Mean absolute Laplacian of the grey image: falls when an output is blurred."""
    gray = _float(img).mean(axis=2)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_64F, ksize=1)).mean())


def lab(img: np.ndarray) -> np.ndarray:
    """CIE Lab (L 0..100) of a uint8 RGB image."""
    return cv2.cvtColor(_float(img).astype(np.float32), cv2.COLOR_RGB2LAB)


def color_error(a: np.ndarray, b: np.ndarray, factor: int = 8) -> float:
    """Mean CIE76 delta E between the 8x-downscaled images: palette and colour layout, not texture."""
    return float(np.linalg.norm(lab(downscale(a, factor)) - lab(downscale(b, factor)), axis=2).mean())


def reinhard_transfer(content: np.ndarray, style: np.ndarray) -> np.ndarray:
    """Reinhard et al. 2001 colour transfer: the content's Lab mean and std matched to the style's, per channel.

    The baseline every style score is reported next to: no network, about a millisecond, and it already moves a
    photo part of the way towards a painting in the teacher's style space."""
    c, s = lab(content), lab(style)
    out = (c - c.mean((0, 1))) / (c.std((0, 1)) + 1e-6) * s.std((0, 1)) + s.mean((0, 1))
    rgb = cv2.cvtColor(out.astype(np.float32), cv2.COLOR_LAB2RGB)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def edge_fscore(out: np.ndarray, photo: np.ndarray, tolerance: int = 2) -> float:
    """F-score of Canny edges at half scale, output against the photo: are object outlines still readable?

    An edge counts as matched when the other image has one within `tolerance` pixels."""
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
    teacher's own output: 1.0 = as stylized as the teacher, 0 = the photo itself (vectors from the style predictor)."""
    d = lambda v: float(np.linalg.norm(np.ravel(v) - np.ravel(e_style)))  # noqa: E731
    return (d(e_photo) - d(e_out)) / max(d(e_photo) - d(e_teacher), 1e-6)
