"""`distill train`: fit the student to the cached teacher targets. One file, nanoGPT style.

Resumable (OUT/last.pt every `ckpt_every` steps and on exit), seeded, with a
progress bar that shows the loss and the ETA. Runs on CPU (2 cores: about 1-2
steps a second at the defaults) or on a CUDA GPU when one is present.
"""
from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from distill.data import PreparedSet
from distill.losses import (EfficientNetFeatures, charbonnier, gradient_loss, perceptual_loss, ssim_downscaled_loss, style_loss,
                            temporal_loss, texture_energy)
from engines.student import Student, StudentConfig, build, save_checkpoint_weights, warm_start
from distill.style_space import StylePredictor
from streamer.errors import InputError, brief

STYLESPACE_SIDE = 112   # crops are seen by the style predictor at about the scale eval's 384 -> 256 resize gives


@dataclass
class TrainConfig:
    data: str
    out: str
    steps: int = 12000
    minutes: float | None = None
    batch: int = 8
    crop: int = 192
    lr: float = 2e-3
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    resume: bool = True
    init: str | None = None     # warm start from these student weights when not resuming
    ckpt_every: int = 250
    w_pixel: float = 1.0
    w_gradient: float = 1.0
    w_perceptual: float = 0.2
    w_style: float = 1.0
    w_texture: float = 1.0
    w_temporal: float = 5.0
    w_ssim4: float = 1.0
    w_stylespace: float = 0.0
    w_color: float = 0.0
    w_spectrum: float = 0.0
    arch: str = "film"          # film: engines.student.Student (c1..blocks3 below); hq: engines.student_hq.StudentHQ
    c1: int = 16
    c2: int = 32
    blocks: int = 4
    c3: int = 0
    blocks3: int = 0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA device; use cpu")
    return torch.device(name)


def _load_blob(path: str | Path, what: str) -> dict:
    """A torch checkpoint, or InputError naming the file: torch's unpickling errors run to a paragraph."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:   # noqa: BLE001 - pickle, zip and EOF errors alike
        raise InputError(f"{path}: not {what} ({brief(exc)})") from exc
    if not isinstance(blob, dict):
        raise InputError(f"{path}: not {what}")
    return blob


def _arch_of(blob: dict) -> str:
    cfg = blob.get("config") or {}
    return " ".join(f"--{k.replace('_', '-')} {cfg[k]}" for k in ("arch", "c1", "c2", "blocks", "c3", "blocks3")
                    if k in cfg) or "unknown"


def sample_batch(data: PreparedSet, cfg: TrainConfig, rng: np.random.Generator, device: torch.device):
    """Random pairs, random aligned crops of content and teacher target, random flips."""
    n, side = data.content.shape[0], data.content.shape[1]
    idx = np.sort(rng.choice(n, cfg.batch, replace=cfg.batch > n))   # a cache smaller than a batch repeats pairs
    c, t = [], []
    for i in idx:
        y, x = rng.integers(0, side - cfg.crop + 1, 2)
        ci = data.content[i, y:y + cfg.crop, x:x + cfg.crop]
        ti = data.target[i, y:y + cfg.crop, x:x + cfg.crop]
        if rng.random() < 0.5:
            ci, ti = ci[::-1], ti[::-1]
        c.append(ci), t.append(ti)
    to = lambda a: torch.from_numpy(np.ascontiguousarray(np.stack(a))).permute(0, 3, 1, 2).float().div(255).to(device)  # noqa: E731
    style = torch.from_numpy(np.asarray(data.style[idx])).to(device)
    sidx = np.asarray(data.style_index[idx])
    return to(c), to(t), style, sidx


def fixed_loss(model: Student, feats: EfficientNetFeatures, data: PreparedSet, cfg: TrainConfig, device: torch.device,
               count: int = 16) -> float:
    """Distillation loss (no temporal term) on center crops of the first `count` pairs: a deterministic yardstick,
    unlike the noisy per-batch loss, for 'did training help'."""
    n, side = min(count, data.content.shape[0]), data.content.shape[1]
    o = (side - cfg.crop) // 2
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a[:n, o:o + cfg.crop, o:o + cfg.crop])).permute(0, 3, 1, 2).float().div(255).to(device)  # noqa: E731
    content, target = to(data.content), to(data.target)
    style = torch.from_numpy(np.asarray(data.style[:n])).to(device)
    with torch.no_grad():
        pred = model(content, style)
        terms = image_terms(pred, target, feats(pred), feats(target))
    return float(weighted_sum(terms, cfg))


def stylespace_loss(predictor: StylePredictor, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared distance between the teacher's style vectors of the output and of the teacher's output.

    The pixel, SSIM and feature terms reward the teacher's structure far more than its stylization (the v1 student
    moved photos about half as far into the style as the teacher did); this term asks for the stylization itself,
    in the space the teacher is conditioned on and that `distill eval`'s style score measures."""
    size = (STYLESPACE_SIDE, STYLESPACE_SIDE)
    ep = predictor(F.interpolate(pred, size=size, mode="bilinear", antialias=True, align_corners=False))
    with torch.no_grad():
        et = predictor(F.interpolate(target, size=size, mode="bilinear", antialias=True, align_corners=False))
    return (ep - et).pow(2).sum(dim=1).mean()


def color_layout_loss(pred: torch.Tensor, target: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """L1 between the 8x-downscaled images: the palette and where each colour sits, which eval's colour error
    (CIE76 on 8x-downscaled Lab) measures and which the style-space term alone lets drift."""
    return (F.avg_pool2d(pred, factor) - F.avg_pool2d(target, factor)).abs().mean()


def power_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Normalized power spectrum of the grey image's detail (Hann-windowed), 3x3-smoothed: where texture energy sits
    in frequency, whatever its phase."""
    g = x.mean(dim=1, keepdim=True)
    g = g - F.avg_pool2d(F.pad(g, (4, 4, 4, 4), mode="reflect"), 9, stride=1)   # detail only
    h, w = g.shape[-2:]
    win = torch.hann_window(h, device=x.device)[:, None] * torch.hann_window(w, device=x.device)[None, :]
    power = torch.fft.rfft2(g * win).abs().pow(2)
    power = F.avg_pool2d(power, 3, stride=1, padding=1)
    return power / (power.sum(dim=(-2, -1), keepdim=True) + 1e-12)


def spectrum_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between log power spectra: a regular pattern (a crosshatch at a fixed pixel period) puts a sharp peak where
    the teacher's spectrum has little, which texture energy and the style terms reward instead of punish."""
    sp, st = power_spectrum(pred), power_spectrum(target).detach()
    eps = 0.1 / sp[0, 0].numel()
    return (torch.log(sp + eps) - torch.log(st + eps)).abs().mean()


def image_terms(pred: torch.Tensor, target: torch.Tensor, fp: list[torch.Tensor], ft: list[torch.Tensor]) -> dict:
    """The loss terms that compare the student's output with the teacher's (everything but the temporal term)."""
    return {
        "pixel": charbonnier(pred, target),
        "gradient": gradient_loss(pred, target),
        "perceptual": perceptual_loss(fp, ft),
        "style": style_loss(fp, ft),
        "texture": (texture_energy(pred) - texture_energy(target)).abs().mean() * 10,
        "ssim4": ssim_downscaled_loss(pred, target),
        "color": color_layout_loss(pred, target),
        "spectrum": spectrum_loss(pred, target),
    }


def weighted_sum(terms: dict, cfg: TrainConfig) -> torch.Tensor:
    return sum(getattr(cfg, f"w_{name}") * value for name, value in terms.items())


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    ckpt = out / "last.pt"
    if cfg.init and not (cfg.resume and ckpt.exists()):
        init_blob = _load_blob(cfg.init, "student weights (--init)")
        if not ("state_dict" in init_blob or "model" in init_blob):
            raise InputError(f"{cfg.init}: not student weights (--init; `distill train` writes student.pt)")
    out.mkdir(parents=True, exist_ok=True)
    data = PreparedSet.load(cfg.data, mmap=False)
    style_images = torch.from_numpy(np.asarray(data.style_images)).permute(0, 3, 1, 2).float().div(255).to(device)

    if cfg.arch == "hq":   # the teacher's shape; --init (from `distill hq-init`) carries its weights and config
        model = build(torch.load(cfg.init, map_location="cpu", weights_only=True)["config"]).to(device)
    else:
        model = Student(StudentConfig(c1=cfg.c1, c2=cfg.c2, blocks=cfg.blocks, c3=cfg.c3, blocks3=cfg.blocks3)).to(device)
    feats = EfficientNetFeatures().to(device)
    predictor = StylePredictor().to(device) if cfg.w_stylespace > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    step, rng_state, elapsed_before = 0, None, 0.0
    if cfg.init and not (cfg.resume and ckpt.exists()):
        warm_start(model, cfg.init)
    if cfg.resume and ckpt.exists():
        blob = _load_blob(ckpt, "a training checkpoint (delete it, or --no-resume)")
        try:
            model.load_state_dict(blob["model"])
        except (KeyError, RuntimeError) as exc:
            raise InputError(f"{ckpt}: a checkpoint of another network than these options build (its options: "
                             f"{_arch_of(blob)}); resume with those, or give --no-resume or another --out") from exc
        opt.load_state_dict(blob["opt"])
        step, rng_state, elapsed_before = blob["step"], blob["rng"], blob.get("elapsed", 0.0)
    rng = np.random.default_rng(cfg.seed + step)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    gen = torch.Generator().manual_seed(cfg.seed + step)

    def progress_fraction(s: int) -> float:
        """How far along the run is: by steps, or by wall time when a time budget is set (whichever is further),
        so a run on a busy or slow machine still anneals its learning rate before the budget ends."""
        frac = s / cfg.steps
        if cfg.minutes:
            frac = max(frac, (elapsed_before + time.time() - t0) / (60 * cfg.minutes))
        return min(1.0, frac)

    def lr_at(s: int) -> float:
        warm = 200
        if s < warm:
            return cfg.lr * (s + 1) / warm
        return cfg.lr * (0.02 + 0.49 * (1 + math.cos(math.pi * progress_fraction(s))))

    def save() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "rng": rng.bit_generator.state,
                    "elapsed": elapsed_before + time.time() - t0, "config": asdict(cfg)}, tmp)
        tmp.replace(ckpt)
        save_checkpoint_weights(model, out / "student.pt")

    loss_start = fixed_loss(model, feats, data, cfg, device)
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    log = (out / "log.jsonl").open("a")
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    ema = None
    try:
        while step < cfg.steps and not stop["flag"]:
            if progress_fraction(step) >= 1.0:
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            content, target, style, sidx = sample_batch(data, cfg, rng, device)
            pred = model(content, style)
            fp = feats(pred)
            terms = image_terms(pred, target, fp, feats(target))
            painted = np.nonzero(sidx >= 0)[0]
            if len(painted):   # style statistics of the painting itself, for pairs that came from one painting
                fs = feats(style_images[torch.from_numpy(sidx[painted])])
                terms["style"] = terms["style"] + 0.2 * style_loss([f[painted] for f in fp], fs)
            if predictor is not None:
                terms["stylespace"] = stylespace_loss(predictor, pred, target)
            if cfg.w_temporal > 0:
                terms["temporal"] = temporal_loss(model, content, style, pred, gen)
            loss = weighted_sum(terms, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.4f}", lr=f"{lr_at(step):.1e}")
            if step % 25 == 0:
                log.write(json.dumps({"step": step, "loss": loss.item(), "ema": ema,
                                      **{k: round(v.item(), 5) for k, v in terms.items()},
                                      "elapsed": round(elapsed_before + time.time() - t0, 1)}) + "\n")
                log.flush()
            if step % cfg.ckpt_every == 0:
                save()
    finally:
        bar.close()
        save()
        log.close()
    return {"step": step, "loss_ema": ema, "fixed_loss_start": loss_start,
            "fixed_loss_end": fixed_loss(model, feats, data, cfg, device), "seconds": round(elapsed_before + time.time() - t0, 1),
            "device": str(device), "weights": str(out / "student.pt")}
