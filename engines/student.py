"""The student: a small fully convolutional network conditioned on the teacher's style vector.

Why this shape:
- The teacher spends most of its FLOPs at full and half resolution (9x9 convs);
  the student goes to 1/4 resolution in two strided convs and does its work there
  with depthwise-separable residual blocks, then returns to full resolution with a
  pixel shuffle, so it costs a small fraction of the teacher's FLOPs per pixel.
- Style enters through FiLM (a per-channel scale and shift predicted from the
  100-d vector), computed once per style, so one network serves every style.
- No instance norm or any whole-frame statistic: output at a pixel depends only
  on its neighbourhood, so it does not pulse when something elsewhere in the
  frame changes, and frames can be tiled.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from engines.student_hq import StudentHQ, StudentHQConfig

STYLE_DIM = 100
COLOR_PARAMS = 12   # 3x3 matrix + 3 bias
EDGE_PAD = 8        # rows of reflection below the frame (a multiple of 8: frame sides stay multiples of 8)


@dataclass
class StudentConfig:
    c1: int = 16        # channels at 1/2 resolution
    c2: int = 32        # channels at 1/4 resolution
    blocks: int = 4     # residual blocks at 1/4 resolution
    hidden: int = 128   # width of the style MLP
    c3: int = 0         # channels of the 1/8-resolution branch (0: none, the v1 network)
    blocks3: int = 0    # residual blocks in the 1/8 branch


class FiLM(nn.Module):
    """Scale and shift per channel; the parameters come from the style MLP."""

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return x * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None]


class SeparableConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1))


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.conv2, self.film = SeparableConv(c, c), SeparableConv(c, c), FiLM()

    def forward(self, x: torch.Tensor, g1, b1, g2, b2) -> torch.Tensor:
        y = F.relu(self.film(self.conv1(x), g1, b1))
        y = self.film(self.conv2(y), g2, b2)
        return F.relu(x + y)


class Student(nn.Module):
    def __init__(self, config: StudentConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or StudentConfig()
        self.stem = nn.Conv2d(3, cfg.c1, 3, 2, 1)                  # H/2
        self.down = nn.Conv2d(cfg.c1, cfg.c2, 3, 2, 1)             # H/4
        self.blocks = nn.ModuleList(ResBlock(cfg.c2) for _ in range(cfg.blocks))
        self.up = SeparableConv(cfg.c2, cfg.c1)                    # at H/2 after upsampling
        self.head = nn.Conv2d(cfg.c1, 3 * 4, 3, 1, 1)              # pixel shuffle to full resolution
        self.film = FiLM()
        # FiLM widths in the order they are consumed in forward(); the 1/8 branch's come last (after the colour
        # parameters) so that weights of the network without it warm-start it exactly
        self._film_widths = [cfg.c2] + [cfg.c2] * (2 * cfg.blocks) + [cfg.c1]
        self._branch_widths = ([cfg.c3] + [cfg.c3] * (2 * cfg.blocks3) + [cfg.c2]) if cfg.c3 else []
        if cfg.c3:
            # The 1/8 branch: the teacher repaints at large scale (swirls, colour fields); at 1/8 resolution a few
            # blocks see far (receptive field +16 px per 3x3 conv) for 1/64 of a full-resolution layer's cost.
            self.down3 = SeparableConv(cfg.c2, cfg.c3, stride=2)
            self.blocks3 = nn.ModuleList(ResBlock(cfg.c3) for _ in range(cfg.blocks3))
            self.up3 = nn.Conv2d(cfg.c3, cfg.c2, 1)
            nn.init.zeros_(self.up3.weight)   # starts as the network without the branch
            nn.init.zeros_(self.up3.bias)
        # + 12: a per-style 3x3 colour matrix and bias applied to the input and added to the output logits, so
        # the style's palette (most of what a viewer sees) is a direct linear map instead of something the
        # whole network must learn to route through FiLM
        self.style_mlp = nn.Sequential(nn.Linear(STYLE_DIM, cfg.hidden), nn.ReLU(),
                                       nn.Linear(cfg.hidden, 2 * sum(self._film_widths) + COLOR_PARAMS
                                                 + 2 * sum(self._branch_widths)))
        nn.init.zeros_(self.style_mlp[-1].weight)
        nn.init.zeros_(self.style_mlp[-1].bias)

    def film_params(self, style: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer (gamma, beta) from the style vector, then the colour (matrix [N,3,3], bias [N,3]) pair,
        then the 1/8 branch's (gamma, beta) pairs."""
        flat = self.style_mlp(style)
        out, i = [], 0
        for w in self._film_widths:
            out.append((flat[:, i:i + w], flat[:, i + w:i + 2 * w]))
            i += 2 * w
        out.append((flat[:, i:i + 9].reshape(-1, 3, 3), flat[:, i + 9:i + 12]))
        i += COLOR_PARAMS
        for w in self._branch_widths:
            out.append((flat[:, i:i + w], flat[:, i + w:i + 2 * w]))
            i += 2 * w
        return out

    def forward(self, frame: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # EDGE_PAD rows reflected below the frame, cropped at the end: without them the trained networks tint their
        # last row (+54 grey levels of green for student-live v2, +91 after more training): a line along the
        # bottom of every video. The other three edges show no such bias.
        rows = frame.shape[-2]
        frame = F.pad(frame, (0, 0, 0, EDGE_PAD), mode="reflect")
        params = self.film_params(style)
        n_main = len(self._film_widths)
        color_matrix, color_bias = params[n_main]
        p, q = iter(params[:n_main]), iter(params[n_main + 1:])
        s = F.relu(self.stem(frame * 2.0 - 1.0))
        x = F.relu(self.film(self.down(s), *next(p)))
        half = len(self.blocks) // 2 if self.config.c3 else len(self.blocks)
        for block in self.blocks[:half]:
            x = block(x, *next(p), *next(p))
        if self.config.c3:   # frame sides must be multiples of 8 (the engines pad to that)
            z = F.relu(self.film(self.down3(x), *next(q)))
            for block in self.blocks3:
                z = block(z, *next(q), *next(q))
            # bilinear, not nearest: a piecewise-constant branch painted an 8-px block grid over the whole frame
            z = F.interpolate(self.up3(z), scale_factor=2.0, mode="bilinear", align_corners=False)
            x = F.relu(x + self.film(z, *next(q)))
        for block in self.blocks[half:]:
            x = block(x, *next(p), *next(p))
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = F.relu(self.film(self.up(x), *next(p)) + s)
        y = F.pixel_shuffle(self.head(x), 2)
        n, _, h, w = frame.shape
        color = torch.matmul(color_matrix, (frame * 2.0 - 1.0).reshape(n, 3, h * w)).reshape(n, 3, h, w)
        return torch.sigmoid(y + color + color_bias[:, :, None, None])[:, :, :rows, :]


def count_macs_per_pixel(model: nn.Module) -> float:
    """Multiply-accumulates per input pixel (convs and linear layers over the frame; the style MLP is per style, not per pixel)."""
    macs = 0.0
    h = w = 64
    hooks = []

    def conv_hook(mod: nn.Conv2d, _inp, out):
        nonlocal macs
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        macs += out.numel() * k

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
    with torch.no_grad():
        model(torch.zeros(1, 3, h, w), torch.zeros(1, STYLE_DIM))
    for hk in hooks:
        hk.remove()
    return macs / (h * w) + (9 if isinstance(model, Student) else 0)   # + Student's 3x3 colour matrix on every pixel


def save_checkpoint_weights(model: nn.Module, path) -> None:
    torch.save({"config": asdict(model.config), "state_dict": model.state_dict()}, path)


def warm_start(model: Student, path) -> None:
    """Initialise from weights of an earlier Student version: shared tensors are copied, and a style MLP output
    layer that has grown (new conditioning outputs appended) keeps its old rows, the new rows staying zero."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    old = blob.get("state_dict") or blob.get("model")
    own = model.state_dict()
    for name, tensor in old.items():
        if name not in own:
            continue
        if own[name].shape == tensor.shape:
            own[name].copy_(tensor)
        elif own[name].dim() >= 1 and own[name].shape[1:] == tensor.shape[1:] and own[name].shape[0] > tensor.shape[0]:
            own[name][: tensor.shape[0]].copy_(tensor)
        else:
            raise ValueError(f"{path}: cannot warm-start {name}: {tuple(tensor.shape)} vs {tuple(own[name].shape)}")


def build(config: dict) -> nn.Module:
    """The network a checkpoint's config describes: the high-quality tier's says arch "hq"; older ones say nothing."""
    if config.get("arch") == "hq":
        return StudentHQ(StudentHQConfig(**config))
    return Student(StudentConfig(**config))


def load_weights(path, map_location="cpu") -> nn.Module:
    blob = torch.load(path, map_location=map_location, weights_only=True)
    model = build(blob["config"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()
