"""`distill prepare`: image folders -> cached (content crop, style vector, teacher output) triples.

The teacher is the slow part (about 50-100 ms a pair on 2 cores), so its outputs
are computed once here and stored as uint8 arrays; training epochs only read them.
Any folder of images works for content and for styles (COCO, WikiArt, ...).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tqdm import tqdm

from distill.teacher import Teacher
from streamer.media_files import is_image, read_image

STYLE_SIDE = 256   # style images kept for the style-image loss term


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    files = sorted(p for p in folder.rglob("*") if is_image(p))
    if not files:
        raise FileNotFoundError(f"{folder}: no images found")
    return files


def split_holdout(files: list[Path], holdout: int, seed: int) -> tuple[list[Path], list[Path]]:
    """A fixed, seeded split so that `distill eval` always sees images training never saw."""
    order = np.random.default_rng(seed).permutation(len(files))
    held = sorted(files[i] for i in order[:holdout])
    return [f for f in files if f not in held], held


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

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "PreparedSet":
        """One cache folder, or several separated by commas (concatenated; they must share their styles folder)."""
        parts = [p for p in str(folder).split(",") if p]
        mode = "r" if mmap else None
        sets = [cls(*(np.load(Path(p) / f"{k}.npy", mmap_mode=mode) for k in
                      ("content", "target", "style", "style_index", "style_images"))) for p in parts]
        if len(sets) == 1:
            return sets[0]
        return cls(*(np.concatenate([getattr(s, k) for s in sets]) for k in ("content", "target", "style", "style_index")),
                   sets[0].style_images)


def prepare(content_dir: str, styles_dir: str, out_dir: str, *, pairs: int = 2000, holdout_content: int = 12,
            holdout_styles: int = 3, seed: int = 0, threads: int | None = None, progress: bool = True,
            palette_jitter: float = 0.0, photo_styles: float = 0.1, split_seed: int = 0) -> dict:
    """Make `pairs` training triples; writes .npy arrays and a manifest with the held-out files."""
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the held-out split has its own seed, so caches made with different sampling seeds hold out the same files
    contents, held_contents = split_holdout(list_images(content_dir), holdout_content, split_seed)
    styles, held_styles = split_holdout(list_images(styles_dir), holdout_styles, split_seed + 1)
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
