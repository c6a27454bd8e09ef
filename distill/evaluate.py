"""`distill eval`: how closely the student follows the teacher on images and styles it never trained on.

The teacher's own textures are not stable under small shifts (its output against
itself shifted by 2 px scores only about SSIM 0.34 at full resolution), so fidelity
is judged on 4x-downscaled images, with texture energy (mean |Laplacian|) as the
guard against a blurry student, and next to a trivial baseline: the content image
itself compared with the teacher's output.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from distill.data import list_images, read_manifest
from distill.teacher import Teacher
from engines.base import STYLE_DIM
from engines.carried_state import start_afresh
from engines.onnxruntime import OnnxRuntimeEngine
from streamer.errors import InputError, brief
from streamer.media_files import center_square, read_image
from streamer.metrics import (color_error, downscale, edge_fscore, foreign_spectral_peak, psnr, reinhard_transfer, ssim,
                              style_score, texture_energy)

TEACHER_MACS_384 = 1_847_398_168   # counted from arbitrary_transform.onnx's conv weights (see README)


class _StudentRunner:
    """Runs a student .onnx through ONNX Runtime or a .pt through PyTorch, uint8 in and out."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such model file (a student .onnx from `distill export`, or its .pt)")
        try:
            if self.path.suffix == ".onnx":
                self._engine = OnnxRuntimeEngine(self.path)
                self._torch = None
            else:
                from engines.student import load_weights   # torch: only a .pt student needs it

                self._torch = load_weights(self.path)
        except Exception as exc:   # noqa: BLE001 - ONNX Runtime, pickle and key errors alike: not a student
            raise InputError(f"{self.path}: not a student model ({brief(exc)})") from exc

    def __call__(self, rgb: np.ndarray, style: np.ndarray) -> np.ndarray:
        """One still image: a stateful student (the high-quality tier) starts afresh on each."""
        x = rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        start_afresh(self._torch if self._torch is not None else self._engine)
        if self._torch is not None:
            import torch   # loaded already for the .pt student

            with torch.no_grad():
                y = self._torch(torch.from_numpy(x), torch.from_numpy(style.reshape(1, STYLE_DIM))).numpy()
        else:
            y = self._engine.infer(x, style.reshape(1, STYLE_DIM))
        return (np.clip(y[0].transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)


def student_cost(path: str, side: int = 384) -> dict:
    """Parameters and MACs at side x side, next to the teacher's."""
    from engines.student import Student, count_macs_per_pixel, load_weights   # torch: counts the MACs by tracing

    if Path(path).suffix == ".onnx":
        pt = Path(path).with_suffix(".pt")
        model = load_weights(pt) if pt.exists() else Student()
    else:
        model = load_weights(path)
    macs = count_macs_per_pixel(model) * side * side
    return {"parameters": sum(p.numel() for p in model.parameters()), "macs": int(macs), "flops": int(2 * macs),
            "teacher_macs": TEACHER_MACS_384 * side * side // (384 * 384), "teacher_parameters": 176968,
            "macs_ratio_teacher_over_student": round(TEACHER_MACS_384 * side * side / (384 * 384) / macs, 2)}


PER_STYLE = ("style_score", "colortransfer_style_score", "ssim_quarter", "baseline_ssim_quarter", "color_error",
             "baseline_color_error", "edge_f", "texture_ratio", "periodic_peak")


def heldout_files(data: str | None, content_dir: str | None, styles_dir: str | None) -> tuple[list[Path], list[Path]]:
    """The held-out photos and paintings a prepared cache names, or every image of two folders."""
    if data:
        manifest = read_manifest(data)
        content_dir = content_dir or manifest["content_dir"]
        styles_dir = styles_dir or manifest["styles_dir"]
        for what, names in (("photos", manifest["heldout_content"]), ("paintings", manifest["heldout_styles"])):
            if not names:
                raise InputError(f"{data}: the cache holds out no {what} (prepared with a held-out count of 0); give "
                                 "--content and --styles to evaluate on other folders")
        return ([Path(content_dir) / n for n in manifest["heldout_content"]],
                [Path(styles_dir) / n for n in manifest["heldout_styles"]])
    if not (content_dir and styles_dir):
        raise InputError("give --data (a prepared cache with its held-out lists) or both --content and --styles")
    return list_images(content_dir), list_images(styles_dir)


def pair_row(teacher: Teacher, student: "_StudentRunner", img: np.ndarray, e_photo: np.ndarray, style_img: np.ndarray,
             vec: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Every measure for one photo x painting pair: the student, and the baselines (the photo itself, a colour
    transfer) next to it. Returns the row, the teacher's output and the student's."""
    t, s = teacher.stylize(img, vec), student(img, vec)
    ct = reinhard_transfer(img, style_img)
    e_t = teacher.style_vector(t)
    row = {
        "style_score": style_score(e_photo, teacher.style_vector(s), e_t, vec),
        "ssim_quarter": ssim(downscale(s), downscale(t)), "ssim_full": ssim(s, t), "psnr_full": psnr(s, t),
        "color_error": color_error(s, t), "edge_f": edge_fscore(s, img),
        "texture_ratio": texture_energy(s) / max(texture_energy(t), 1e-9),
        "periodic_peak": foreign_spectral_peak(s, t),
        "baseline_ssim_quarter": ssim(downscale(img), downscale(t)),
        "baseline_ssim_full": ssim(img, t), "baseline_psnr_full": psnr(img, t),
        "baseline_color_error": color_error(img, t),
        "colortransfer_style_score": style_score(e_photo, teacher.style_vector(ct), e_t, vec),
        "colortransfer_ssim_quarter": ssim(downscale(ct), downscale(t)),
        "teacher_edge_f": edge_fscore(t, img),
    }
    return row, t, s


def flat_field(side: int, seed: int = 0) -> np.ndarray:
    """A flat colour with sensor-like noise: a wall or a sky, where a student's periodic pattern shows most."""
    rng = np.random.default_rng(seed)
    return np.clip(np.full((side, side, 3), (90, 140, 200), np.float32) + rng.normal(0, 3, (side, side, 3)),
                   0, 255).astype(np.uint8)


def evaluate(model: str, data: str | None, *, content_dir: str | None, styles_dir: str | None, sheet: str | None = None,
             side: int = 384, max_pairs: int = 36) -> dict:
    contents, styles = heldout_files(data, content_dir, styles_dir)
    teacher = Teacher()
    student = _StudentRunner(model)
    style_imgs = {p: read_image(p) for p in styles}
    style_vecs = [(p, teacher.style_vector(style_imgs[p])) for p in styles]
    rows, sheet_rows = [], []
    for i, cpath in enumerate(contents):
        img = center_square(read_image(cpath), side)
        e_photo = teacher.style_vector(img)
        for j, (spath, vec) in enumerate(style_vecs[: max(0, max_pairs - len(rows))]):
            row, t, s = pair_row(teacher, student, img, e_photo, style_imgs[spath], vec)
            rows.append({"content": cpath.name, "style": spath.name, **row})
            if (i + j) % 3 == 0 and len(sheet_rows) < 8:
                sheet_rows.append((img, center_square(style_imgs[spath], side), t, s))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k not in ("content", "style")}
    mean["color_error_ratio"] = mean["color_error"] / max(mean["baseline_color_error"], 1e-9)
    # per style: one unfamiliar palette can hide behind a good mean
    by_style = {name: {k: float(np.mean([r[k] for r in rows if r["style"] == name])) for k in PER_STYLE}
                for name in dict.fromkeys(r["style"] for r in rows)}
    flat = flat_field(side)
    for spath, vec in style_vecs:        # a periodic pattern shows most on flat regions (walls, sky, water)
        by_style.setdefault(spath.name, {})["flat_periodic_peak"] = foreign_spectral_peak(
            student(flat, vec), teacher.stylize(flat, vec))
    mean["flat_periodic_peak"] = float(np.mean([v["flat_periodic_peak"] for v in by_style.values()]))
    report = {"model": str(model), "pairs": len(rows), "side": side, "mean": mean, "by_style": by_style,
              "heldout_content": [p.name for p in contents], "heldout_styles": [p.name for p in styles],
              "cost": student_cost(model, side)}
    if sheet:
        write_contact_sheet(sheet, sheet_rows)
        report["sheet"] = sheet
    return report


def write_contact_sheet(path: str, rows: list[tuple[np.ndarray, ...]], tile: int = 256) -> None:
    """content | style | teacher | student, one row per pair, labelled."""
    labels = ("content", "style", "teacher", "student")
    pad = 4
    header = 22
    canvas = np.full((header + len(rows) * (tile + pad) + pad, 4 * (tile + pad) + pad, 3), 255, np.uint8)
    for c, name in enumerate(labels):
        cv2.putText(canvas, name, (pad + c * (tile + pad) + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for r, imgs in enumerate(rows):
        for c, img in enumerate(imgs):
            y, x = header + r * (tile + pad), pad + c * (tile + pad)
            canvas[y:y + tile, x:x + tile] = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
