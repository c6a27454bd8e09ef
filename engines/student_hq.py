"""The high-quality student: the teacher's own transformer network, with its instance norms' whole-frame statistics
either carried from frame to frame (the shipped tier) or replaced by local or predicted ones.

Why this shape:
- A small network trained from scratch on 2 CPU cores plateaus well below the teacher's stylization (the live tier:
  0.76 of it in Magenta's style space). The teacher's transformer is 12.5k MACs per pixel, inside the high-quality
  tier's budget (10x the live tier), so its trained layers are the best there are: every conv and the
  style-to-(gamma, beta) projections are the teacher's, dequantized from `arbitrary_transform.onnx`.
- The teacher normalizes every layer by the frame's own mean and variance (conditional instance norm). In video that
  pulses: a bright object entering at one edge recolours the other edge on that very frame. The project forbids
  whole-frame statistics that do that, not whole-frame statistics as such, and they are what set the teacher's
  colour layout: with local moments instead (`window`, 256 px) the colour error stayed at 0.45 of the photo's after
  distillation, and more training or wider windows traded style for colour (RESULTS).
- `frame_moments=True` (the shipped tier) keeps them and makes them slow: each layer normalizes by `keep` x the
  moments it used on the previous frame + (1 - keep) x this frame's own. A still image (no previous frame) is
  normalized exactly as the teacher normalizes it; in video, something entering moves the far side of the frame a
  fraction of what the teacher's normalization moves it per frame, the rest over the next seconds; a cut
  (`CUT_SHIFT`) starts afresh (benchmarks/pulse.py measures all three). Batches and CUDA graphs see one fixed-size
  state tensor updated in place; the ONNX graph takes it as an input with a default (distill/export.py), so a
  caller that knows nothing of it gets the teacher's per-frame normalization.
- `window > 0` measures each layer's moments over a neighbourhood of each pixel: what one pixel changes fades with
  distance. `window=0` without frame moments predicts them from the style vector alone (`StyleNorm.mean`,
  `StyleNorm.log_std`, fitted by `distill.hq_init`): no statistic of the frame at all, but far from the teacher.
- `instance_norm=True` runs the teacher's own normalization again: exactly the teacher (up to its int8 weights);
  `distill.hq_init` measures the teacher's moments with it and the tests check the copied weights with it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

STYLE_DIM = 100
ARCH = "hq"
# A cut, for the carried frame moments: the first norm's channel means moved by more than this many of their standard
# deviations (averaged over channels) since the previous frame; the frame then starts afresh. Measured at 384x216:
# consecutive frames of the bundled clip and of a street video move them by at most 0.010, a disc half the frame's
# height sliding in from one edge (benchmarks/pulse.py) by up to 0.096 per frame, a cut between two of the bundled
# photos by 0.105-0.6 (median 0.285). A cut below the threshold is one between scenes whose moments are close, which
# is when carrying them costs least (benchmarks/pulse.py measures that cost too).
CUT_SHIFT = 0.15


@dataclass
class StudentHQConfig:
    arch: str = ARCH    # checkpoints say which network they hold (engines.student.load_weights reads it)
    c1: int = 8         # channels at full resolution (the teacher's)
    c2: int = 16        # at 1/2
    c3: int = 32        # at 1/4, where the residual blocks work
    blocks: int = 5
    kernel: int = 9     # the outer convs' kernel (the teacher's 9x9; a distilled student may shrink it)
    eps: float = 1e-3   # the teacher's variance epsilon (overwritten by the value in its graph)
    window: int = 0     # > 0: moments over this many full-resolution pixels around each pixel instead of predicted
    cell: int = 16      # ...measured on a grid of cells this many pixels wide (frames are padded to a multiple)
    frame_moments: bool = False   # whole-frame moments carried over time (module docstring); overrides window
    keep: float = 0.98  # ...the share of the previous frame's moments in this frame's (0: the teacher, per frame)


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float32 else t.float()


class StyleNorm(nn.Module):
    """x -> (x - mean) / std * gamma(s) + beta(s): the teacher's conditional instance norm with the whole-frame
    moments replaced by local ones (`window`) or by ones predicted from the style s."""

    def __init__(self, channels: int, eps: float, stride: int = 1, window: int = 0, cell: int = 16) -> None:
        super().__init__()
        self.cell = cell // stride                       # in this layer's pixels
        self.cells = (window // cell) | 1 if window else 0   # box width in cells, odd
        self.gamma, self.beta = nn.Linear(STYLE_DIM, channels), nn.Linear(STYLE_DIM, channels)
        self.mean, self.log_std = nn.Linear(STYLE_DIM, channels), nn.Linear(STYLE_DIM, channels)
        for layer in (self.mean, self.log_std):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.eps = eps
        self.instance_norm = False
        # frame-moment mode: the carried (mean, var) and the pass's shared {"keep", "checked", "carry"}, set by step()
        # for one pass; `used` is what this pass normalized by, read back as the next frame's carried moments
        self.carried: tuple[torch.Tensor, torch.Tensor, dict] | None = None
        self.used: tuple[torch.Tensor, torch.Tensor] | None = None

    def moments(self, x: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.carried is not None:
            mean = x.mean(dim=(2, 3), keepdim=True)
            var = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True)
            c_mean, c_var, shared = self.carried
            if not shared["checked"]:   # the first norm: its input is the frame's content seen by convs alone
                shift = ((mean - c_mean).abs() * torch.rsqrt(c_var + self.eps)).mean(dim=(1, 2, 3)).max()
                # an all-zero state (no previous frame), a cut, or a state that is not finite numbers: start afresh
                finite = torch.isfinite(c_mean).all() & torch.isfinite(c_var).all()
                shared["carry"] = finite & (c_var.sum() > 0) & (shift < CUT_SHIFT)
                shared["checked"] = True
            keep = shared["keep"]
            mean = torch.where(shared["carry"], keep * c_mean + (1 - keep) * mean, mean)
            var = torch.where(shared["carry"], keep * c_var + (1 - keep) * var, var)
            self.used = (mean, var)
            return mean, torch.rsqrt(var + self.eps)
        if self.instance_norm:
            mean = x.mean(dim=(2, 3), keepdim=True)
            return mean, torch.rsqrt((x - mean).pow(2).mean(dim=(2, 3), keepdim=True) + self.eps)
        if self.cells:
            mean = self.local_mean(x)
            return mean, torch.rsqrt(self.local_mean((x - mean).pow(2)) + self.eps)
        return self.mean(style)[:, :, None, None], torch.exp(-self.log_std(style))[:, :, None, None]

    def local_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over a window of `cells` x `cells` cells around each pixel: cell means, a box filter over them,
        bilinear back to pixels. Each layer sees only its window; stacked, what a pixel changes fades with distance
        but never quite ends, which is why this tier is not tiled (model card)."""
        grid = F.avg_pool2d(x, self.cell) if self.cell > 1 else x
        r = self.cells // 2
        box = F.avg_pool2d(F.pad(grid, (r, r, r, r), mode="replicate"), self.cells, stride=1)
        return F.interpolate(box, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # in float32 whatever the engine's precision: squared activations overflow float16 (the torch engine runs
        # fp16 on a GPU); the float32 ONNX graph gets no casts
        xf = _f32(x)
        mean, inv_std = self.moments(xf, style)
        scale = _f32(inv_std) * _f32(self.gamma(style)[:, :, None, None])
        y = (xf - _f32(mean)) * scale + _f32(self.beta(style)[:, :, None, None])
        return y if y.dtype == x.dtype else y.to(x.dtype)


class PadConv(nn.Conv2d):
    """Reflection padding then a convolution, as every conv of the teacher is."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = True) -> None:
        super().__init__(cin, cout, kernel, stride, 0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.kernel_size[0] // 2
        return super().forward(F.pad(x, (p, p, p, p), mode="reflect"))


class Residual(nn.Module):
    def __init__(self, c: int, cfg: "StudentHQConfig") -> None:
        super().__init__()
        norm = lambda: StyleNorm(c, cfg.eps, 4, cfg.window, cfg.cell)  # noqa: E731 - at 1/4 resolution
        self.conv1, self.norm1 = PadConv(c, c, 3, bias=False), norm()
        self.conv2, self.norm2 = PadConv(c, c, 3, bias=False), norm()

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x), style))
        return x + self.norm2(self.conv2(y), style)


class StudentHQ(nn.Module):
    """frame [N,3,H,W] RGB 0..1, style [N,100] -> stylized [N,3,H,W] 0..1 (reflect-padded inside to a multiple of
    the cell, or of 4, and cropped back)."""

    def __init__(self, config: StudentHQConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or StudentHQConfig()
        self.contract = nn.ModuleList([PadConv(3, cfg.c1, cfg.kernel), PadConv(cfg.c1, cfg.c2, 3, 2), PadConv(cfg.c2, cfg.c3, 3, 2)])
        self.residual = nn.ModuleList(Residual(cfg.c3, cfg) for _ in range(cfg.blocks))
        self.expand = nn.ModuleList([PadConv(cfg.c3, cfg.c2, 3, bias=False), PadConv(cfg.c2, cfg.c1, 3),
                                     PadConv(cfg.c1, 3, cfg.kernel)])
        self.expand_norm = nn.ModuleList([StyleNorm(c, cfg.eps, stride, cfg.window, cfg.cell)
                                          for c, stride in ((cfg.c2, 2), (cfg.c1, 1), (3, 1))])

    def norms(self) -> list[StyleNorm]:
        """Every StyleNorm in the order forward() applies them."""
        return [n for block in self.residual for n in (block.norm1, block.norm2)] + list(self.expand_norm)

    def set_instance_norm(self, on: bool) -> None:
        for norm in self.norms():
            norm.instance_norm = on

    def state_size(self) -> int:
        """Length of the carried-moments vector: a mean and a variance per channel of every norm."""
        return 2 * sum(n.gamma.out_features for n in self.norms())

    def step(self, frame: torch.Tensor, style: torch.Tensor, state: torch.Tensor,
             keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass in frame-moment mode: `state` [1, state_size] are the previous frame's moments (all zero: there
        was none), `keep` [1] their weight (0: the teacher's own normalization); a cut drops them (CUT_SHIFT).
        Returns the output and the moments this pass used, those of the batch's last frame. Every frame of a batch
        blends with the same carried moments, so the engines run a stateful network one frame at a time
        (`max_batch` 1)."""
        norms, i = self.norms(), 0
        # one dict for the pass: the first norm decides whether the carried moments hold (CUT_SHIFT), the rest follow
        shared = {"keep": keep.reshape(1, 1, 1, 1).float(), "checked": False}
        for norm in norms:
            c = norm.gamma.out_features
            mean, var = state[:, i:i + c], state[:, i + c:i + 2 * c]
            norm.carried = (mean[:, :, None, None].float(), var[:, :, None, None].float(), shared)
            i += 2 * c
        try:
            out = self._pass(frame, style)
            used = torch.cat([torch.cat([n.used[0][-1:], n.used[1][-1:]], 1).reshape(1, -1) for n in norms], 1)
        finally:
            for norm in norms:
                norm.carried = norm.used = None
        return out, used

    def reset_state(self) -> None:
        """The next frame starts afresh (another video, a seek): normalized by itself alone."""
        if getattr(self, "_state", None) is not None:
            self._state.zero_()   # in place: a captured CUDA graph reads this very tensor

    def state_tensor(self, device: torch.device) -> torch.Tensor:
        """The carried state on `device` (zeros when new): updated in place by each eval-mode forward, so a captured
        CUDA graph reads and writes this very tensor, and whoever captures one saves and restores it around the
        warm-up runs. A plain attribute, not a buffer: it stays float32 when the module is cast to float16."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:   # "cuda" names the current device; tensors say which
            device = torch.device("cuda", torch.cuda.current_device())
        state = getattr(self, "_state", None)
        if state is None or state.device != device:
            state = self._state = torch.zeros(1, self.state_size(), device=device)
            self._keep = torch.full((1,), self.config.keep, device=device)
        return state

    def forward(self, frame: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if not self.config.frame_moments:
            return self._pass(frame, style)
        if self.training:   # a batch of unrelated crops: each normalized by itself, as the teacher does
            return self.step(frame, style, frame.new_zeros(1, self.state_size()).float(), frame.new_zeros(1))[0]
        state = self.state_tensor(frame.device)
        out, used = self.step(frame, style, state, self._keep)
        state.copy_(used)
        return out

    def _pass(self, frame: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h, w = frame.shape[-2:]
        m = self.config.cell if self.config.window and not self.config.frame_moments else 4
        x = F.pad(frame, (0, (-w) % m, 0, (-h) % m), mode="reflect")
        for conv in self.contract:
            x = F.relu(conv(x))
        for block in self.residual:
            x = block(x, style)
        for i, (conv, norm) in enumerate(zip(self.expand, self.expand_norm)):
            if i < 2:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = norm(conv(x), style)
            x = F.relu(x) if i < 2 else torch.sigmoid(x)
        return x[:, :, :h, :w]
