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
