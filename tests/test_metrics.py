"""streamer.metrics against closed-form cases and independent reference implementations (NumPy only, no data)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamer.metrics import (SSIM_SIGMA, SSIM_WINDOW, color_error, downscale, edge_fscore, foreign_spectral_peak, lab,
                              masked_mse,
                              pair_warping_error, psnr, psnr_from_mse, reinhard_transfer, ssim, style_score,
                              texture_energy, visible_masks, warping_error)
from streamer.sample_media import painting


def smooth_image(seed: int, shape=(48, 40, 3), sigma: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random(shape), (0, 0), sigma)
    return (img - img.min()) / (img.max() - img.min())


def shapes_picture(h: int = 128, w: int = 160) -> np.ndarray:
    """uint8 RGB with clear outlines: rectangles and a disc on a grey background."""
    img = np.full((h, w, 3), 120, np.uint8)
    cv2.rectangle(img, (10, 12), (60, 70), (230, 40, 40), -1)
    cv2.rectangle(img, (80, 30), (140, 100), (20, 200, 60), -1)
    cv2.circle(img, (50, 100), 18, (250, 250, 250), -1)
    return img


# --- SSIM ------------------------------------------------------------------------------------------

def reference_ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """Wang et al. 2004 written out: explicit Gaussian window, mirror padding without repeating the edge pixel."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x * x / (2 * sigma * sigma))
    win = np.outer(g, g) / np.outer(g, g).sum()
    r = size // 2

    def blur(img: np.ndarray) -> np.ndarray:
        padded = np.pad(img, ((r, r), (r, r)), mode="reflect")
        patches = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
        return np.einsum("ijkl,kl->ij", patches, win)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    maps = []
    for ch in range(a.shape[2]):
        p, q = a[..., ch], b[..., ch]
        mp, mq = blur(p), blur(q)
        vp, vq, cov = blur(p * p) - mp * mp, blur(q * q) - mq * mq, blur(p * q) - mp * mq
        maps.append(((2 * mp * mq + c1) * (2 * cov + c2)) / ((mp * mp + mq * mq + c1) * (vp + vq + c2)))
    return float(np.mean(maps))


def test_ssim_window_is_the_documented_11x11_gaussian():
    assert (SSIM_WINDOW, SSIM_SIGMA) == (11, 1.5)
    a = smooth_image(0)
    b = np.clip(a + np.random.default_rng(1).normal(0, 0.1, a.shape), 0, 1)
    expected = reference_ssim(a, b)
    assert 0.1 < expected < 0.95
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)
    assert ssim(a, b) != pytest.approx(reference_ssim(a, b, size=7), abs=1e-4)   # the old 7x7 window differs


def test_ssim_closed_form_cases():
    a = smooth_image(2)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, 1.0 - a) < 0                                   # inverted structure: anti-correlated
    # constant images: zero variance, so SSIM is the luminance term (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    c1 = 0.01 ** 2
    assert ssim(np.full((20, 20, 3), 0.5), np.full((20, 20, 3), 0.25)) == pytest.approx(
        (2 * 0.5 * 0.25 + c1) / (0.25 + 0.0625 + c1), abs=1e-12)


def test_ssim_reads_uint8_as_0_to_1():
    a = smooth_image(3)
    b = smooth_image(4)
    q = lambda x: (x * 255 + 0.5).astype(np.uint8)  # noqa: E731
    assert ssim(q(a), q(b)) == pytest.approx(ssim(q(a) / 255.0, q(b) / 255.0), abs=1e-9)


# --- PSNR, downscale, texture energy ---------------------------------------------------------------

def test_psnr_of_known_mse():
    a = np.zeros((10, 12, 3))
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-9)        # MSE 0.01
    assert psnr(a, a) == float("inf")
    assert psnr_from_mse(1e-3) == pytest.approx(30.0)
    u = np.zeros((4, 4, 3), np.uint8)
    assert psnr(u, u + 51) == pytest.approx(10 * np.log10(1 / 0.2 ** 2), abs=1e-9)   # 51/255 = 0.2


def test_downscale_is_block_mean():
    img = np.random.default_rng(5).random((16, 12, 3)).astype(np.float32)
    blocks = img.reshape(4, 4, 3, 4, 3).mean(axis=(1, 3))
    assert downscale(img).shape == (4, 3, 3)
    np.testing.assert_allclose(downscale(img), blocks, atol=1e-6)


def test_texture_energy_closed_forms():
    yy, xx = np.mgrid[:24, :30]
    checker = ((yy + xx) % 2).astype(np.float64)
    # 4-neighbour Laplacian of a 0/1 checkerboard is +-4 at every pixel (mirrored borders keep the pattern)
    assert texture_energy(np.dstack([checker] * 3)) == pytest.approx(4.0)
    assert texture_energy(np.dstack([checker, 0 * checker, 0 * checker])) == pytest.approx(4.0 / 3)   # grey = mean RGB
    assert texture_energy(np.full((24, 30, 3), 0.7)) == 0.0
    pic = shapes_picture()
    assert texture_energy(cv2.GaussianBlur(pic, (0, 0), 2)) < texture_energy(pic)


# --- colour, outlines, style score -----------------------------------------------------------------

def test_lab_matches_the_cie_reference_values():
    px = lambda rgb: np.full((2, 2, 3), rgb, np.uint8)  # noqa: E731
    np.testing.assert_allclose(lab(px((255, 0, 0)))[0, 0], [53.24, 80.09, 67.20], atol=0.05)   # sRGB red, D65
    np.testing.assert_allclose(lab(px((255, 255, 255)))[0, 0], [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab(px((0, 0, 0)))[0, 0], [0, 0, 0], atol=0.01)
    assert color_error(px((255, 255, 255)).repeat(8, 0).repeat(8, 1), px((0, 0, 0)).repeat(8, 0).repeat(8, 1)) == \
        pytest.approx(100.0, abs=0.01)                             # white vs black: delta E = 100
    pic = shapes_picture()
    assert color_error(pic, pic) == 0.0


def test_reinhard_transfer_matches_the_style_lab_statistics():
    yy, xx = np.mgrid[:96, :128] / np.array([96.0, 128.0])[:, None, None]
    content = (np.dstack([xx, yy, 0.5 * (xx + yy)]) * 200 + 20).astype(np.uint8)        # a colourful ramp
    rng = np.random.default_rng(6)
    warm = cv2.GaussianBlur(rng.random((96, 128, 3)), (0, 0), 3)
    style = (np.dstack([0.55 + 0.3 * warm[..., 0], 0.35 + 0.2 * warm[..., 1], 0.15 + 0.1 * warm[..., 2]]) * 255
             ).astype(np.uint8)
    out = reinhard_transfer(content, style)
    assert out.dtype == np.uint8 and out.shape == content.shape
    stats = lambda img: (lab(img).reshape(-1, 3).mean(0), lab(img).reshape(-1, 3).std(0))  # noqa: E731
    (mo, so), (ms, ss), (mc, _) = stats(out), stats(style), stats(content)
    np.testing.assert_allclose(mo, ms, atol=0.5)
    np.testing.assert_allclose(so, ss, rtol=0.1, atol=0.3)
    assert np.abs(mc - ms).max() > 10                               # the test means something: they started apart


def test_edge_fscore():
    pic = shapes_picture()
    assert edge_fscore(pic, pic) == pytest.approx(1.0)
    assert edge_fscore(np.full_like(pic, 120), pic) == 0.0          # a blank output keeps no outline
    shift = lambda img, dx: np.roll(img, dx, axis=1)  # noqa: E731
    assert edge_fscore(shift(pic, 2), pic) > 0.9                   # 1 px at half scale: within the tolerance
    assert edge_fscore(shift(pic, 16), pic) < 0.5                  # 8 px at half scale: outlines elsewhere


def test_style_score_closed_forms():
    style = np.zeros(100)
    direction = np.random.default_rng(7).normal(size=100)
    direction /= np.linalg.norm(direction)
    photo, teacher = 10 * direction, 4 * direction
    assert style_score(photo, teacher, teacher, style) == pytest.approx(1.0)
    assert style_score(photo, photo, teacher, style) == pytest.approx(0.0)
    assert style_score(photo, 7 * direction, teacher, style) == pytest.approx(0.5)     # (10 - 7) / (10 - 4)
    assert style_score(photo, style, teacher, style) == pytest.approx(10 / 6)          # past the teacher


# --- E_warp ----------------------------------------------------------------------------------------

def shifted_pair(dx: int = 3, h: int = 40, w: int = 56):
    """prev, then cur = prev moved dx px to the right with new content entering on the left; exact flows."""
    rng = np.random.default_rng(8)
    prev = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    cur = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    cur[:, dx:] = prev[:, :-dx]
    back = np.zeros((h, w, 2), np.float32)
    back[..., 0] = -dx                       # pixel x of cur was at x - dx in prev
    fwd = -back
    return prev, cur, back, fwd


def test_ewarp_is_zero_for_a_perfectly_warped_pair():
    prev, cur, back, fwd = shifted_pair()
    vis = visible_masks([None, back], [None, fwd])
    assert vis[0] is None
    assert not vis[1][:, :3].any() and vis[1][:, 3:].all()        # the entering strip is masked out, the rest kept
    assert warping_error([prev, cur], [None, back], vis) == (0.0, [0.0])
    zero = np.zeros_like(back)                                     # the wrong (no-motion) flow sees the shift
    assert pair_warping_error(cur, prev, zero, np.ones(cur.shape[:2], bool)) > 0.05


def test_ewarp_of_a_flickering_pair_is_the_masked_mse():
    a = smooth_image(9, (30, 34, 3)).astype(np.float32) * 0.8
    zero = np.zeros((30, 34, 2), np.float32)
    everywhere = np.ones((30, 34), bool)
    assert pair_warping_error(a + 0.1, a, zero, everywhere) == pytest.approx(0.01, rel=1e-5)   # brightness flicker
    # an independent reference with half the frame occluded: only the visible half counts
    rng = np.random.default_rng(10)
    b = rng.random(a.shape).astype(np.float32)
    half = np.zeros((30, 34), bool)
    half[:, :17] = True
    expected = float(np.mean((b - a)[:, :17] ** 2))
    assert pair_warping_error(b, a, zero, half) == pytest.approx(expected, rel=1e-5)
    assert masked_mse(b, a, half) == pytest.approx(expected, rel=1e-5)
    # a clip: the mean over its pairs
    mean, per_pair = warping_error([a, a + 0.1, a + 0.1], [None, zero, zero], [None, everywhere, everywhere])
    assert per_pair == [pytest.approx(0.01, rel=1e-5), 0.0]
    assert mean == pytest.approx(0.005, rel=1e-5)


def test_foreign_spectral_peak_finds_a_crosshatch_the_reference_lacks():
    """A diagonal grating of period 6 px laid over a painting is flagged; the painting shifted by 3 px (same texture,
    other phase) and a blurred copy (less detail, nothing new) are not."""
    ref = cv2.resize(painting("kandinsky"), (256, 256), interpolation=cv2.INTER_AREA)
    x = np.arange(256)
    grating = 40 * np.sin(2 * np.pi * (x[None, :] + x[:, None]) / 6)
    hatched = np.clip(ref.astype(np.float64) + grating[..., None], 0, 255).astype(np.uint8)
    assert foreign_spectral_peak(np.roll(ref, 3, axis=1), ref) < 6
    assert foreign_spectral_peak(cv2.GaussianBlur(ref, (0, 0), 1.5), ref) < 10
    assert foreign_spectral_peak(hatched, ref) > 100
