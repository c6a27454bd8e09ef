"""Frames of any size through an engine in overlapping tiles, blended so the result equals the untiled run.

Why it can be exact: the student has no whole-frame statistic, so an output pixel depends only on the input
within its receptive field (``receptive_radius`` measures it). A tile's pixel that lies at least that far from
every edge where the tile was *cut* (not the frame's own edges) is the untiled value. Tiles overlap by three
margins; each tile's weight is 0 within one margin of a cut edge, rises linearly over the next margin and is 1
beyond, so every pixel is covered by a tile with weight > 0 and only exact pixels carry weight. The blend is a
feather, so a model with a longer reach than measured degrades gently instead of showing seams.

Tile offsets are multiples of 8 (the student's strides), and the frame is reflect-padded to a multiple of 8 first,
as the engines do, so every tile sees the same sampling grid as the whole frame. All tiles have one shape, so a
GPU engine runs them in batches. The teacher normalizes over the whole frame and cannot be tiled.
"""
from __future__ import annotations

import numpy as np

from engines.base import STYLE_DIM, Engine, EngineError, check_inputs, pad_to_multiple

ALIGN = 8


def receptive_radius(engine: Engine, side: int = 384, seed: int = 0, max_side: int = 1536) -> int:
    """How far (px) a change at one input pixel reaches in the output, measured with an impulse on a noisy field
    (on a larger field when it reaches the edge). student-hq's whole-frame moments reach every pixel, so it is
    refused: it cannot be tiled exactly."""
    rng = np.random.default_rng(seed)
    base = (0.5 + 0.1 * rng.standard_normal((1, 3, side, side))).clip(0, 1).astype(np.float32)
    poked = base.copy()
    c = side // 2
    poked[:, :, c, c] = 1.0 - poked[:, :, c, c]
    style = (0.5 * rng.standard_normal((1, STYLE_DIM))).astype(np.float32)
    engine.infer(base, style)   # an engine may switch to a session baked for a style it has seen: both calls run it
    diff = np.abs(engine.infer(poked, style) - engine.infer(base, style)).max(axis=(0, 1))
    ys, xs = np.nonzero(diff > 0)                  # any change at all: the 1/8 branch reaches far but faintly
    if len(ys) == 0:
        return 0
    reach = int(max(np.abs(ys - c).max(), np.abs(xs - c).max()))
    if reach >= c - 1 and 2 * side <= max_side:
        return receptive_radius(engine, 2 * side, seed, max_side)
    if reach >= c - 1:
        raise EngineError(f"{engine.info.model}: receptive field reaches past {c} px; it cannot be tiled exactly")
    return reach


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _ramp(length: int, start: int, end_total: int, margin: int) -> np.ndarray:
    """Weights along one axis of a tile: 0 within ``margin`` of a cut edge, a linear rise over the next margin."""
    d = np.arange(length, dtype=np.float32)
    w = np.ones(length, np.float32)
    if start > 0:                                           # cut on the low side
        w = np.minimum(w, np.clip((d - margin + 1) / margin, 0, 1))
    if start + length < end_total:                          # cut on the high side
        w = np.minimum(w, np.clip((length - d - margin) / margin, 0, 1))
    return w


class TiledEngine:
    """An :class:`~engines.base.Engine` that runs frames larger than ``tile`` in overlapping tiles."""

    def __init__(self, engine: Engine, tile: int, margin: int | None = None, max_batch: int | None = None) -> None:
        if engine.info.model == "teacher":
            raise EngineError("the teacher normalizes over the whole frame: it cannot be tiled (use the student)")
        self.inner = engine
        self.margin = margin if margin is not None else -(-(receptive_radius(engine) + 4) // ALIGN) * ALIGN
        self.tile = max(ALIGN, tile - tile % ALIGN)
        if self.tile < 4 * self.margin:
            raise EngineError(f"--tile {tile}: too small for this model's reach of {self.margin} px "
                              f"(at least {4 * self.margin})")
        self.step = self.tile - 3 * self.margin
        self.step -= self.step % ALIGN
        # tiles go to a GPU in batches; on a CPU one at a time keeps the activations (and the memory) of one tile
        max_batch = max_batch or (4 if engine.info.device.startswith("cuda") else 1)
        self.max_batch = max(1, min(max_batch, engine.info.max_batch))
        self.info = engine.info
        self._layouts: dict[tuple[int, int], tuple] = {}

    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        style = check_inputs(self.info, frames, style)
        n, _, h0, w0 = frames.shape
        if max(h0, w0) <= self.tile:
            return self.inner.infer(frames, style)
        padded, _, _ = pad_to_multiple(np.ascontiguousarray(frames, dtype=np.float32), ALIGN)
        h, w = padded.shape[2:]
        boxes, weights, th, tw = self._layout(h, w)
        out = np.zeros((n, 3, h, w), np.float32)
        for i in range(n):
            for k in range(0, len(boxes), self.max_batch):
                group = boxes[k:k + self.max_batch]
                batch = np.stack([padded[i, :, y:y + th, x:x + tw] for y, x in group])
                result = self.inner.infer(batch, np.repeat(style[i:i + 1], len(group), axis=0))
                for (y, x), tile_out, wgt in zip(group, result, weights[k:k + self.max_batch]):
                    out[i, :, y:y + th, x:x + tw] += tile_out * wgt
        return out[:, :, :h0, :w0]

    def _layout(self, h: int, w: int) -> tuple[list[tuple[int, int]], list[np.ndarray], int, int]:
        """Tile corners, each tile's blend weight (already divided by the coverage) and the tile size for a padded
        h x w frame; computed once per frame size, since a video's frames all share it."""
        if (h, w) not in self._layouts:
            th, tw = min(self.tile, h), min(self.tile, w)
            boxes = [(y, x) for y in _starts(h, th, self.step) for x in _starts(w, tw, self.step)]
            raw = [np.outer(_ramp(th, y, h, self.margin), _ramp(tw, x, w, self.margin)) for y, x in boxes]
            coverage = np.zeros((h, w), np.float32)
            for (y, x), wgt in zip(boxes, raw):
                coverage[y:y + th, x:x + tw] += wgt
            coverage = np.maximum(coverage, 1e-8)
            weights = [wgt / coverage[y:y + th, x:x + tw] for (y, x), wgt in zip(boxes, raw)]
            self._layouts[(h, w)] = (boxes, weights, th, tw)
        return self._layouts[(h, w)]

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        self.inner.warmup(min(height, self.tile), min(width, self.tile), min(batch, self.max_batch))

    def close(self) -> None:
        self.inner.close()
