"""`streamer tune PAINTING --out NAME.onnx`: the arbitrary student specialised to one painting, in minutes on a CPU.

The teacher is the only supervisor: it stylizes random crops of a bundled set of photos (plus frames of the
user's clip with ``video``) in the painting's style once, and the student is fine-tuned towards those targets until
the time budget is spent. What is tuned and with which losses was measured (benchmarks/RESULTS.md, "Tuning"):

- **Which base**: the live tier by default (``DEFAULT_MODEL``), the one tuning helps; ``model="student-hq"`` tunes
  the high-quality tier, and ``"teacher-video"`` the teacher's own network, where on a still the tuner has little to
  add. Below, the live tier's layers; for the two networks of the teacher's shape (``engines.student_hq``) the style
  path is their norms' style-to-(gamma, beta) projections, and ``body`` adds their residual convs
  (``parameter_groups``).
- **What**: the style-conditioning path and the residual blocks (``scope="body"``, the default). For one painting
  the style vector is fixed, so the style MLP's output (every FiLM scale and shift, the colour matrix) becomes a
  free set of per-style constants; the residual blocks at 1/4 resolution and the whole 1/8 branch (its stride-2
  entry, blocks and 1x1 exit, upsampled bilinearly) are tuned too, at a lower rate. The main path's layers that
  change resolution (the stride-2 stem and 1/4 downsampling convs, the upsampling conv and the pixel-shuffle head)
  stay as distilled: tuning them as well (``"all"``) painted periodic patterns within two minutes on some paintings
  (a spectral peak thousands of times the teacher's), which ``"body"`` never did.
  ``"style"`` tunes the style MLP alone (it saturates within about two minutes); ``"auto"`` tunes it first and the
  whole network from ``style_fraction`` of the time.
- **Losses**: the distillation terms (`distill.train.image_terms`, the Gram/mean/std term at 5x its distillation
  weight), the style-space term against the teacher's output (0.5, distillation 0.15), a style-space term against
  the painting's own vector (a hinge: as close to the painting as the teacher's output is, not closer), and the
  temporal term at 8x its distillation weight (a more stylized output has more texture to flicker).
- **Which checkpoint**: the held-out bundled photos (never in a training pair) are stylized every few seconds and
  scored with the yardstick of `distill eval`, the style score (1.0 = as stylized as the teacher). The best one
  that keeps SSIM/4 against the teacher, has no periodic pattern the teacher lacks and flickers at most 25% more
  than the base (``max_flicker_rise``) is kept. Flicker is the temporal term on a fixed small warp of each held-out
  photo: a more stylized output has more texture to flicker, and the temporal loss alone did not hold it. It is
  written as ``NAME.pt`` beside ``NAME.onnx`` whenever it improves (so Ctrl-C keeps it), and exported at the end
  with the student contract (``frame``, ``style`` in, ``stylized`` out), same architecture and MACs as the base model.

Nothing half-written appears at ``out``: the ONNX is exported to a temporary file beside it, checked against
PyTorch (`distill.export`), then renamed into place.
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import streamer
from distill.data import PreparedSet, augment, random_crop
from distill.export import export_replacing
from distill.losses import (EfficientNetFeatures, charbonnier, gradient_loss, ssim_downscaled_loss, temporal_loss,
                            texture_energy)
from distill.style_space import StylePredictor
from distill.teacher import Teacher
from distill.train import (color_layout_loss, image_terms, sample_batch, spectrum_loss,
                           stylespace_loss, weighted_sum)
from engines.carried_state import start_afresh
from engines.student import Student, load_weights, save_checkpoint_weights
from streamer.errors import InputError, brief
from streamer.media_files import center_square, check_readable, is_image, read_image, same_file
from streamer.metrics import downscale, foreign_spectral_peak, reinhard_transfer, ssim, style_score
from streamer.model_registry import resolve_model
from streamer.sources import VideoFileSource
from streamer.styles import resolve_style

BUNDLED_PHOTOS = Path(streamer.__file__).resolve().parent / "assets" / "photos"
# the live tier: from it 5 minutes take unseen paintings from 0.71 to 0.79 of the teacher on average, and the tuned
# model keeps live speed on a CPU; the high-quality tier is the teacher's network on a still, so tuning it moved the
# same kind of paintings from 1.019 to 1.017 (RESULTS, "Tuning")
DEFAULT_MODEL = "student-live"
SCOPES = ("auto", "style", "all", "body")
RESAMPLING = ("stem.", "down.", "up.", "head.")   # the main path's resampling layers; "body" leaves them alone
HQ_RESAMPLING = ("contract.", "expand.")           # the same for student-hq (its norms, expand_norm.*, are style)
SCORE_SCALE = 256 / 384       # the style predictor sees a 384x384 output at 256x256
EVAL_SIDE = 384              # held-out photos are scored at the teacher's size, as `distill eval` does


def parameter_groups(model: torch.nn.Module, scope: str) -> tuple[list, list]:
    """(style path, rest of the network as `scope` allows): the live tier's style MLP, or student-hq's style norms
    (the teacher's gamma/beta projections and the moment predictors)."""
    if getattr(model.config, "arch", "") == "hq":
        is_style, frozen = (lambda n: ".norm" in n or n.startswith("expand_norm.")), HQ_RESAMPLING
    else:
        is_style, frozen = (lambda n: n.startswith("style_mlp.")), RESAMPLING
    frozen = frozen if scope == "body" else ()
    named = list(model.named_parameters())
    return ([p for n, p in named if is_style(n)],
            [p for n, p in named if not is_style(n) and not n.startswith(frozen)])


@dataclass
class TuneOptions:
    painting: str                     # the style image, or a bundled style's name
    out: str                          # NAME.onnx; the best checkpoint so far is NAME.pt beside it
    minutes: float = 5.0              # wall-clock budget, teacher targets included (export and report come after)
    photos: str | None = None         # a folder of photos in place of the bundled ones
    video: str | None = None          # a clip whose frames join the training photos
    model: str | None = None          # the base: a tier name (default student-live) or a .pt
    overwrite: bool = False           # replace an existing `out`
    scope: str = "body"               # body (style MLP + residual blocks), style (the style MLP only), all, or auto
                                      # (style MLP first, then all)
    style_fraction: float = 0.4       # auto: the share of the training time spent on the style MLP alone
    pairs: int = 96                   # at most this many teacher pairs...
    pairs_fraction: float = 0.2       # ...made within this share of the budget (at least `batch`)
    holdout: int | None = None        # photos kept out of training for the score; None: DEFAULT_HOLDOUT, fewer when
                                      # the folder is small (one photo always trains); a number given must fit
    video_frames: int = 8             # frames taken from `video`, evenly spaced
    crop: int = 192                   # training crop side (pairs are 384x384, the teacher's size)
    batch: int = 8
    lr_style: float = 1e-3            # learning rate of the style MLP (3e-3: best after ~40 steps, then worse)
    lr_net: float = 2e-4              # learning rate of the rest of the network (scope body/all/auto)
    eval_every: float = 15.0          # seconds between held-out scores
    ema: float = 0.9                  # the scored and kept weights are this exponential average of the steps' (0: off)
    min_ssim_drop: float = 0.03       # a checkpoint may lose at most this much held-out SSIM/4 against the base
    max_peak: float = 60.0            # ...and its periodic peak may not exceed this and 2x the base's
    max_flicker_rise: float = 0.25    # ...and its flicker (the temporal term on fixed warps) at most this much over
                                      # the base's (0.10 kept nothing on an unseen painting; 0.25 keeps flow-smoothed E_warp near
                                      # the project's bound of 0.25x the teacher's: the live tier is at 0.20x)
    threads: int | None = None        # torch and ONNX Runtime threads (default: all cores)
    seed: int = 0
    w_pixel: float = 1.0
    w_gradient: float = 1.0
    w_perceptual: float = 0.2
    w_style: float = 5.0              # Gram/mean/std of EfficientNet features (distillation: 1)
    w_texture: float = 1.0
    w_ssim4: float = 1.0
    w_color: float = 5.0
    w_spectrum: float = 1.0
    w_stylespace: float = 0.5         # distillation: 0.15
    w_painting: float = 0.5           # hinge on the distance to the painting's own style vector
    w_temporal: float = 40.0          # distillation: 5; at 5 a tuned painting flickered 20-46% more, 40 halves that


@dataclass
class _Held:
    """The held-out photos at the teacher's size with everything their score needs, computed once."""
    names: list[str]
    photos: np.ndarray       # [K,S,S,3] uint8
    targets: np.ndarray      # [K,S,S,3] uint8, the teacher's outputs
    e_photo: np.ndarray      # [K,100] style vectors of the photos
    e_teacher: np.ndarray    # [K,100] style vectors of the teacher's outputs
    colortransfer_score: float = 0.0


@dataclass
class _Score:
    style_score: float
    ssim_quarter: float
    periodic_peak: float
    flicker: float
    objective: float = float("nan")

    def as_dict(self) -> dict:
        return {"style_score": round(self.style_score, 4), "ssim_quarter": round(self.ssim_quarter, 4),
                "periodic_peak": round(self.periodic_peak, 2), "flicker": round(self.flicker, 7),
                "objective": round(self.objective, 5)}


def acceptable(s: _Score, base: _Score, o: TuneOptions) -> bool:
    """A checkpoint may be kept: SSIM/4 against the teacher, the periodic peak and the flicker stay near the base's."""
    return (s.ssim_quarter >= base.ssim_quarter - o.min_ssim_drop
            and s.periodic_peak <= max(o.max_peak, 2.0 * base.periodic_peak)
            and s.flicker <= base.flicker * (1.0 + o.max_flicker_rise))


def checkpoint_path(out: str | os.PathLike) -> Path:
    """Where the best checkpoint so far is kept: NAME.pt beside NAME.onnx."""
    return Path(out).with_suffix(".pt")


# --- checks before any work ------------------------------------------------------------------------------------

def _check_writable(path: Path, overwrite: bool) -> None:
    if path.suffix.lower() != ".onnx":
        raise InputError(f"{path}: --out must be a .onnx file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (add -y to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"{path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"{path}: {parent} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.stem}.streamer-tmp-"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    ckpt = checkpoint_path(path)
    if ckpt.is_dir():
        raise InputError(f"{ckpt}: is a directory (the checkpoint goes there)")
    if ckpt.exists() and not overwrite:   # the best checkpoint is written there from the first improvement on
        raise InputError(f"{ckpt}: already exists (the checkpoint beside --out goes there; add -y to replace it)")


def _base_weights(spec: str | None) -> Path:
    spec = spec or DEFAULT_MODEL
    if spec in ("teacher", "identity", "student"):
        raise InputError(f"{spec}: tune starts from a bundled tier (student-live, student-hq, teacher-video) or a .pt file")
    model = resolve_model(spec)
    if model.weights is None:
        raise InputError(f"{spec}: tune needs the torch weights (.pt) of the model, not only its ONNX")
    return Path(model.weights)


def _photo_files(folder: str | None) -> list[Path]:
    root = Path(folder) if folder else BUNDLED_PHOTOS
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    files = sorted((p for p in root.rglob("*") if p.is_file() and is_image(p)), key=lambda p: str(p).lower())
    if len(files) < 2:
        raise InputError(f"{root}: needs at least 2 photos (one is held out for the score), found {len(files)}")
    return files


DEFAULT_HOLDOUT = 6   # the bundled photos: 6 of 24


def _split(files: list[Path], holdout: int | None) -> tuple[list[Path], list[Path]]:
    """Every k-th photo (sorted by name) held out: deterministic and spread over the set; at least one each side."""
    k = max(1, min(DEFAULT_HOLDOUT if holdout is None else holdout, len(files) - 1))
    held_idx = set(np.linspace(0, len(files) - 1, k + 2)[1:-1].round().astype(int).tolist()) if k < len(files) else set()
    held = [f for i, f in enumerate(files) if i in held_idx]
    return [f for f in files if f not in held], held


def _video_frames(path: str, count: int) -> list[np.ndarray]:
    """`count` frames spread over the clip (decoding stops once they are taken)."""
    source = VideoFileSource(path)
    try:
        total = source.frame_count or count
        stride = max(1, total // max(count, 1))
        frames = []
        for frame in source.frames():
            if frame.seq % stride == 0:
                frames.append(frame.pixels)
                if len(frames) >= count:
                    break
        return frames
    finally:
        source.close()


# --- the objective --------------------------------------------------------------------------------------------

def painting_loss(predictor: StylePredictor, pred: torch.Tensor, target: torch.Tensor,
                  style: torch.Tensor) -> torch.Tensor:
    """Hinge on the distance to the painting's own style vector: no further from it than the teacher's output.

    The style score measures exactly this distance (relative to the photo's and the teacher's); the style-space
    term against the teacher's output only asks for the teacher's vector, which is one point at that distance."""
    side = max(32, round(pred.shape[-1] * SCORE_SCALE))   # the scale the score sees photos at
    size = (side, side)
    ep = predictor(F.interpolate(pred, size=size, mode="bilinear", antialias=True, align_corners=False))
    with torch.no_grad():
        et = predictor(F.interpolate(target, size=size, mode="bilinear", antialias=True, align_corners=False))
    d_pred, d_teacher = (ep - style).norm(dim=1), (et - style).norm(dim=1)
    return F.relu(d_pred - d_teacher).pow(2).mean()


def objective_terms(pred: torch.Tensor, target: torch.Tensor, style: torch.Tensor, options: TuneOptions,
                    feats: EfficientNetFeatures | None, predictor: StylePredictor | None) -> dict:
    """Every term with a non-zero weight (the temporal term aside); the EfficientNet features are computed only
    when a term that uses them counts."""
    if feats is not None:
        terms = image_terms(pred, target, feats(pred), feats(target))
    else:   # the same terms as image_terms, without the two that need the feature network
        terms = {"pixel": charbonnier(pred, target), "gradient": gradient_loss(pred, target),
                 "texture": (texture_energy(pred) - texture_energy(target)).abs().mean() * 10,
                 "ssim4": ssim_downscaled_loss(pred, target), "color": color_layout_loss(pred, target),
                 "spectrum": spectrum_loss(pred, target)}
    if predictor is not None and options.w_stylespace > 0:
        terms["stylespace"] = stylespace_loss(predictor, pred, target)
    if predictor is not None and options.w_painting > 0:
        terms["painting"] = painting_loss(predictor, pred, target, style)
    return {k: v for k, v in terms.items() if getattr(options, f"w_{k}") > 0}


# --- the tuner -------------------------------------------------------------------------------------------------

class _Tuner:
    def __init__(self, options: TuneOptions, on_progress: Callable[[dict], None] | None) -> None:
        self.o = options
        self.on_progress = on_progress or (lambda _info: None)
        self.t0 = time.time()
        self.deadline = self.t0 + 60.0 * options.minutes
        self.ckpt = checkpoint_path(options.out)
        self.ckpt_written = False
        self.base = _base_weights(options.model)

    def progress(self, **info) -> None:
        self.on_progress({"elapsed": time.time() - self.t0, "budget": 60.0 * self.o.minutes, **info})

    # -- data
    def make_pairs(self, teacher: Teacher, photos: list[np.ndarray], vec: np.ndarray,
                   rng: np.random.Generator) -> PreparedSet:
        side = teacher.side
        want = max(self.o.pairs, self.o.batch)
        until = self.t0 + max(self.o.pairs_fraction, 0.0) * 60.0 * self.o.minutes
        content, target = [], []
        order = rng.permutation(len(photos))
        while len(content) < want:
            img = photos[order[len(content) % len(photos)]]
            crop = augment(random_crop(img, side, rng, min_scale=0.5), rng)
            content.append(crop)
            target.append(teacher.stylize(crop, vec))
            self.progress(phase="targets", pairs=len(content), pairs_total=want)
            if len(content) >= self.o.batch and time.time() >= until:
                break
        n = len(content)
        return PreparedSet(np.stack(content), np.stack(target), np.repeat(vec[None].astype(np.float32), n, 0),
                           np.full(n, -1, np.int64), np.zeros((0, 1, 1, 3), np.uint8))

    def held_out(self, teacher: Teacher, files: list[Path], vec: np.ndarray, style_rgb: np.ndarray) -> _Held:
        photos = np.stack([center_square(read_image(p), EVAL_SIDE) for p in files])
        targets = np.stack([teacher.stylize(p, vec) for p in photos])
        e_photo = np.stack([teacher.style_vector(p) for p in photos])
        e_teacher = np.stack([teacher.style_vector(t) for t in targets])
        ct = [teacher.style_vector(reinhard_transfer(p, style_rgb)) for p in photos]
        held = _Held([p.name for p in files], photos, targets, e_photo, e_teacher)
        held.colortransfer_score = float(np.mean([style_score(a, c, b, vec) for a, c, b in zip(e_photo, ct, e_teacher)]))
        return held

    # -- measures
    @torch.no_grad()
    def score(self, model: Student, teacher: Teacher, held: _Held, vec: np.ndarray, objective) -> _Score:
        model.eval()
        x = torch.from_numpy(held.photos).permute(0, 3, 1, 2).float().div(255)
        style = torch.from_numpy(np.repeat(vec[None], len(x), 0))
        outs, flicker = [], []
        for i in range(len(x)):     # one at a time: the peak memory of a 384x384 batch is not worth it
            start_afresh(model)   # a stateful base (student-hq): each photo is a new picture
            y = model(x[i:i + 1], style[i:i + 1])
            outs.append((y[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
            # how much the output moves when the photo moves a little: the same warp per photo at every evaluation
            flicker.append(float(temporal_loss(model, x[i:i + 1], style[i:i + 1], y,
                                               torch.Generator().manual_seed(1000 + i))))
        scores = [style_score(held.e_photo[i], teacher.style_vector(o), held.e_teacher[i], vec) for i, o in enumerate(outs)]
        s4 = [ssim(downscale(o), downscale(t)) for o, t in zip(outs, held.targets)]
        peaks = [foreign_spectral_peak(o, t) for o, t in zip(outs, held.targets)]
        model.train()
        return _Score(float(np.mean(scores)), float(np.mean(s4)), float(np.mean(peaks)), float(np.mean(flicker)),
                      objective(model))

    def heldout_objective(self, held: _Held, vec: np.ndarray, feats, predictor):
        """The training objective (temporal term with a fixed draw) on centre crops of the held-out photos."""
        o = self.o
        side = held.photos.shape[1]
        a = (side - o.crop) // 2
        to = lambda arr: torch.from_numpy(np.ascontiguousarray(arr[:, a:a + o.crop, a:a + o.crop])).permute(0, 3, 1, 2).float().div(255)  # noqa: E731
        content, target = to(held.photos), to(held.targets)
        style = torch.from_numpy(np.repeat(vec[None], len(content), 0))

        def objective(model: Student) -> float:
            with torch.no_grad():
                pred = model(content, style)
                terms = objective_terms(pred, target, style, o, feats, predictor)
                if o.w_temporal > 0:
                    terms["temporal"] = temporal_loss(model, content, style, pred, torch.Generator().manual_seed(1))
                return float(weighted_sum(terms, o))
        return objective

    def save_best(self, model: Student) -> None:
        tmp = self.ckpt.with_name(f".{self.ckpt.stem}.streamer-tmp-{os.getpid()}.pt")
        try:
            save_checkpoint_weights(model, tmp)
            os.replace(tmp, self.ckpt)
            self.ckpt_written = True
        finally:
            tmp.unlink(missing_ok=True)

    # -- the run
    def run(self) -> dict:
        o = self.o
        if o.threads:
            torch.set_num_threads(o.threads)
        torch.manual_seed(o.seed)
        rng = np.random.default_rng(o.seed)
        gen = torch.Generator().manual_seed(o.seed)
        style_rgb = read_image(resolve_style(o.painting))
        train_files, held_files = _split(_photo_files(o.photos), o.holdout)
        photos = [read_image(p) for p in train_files]
        if o.video:
            photos += _video_frames(o.video, o.video_frames)
        model = load_weights(self.base).train()

        teacher = Teacher(o.threads)
        vec = teacher.style_vector(style_rgb).astype(np.float32)
        held = self.held_out(teacher, held_files, vec, style_rgb)
        data = self.make_pairs(teacher, photos, vec, rng)
        with contextlib.redirect_stdout(io.StringIO()):   # the weights package prints a line; stdout is for --json
            feats = EfficientNetFeatures() if (o.w_perceptual > 0 or o.w_style > 0) else None
        predictor = StylePredictor() if (o.w_stylespace > 0 or o.w_painting > 0) else None
        objective = self.heldout_objective(held, vec, feats, predictor)

        style_params, net_params = parameter_groups(model, o.scope)
        tunes_net = o.scope in ("all", "body")          # from the start; "auto" turns it on later
        opt = torch.optim.Adam([{"params": style_params, "lr": o.lr_style}, {"params": net_params, "lr": 0.0}])
        for p in model.parameters():      # the style MLP always; the rest only as the scope says
            p.requires_grad_(False)
        for p in style_params + (net_params if tunes_net else []):
            p.requires_grad_(True)
        style = torch.from_numpy(vec[None])

        averaged = copy.deepcopy(model) if o.ema > 0 else model
        live, avg = list(model.parameters()), list(averaged.parameters())
        base = best = self.score(averaged, teacher, held, vec, objective)
        self.save_best(averaged)
        history = [{"step": 0, "seconds": round(time.time() - self.t0, 1), **base.as_dict()}]
        self.progress(phase="train", step=0, score=base.style_score, best=best.style_score)
        best_step, step = 0, 0
        train_t0 = time.time()
        last_eval = train_t0
        net_on = tunes_net
        batch = min(o.batch, len(data.content))
        cfg = _BatchConfig(batch=batch, crop=min(o.crop, data.content.shape[1]))
        while time.time() < self.deadline:
            frac = (time.time() - train_t0) / max(self.deadline - train_t0, 1e-6)
            if o.scope == "auto" and not net_on and frac >= o.style_fraction:
                net_on = True
                for p in net_params:
                    p.requires_grad_(True)
            decay = 0.1 + 0.45 * (1 + math.cos(math.pi * min(frac, 1.0)))
            opt.param_groups[0]["lr"] = o.lr_style * decay
            opt.param_groups[1]["lr"] = o.lr_net * decay if net_on else 0.0
            content, target, _, _ = sample_batch(data, cfg, rng, torch.device("cpu"))
            s = style.expand(len(content), -1)
            pred = model(content, s)
            terms = objective_terms(pred, target, s, o, feats, predictor)
            if o.w_temporal > 0:
                terms["temporal"] = temporal_loss(model, content, s, pred, gen)
            loss = weighted_sum(terms, o)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
            if averaged is not model:
                with torch.no_grad():
                    torch._foreach_lerp_(avg, live, 1.0 - o.ema)
            step += 1
            now = time.time()
            if now - last_eval >= o.eval_every or now >= self.deadline:
                last_eval = now
                cur = self.score(averaged, teacher, held, vec, objective)
                history.append({"step": step, "seconds": round(now - self.t0, 1), **cur.as_dict(),
                                "loss": round(loss.item(), 5), "net": net_on})
                if cur.style_score > best.style_score and acceptable(cur, base, o):
                    best, best_step = cur, step
                    self.save_best(averaged)
                self.progress(phase="train", step=step, score=cur.style_score, best=best.style_score)
            else:
                self.progress(phase="train", step=step)
        train_seconds = time.time() - self.t0

        self.progress(phase="export")
        onnx = export_replacing(str(self.ckpt), self.o.out)
        return {
            "painting": str(o.painting), "out": str(o.out), "checkpoint": str(self.ckpt), "base_model": str(self.base),
            "base": o.model or DEFAULT_MODEL,
            "scope": o.scope, "minutes": round(train_seconds / 60.0, 2), "steps": step, "best_step": best_step,
            "pairs": len(data.content), "photos_used": len(train_files), "video_frames": len(photos) - len(train_files),
            "heldout_photos": held.names,
            "before": base.as_dict(), "after": best.as_dict(), "last": {k: history[-1][k] for k in base.as_dict()},
            "colortransfer_style_score": round(held.colortransfer_score, 4),
            "onnx_max_abs_diff_vs_torch": onnx["max_abs_diff_vs_torch"],
            "seconds_total": round(time.time() - self.t0, 1), "history": history,
        }


@dataclass
class _BatchConfig:
    """What `distill.train.sample_batch` reads from its config."""
    batch: int
    crop: int


def tune(options: TuneOptions, on_progress: Callable[[dict], None] | None = None) -> dict:
    """Fine-tune a student for one painting; returns the report (before/after scores, steps, photos used...).

    Every input is checked before any work (InputError, one line). ``on_progress`` gets a dict per step with
    ``phase`` (targets, train, export), ``elapsed`` and ``budget`` seconds, and on held-out evaluations
    ``score`` and ``best``. On any exception, KeyboardInterrupt included, the best checkpoint written so far
    stays at ``checkpoint_path(options.out)`` and the exception carries it as ``tune_checkpoint`` (None when none
    was written yet); nothing is left at ``options.out``."""
    validate(options)
    tuner = _Tuner(options, on_progress)
    try:
        return tuner.run()
    except BaseException as exc:
        exc.tune_checkpoint = str(tuner.ckpt) if tuner.ckpt_written else None
        raise


def validate(options: TuneOptions) -> None:
    """Every check that needs no work: the painting decodes, the budget, the output location, the base model,
    the photos and the clip."""
    if not (options.minutes > 0) or not math.isfinite(options.minutes):
        raise InputError(f"--minutes {options.minutes:g}: must be a positive number of minutes")
    if options.scope not in SCOPES:
        raise InputError(f"{options.scope}: unknown scope; use one of {', '.join(SCOPES)}")
    for name in ("pairs", "batch", "crop", "holdout", "video_frames"):
        if getattr(options, name) is not None and getattr(options, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} {getattr(options, name)}: must be at least 1")
    if not options.max_flicker_rise >= 0:
        raise InputError(f"--max-flicker-rise {options.max_flicker_rise:g}: must be 0 or more")
    if options.crop > EVAL_SIDE:
        raise InputError(f"--crop {options.crop}: at most {EVAL_SIDE} (the teacher's size)")
    if options.crop % 8 or options.crop < 32:
        raise InputError(f"--crop {options.crop}: a multiple of 8 from 32 (the student's strides)")
    read_image(resolve_style(options.painting))
    _check_writable(Path(options.out), options.overwrite)
    base = _base_weights(options.model)
    if same_file(base, checkpoint_path(options.out)):
        raise InputError(f"{base}: is the base (--model) and the checkpoint beside --out; give another --out")
    try:
        load_weights(base)
    except Exception as exc:   # noqa: BLE001 - pickle, zip and key errors alike: not a student's weights
        raise InputError(f"{base}: not student weights ({brief(exc)})") from exc
    photos = _photo_files(options.photos)
    if options.holdout is not None and options.holdout >= len(photos):
        raise InputError(f"--holdout {options.holdout}: {options.photos if options.photos else 'the bundled photos'} "
                         f"has {len(photos)} photos and one must be left to train on; hold out at most "
                         f"{len(photos) - 1}")
    if options.video:
        check_readable(Path(options.video))
        VideoFileSource(options.video).close()

