"""`distill prepare`: image folders -> cached (content crop, style vector, teacher output) triples.

The teacher is the slow part (about 50-100 ms a pair on 2 cores), so its outputs
are computed once here and stored as uint8 arrays; training epochs only read them.
Any folder of images works for content and for styles (COCO, WikiArt, ...).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tqdm import tqdm

from distill.teacher import Teacher
from streamer.errors import InputError, one_line
from streamer.media_files import IMAGE_EXTENSIONS, is_image, read_image

STYLE_SIDE = 256   # style images kept for the style-image loss term
HOLDOUT_CONTENT, HOLDOUT_STYLES = 12, 3   # held-out photos and paintings of a large folder (the shipped caches' split)
CACHE_ARRAYS = ("content", "target", "style", "style_index", "style_images")


def list_images(folder: str | Path) -> list[Path]:
    """Every image under folder (recursive), sorted; InputError naming the folder when there is none to list."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (give a folder of images)")
    if not os.access(folder, os.R_OK | os.X_OK):           # rglob would list nothing, silently
        raise InputError(f"{folder}: cannot read (permission denied)")
    try:
        files = sorted(p for p in folder.rglob("*") if is_image(p))
    except OSError as exc:
        raise InputError(f"{folder}: cannot read ({(exc.strerror or one_line(exc)).lower()})") from exc
    if not files:
        raise InputError(f"{folder}: no images inside ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def holdout_count(n: int, requested: int | None, default: int, folder: str | Path, flag: str) -> int:
    """How many of a folder's n images to hold out for `distill eval`.

    None: the default (12 photos, 3 paintings), scaled down for small folders so that about three quarters are left to
    train on (at least one held out).  An explicit count must leave at least one image to train on.
    """
    if requested is None:
        if n < 2:
            raise InputError(f"{folder}: {n} image; needs at least 2 (one to train on, one held out for `distill "
                             f"eval`), or {flag} 0 to hold none out")
        return max(1, min(default, n // 4))
    if requested < 0:
        raise InputError(f"{flag} {requested}: must be 0 or more")
    if requested >= n:
        raise InputError(f"{folder}: {n} image{'s' if n != 1 else ''}, too few to hold out {requested} and train on "
                         f"the rest: needs at least {requested + 1}; set {flag} below {n} (or leave it out: it scales "
                         "down)")
    return requested


def split_holdout(files: list[Path], holdout: int, seed: int) -> tuple[list[Path], list[Path]]:
    """A fixed, seeded split so that `distill eval` always sees images training never saw."""
    order = np.random.default_rng(seed).permutation(len(files))
    held = sorted(files[i] for i in order[:holdout])
    return [f for f in files if f not in held], held


def check_prepared(folder: str | Path, *, arrays: bool = True) -> Path:
    """The folder of a cache `distill prepare` made, or InputError saying what it is instead."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such cache folder (make one with `distill prepare`)")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a cache folder (a folder made by `distill prepare`)")
    if not (folder / "manifest.json").is_file():
        raise InputError(f"{folder}: not a prepared cache (no manifest.json; make one with `distill prepare`)")
    missing = [f"{k}.npy" for k in CACHE_ARRAYS if arrays and not (folder / f"{k}.npy").is_file()]
    if missing:
        raise InputError(f"{folder}: an incomplete prepared cache (no {', '.join(missing)}; was `distill prepare` "
                         "stopped? Run it again)")
    return folder


def read_manifest(folder: str | Path) -> dict:
    """A prepared cache's manifest.json (held-out lists, source folders), or InputError naming the file."""
    path = check_prepared(folder, arrays=False) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({one_line(exc)})") from exc
    keys = ("content_dir", "styles_dir", "heldout_content", "heldout_styles")
    if not isinstance(manifest, dict) or any(k not in manifest for k in keys):
        raise InputError(f"{path}: not a prepared cache's manifest (needs {', '.join(keys)})")
    return manifest


def random_crop(rgb: np.ndarray, side: int, rng: np.random.Generator, min_scale: float = 0.35) -> np.ndarray:
    """A square crop covering a random fraction of the short side, resized to `side`."""
    h, w = rgb.shape[:2]
    s = int(min(h, w) * rng.uniform(min_scale, 1.0))
    s = max(s, min(h, w, 32))
    top, left = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
    crop = rgb[top:top + s, left:left + s]
    interp = cv2.INTER_AREA if s > side else cv2.INTER_CUBIC
    return cv2.resize(crop, (side, side), interpolation=interp)


def jitter_palette(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate the hue and scale the saturation of a style image: a new palette in the same brushwork.

    18 paintings span few palettes; the student then learns colour as a function of the few it saw
    and greys out unseen ones. Palette-jittered paintings fill the style space in between.
    """
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + rng.integers(0, 180)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.6, 1.4), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal flip and colour jitter (brightness, contrast, saturation)."""
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
    x = rgb.astype(np.float32)
    x = (x - x.mean()) * rng.uniform(0.8, 1.2) + x.mean() * rng.uniform(0.8, 1.2)
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * rng.uniform(0.7, 1.3)
    return np.clip(x, 0, 255).astype(np.uint8)


@dataclass
class PreparedSet:
    content: np.ndarray   # [N,S,S,3] uint8
    target: np.ndarray    # [N,S,S,3] uint8 (teacher output)
    style: np.ndarray     # [N,100] float32
    style_index: np.ndarray  # [N] int, index into style_images or -1 (mixed or photo style)
    style_images: np.ndarray  # [K,256,256,3] uint8

    @staticmethod
    def _array(path: Path, mode: str | None) -> np.ndarray:
        try:
            return np.load(path, mmap_mode=mode)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path}: unreadable cache array ({one_line(exc)}); make the cache again with "
                             "`distill prepare`") from exc

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "PreparedSet":
        """One cache folder, or several separated by commas (concatenated; they must share their styles folder)."""
        parts = [p for p in str(folder).split(",") if p]
        if not parts:
            raise InputError("--data: no cache folder given")
        mode = "r" if mmap else None
        sets = [cls(*(cls._array(check_prepared(p) / f"{k}.npy", mode) for k in CACHE_ARRAYS)) for p in parts]
        if len(sets) == 1:
            return sets[0]
        return cls(*(np.concatenate([getattr(s, k) for s in sets]) for k in ("content", "target", "style", "style_index")),
                   sets[0].style_images)


def prepare(content_dir: str, styles_dir: str, out_dir: str, *, pairs: int = 2000, holdout_content: int | None = None,
            holdout_styles: int | None = None, seed: int = 0, threads: int | None = None, progress: bool = True,
            palette_jitter: float = 0.0, photo_styles: float = 0.1, split_seed: int = 0) -> dict:
    """Make `pairs` training triples; writes .npy arrays and a manifest with the held-out files.

    holdout_content / holdout_styles: images held out for `distill eval`; None: 12 photos and 3 paintings, fewer for
    small folders (see :func:`holdout_count`)."""
    if pairs < 1:
        raise InputError(f"--pairs {pairs}: must be at least 1")
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    photos, paintings = list_images(content_dir), list_images(styles_dir)
    n_content = holdout_count(len(photos), holdout_content, HOLDOUT_CONTENT, content_dir, "--holdout-content")
    n_styles = holdout_count(len(paintings), holdout_styles, HOLDOUT_STYLES, styles_dir, "--holdout-styles")
    # the held-out split has its own seed, so caches made with different sampling seeds hold out the same files
    contents, held_contents = split_holdout(photos, n_content, split_seed)
    styles, held_styles = split_holdout(paintings, n_styles, split_seed + 1)
    teacher = Teacher(threads)
    side = teacher.side
    t0 = time.time()

    style_rgbs = [read_image(p) for p in styles]
    style_images = np.stack([random_crop(s, STYLE_SIDE, rng, min_scale=1.0) for s in style_rgbs])
    # Several crops per painting: the vector of a detail differs from the whole, which widens the style space seen.
    bank = []
    for i, s in enumerate(style_rgbs):
        for k in range(6):
            crop = random_crop(s, STYLE_SIDE, rng, 0.4 if k else 1.0)
            if k and palette_jitter > 0 and rng.random() < palette_jitter:   # a re-coloured painting is no longer that painting: index -1
                bank.append((-1, teacher.style_vector(jitter_palette(crop, rng))))
            else:
                bank.append((i, teacher.style_vector(crop)))
    content_rgbs = [read_image(p) for p in contents]
    photo_step = 1 if photo_styles > 0.1 else 4
    photo_vectors = [teacher.style_vector(random_crop(c, STYLE_SIDE, rng, 0.5)) for c in content_rgbs[::photo_step]]

    try:   # only now: every image has been read, so an unreadable one leaves no empty cache folder behind
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the cache folder ({(exc.strerror or one_line(exc)).lower()})") from exc
    content = np.lib.format.open_memmap(out / "content.npy", "w+", np.uint8, (pairs, side, side, 3))
    target = np.lib.format.open_memmap(out / "target.npy", "w+", np.uint8, (pairs, side, side, 3))
    style = np.zeros((pairs, 100), np.float32)
    style_index = np.full(pairs, -1, np.int64)
    for n in tqdm(range(pairs), desc="teacher targets", disable=not progress, unit="pair"):
        img = augment(random_crop(content_rgbs[rng.integers(len(content_rgbs))], side, rng), rng)
        r = rng.random()
        if r < (1.0 - photo_styles) * 7 / 9:   # one painting
            idx, vec = bank[rng.integers(len(bank))]
            style_index[n] = idx
        elif r < 1.0 - photo_styles:  # a blend of two paintings: the teacher is defined on the whole vector space
            (_, a), (_, b) = bank[rng.integers(len(bank))], bank[rng.integers(len(bank))]
            t = rng.uniform(0.2, 0.8)
            vec = t * a + (1 - t) * b
        else:          # a photo used as the style ("any picture can be the style")
            vec = photo_vectors[rng.integers(len(photo_vectors))]
        content[n], target[n], style[n] = img, teacher.stylize(img, vec), vec
    content.flush(), target.flush()
    np.save(out / "style.npy", style)
    np.save(out / "style_index.npy", style_index)
    np.save(out / "style_images.npy", style_images)
    manifest = {
        "pairs": pairs, "side": side, "seed": seed, "split_seed": split_seed, "seconds": round(time.time() - t0, 1),
        "palette_jitter": palette_jitter, "photo_styles": photo_styles,
        "content_dir": str(content_dir), "styles_dir": str(styles_dir),
        "train_content": [p.name for p in contents], "train_styles": [p.name for p in styles],
        "heldout_content": [p.name for p in held_contents], "heldout_styles": [p.name for p in held_styles],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
