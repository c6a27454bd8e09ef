"""`python -m distill.tune_bundled`: every bundled style tuned for a tier, as `--style NAME` then runs it.

Each style gets `streamer tune NAME` with its defaults (5 minutes), written to ``streamer/models/tuned/`` as
``STEM.STYLE.onnx`` (and the ``.pt`` for the torch backend), and recorded in ``MANIFEST.json`` with the SHA-256 of
the tier's ONNX and of the style image it was tuned from: `streamer.model_registry.tuned_styles` uses an entry
only while both still match, so retraining a tier never runs a stale tuned model (run this again instead).
Styles whose entry is still valid are skipped (``--force`` tunes them again), so an interrupted run resumes. A style
whose tuned score does not beat the base by ``MIN_GAIN`` (the score's noise) within the tuner's guards (SSIM/4,
periodic peak, flicker) ships no tuned model: `--style NAME` then runs the arbitrary student.

    python -m distill.tune_bundled --tier student-live [--minutes 5] [--threads 2] [--style starry_night ...]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from distill.export import export_replacing
from distill.tune import TuneOptions, checkpoint_path, tune
from streamer.bench import cpu_flags, machine_info
from streamer.errors import InputError
from streamer.model_registry import (TIERS, TUNED_DIR, TUNED_MANIFEST, sha256, tier_files,
                                     tuned_styles)
from streamer.styles import bundled_styles


MIN_GAIN = 0.03   # the tuner's held-out score moves about +-0.03 between neighbouring evaluations


def read_manifest() -> dict:
    """Every tier's entries (the file is shared by tiers and by runs for different styles)."""
    try:
        return json.loads(TUNED_MANIFEST.read_text())
    except FileNotFoundError:
        return {}


def write_manifest(manifest: dict) -> None:
    """Atomically: a reader never sees half a manifest."""
    tmp = TUNED_MANIFEST.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, TUNED_MANIFEST)


def cpu_line() -> str:
    """The machine as every result of this project names it: CPU model, cores, the vector flags that set speed."""
    info = machine_info()
    flags = " ".join(f for f in cpu_flags() if f.startswith("avx512") or f == "avx2")
    return f"{info['cpu']}, {info['cores']} cores ({flags})"


def tune_style(tier: str, style: str, minutes: float, threads: int | None) -> dict:
    """One bundled style: tune in a scratch folder, move both files into place, return its manifest entry. (The
    tuner writes its best checkpoint as it goes, starting with the base's weights: done in place, a run that
    stops would leave a shipped tuned model's .pt out of step with its .onnx.)"""
    onnx, _ = tier_files(tier)
    image = bundled_styles()[style]
    final = TUNED_DIR / f"{TIERS[tier]}.{style}.onnx"
    with tempfile.TemporaryDirectory(prefix=".tune-", dir=TUNED_DIR) as scratch:
        out = Path(scratch) / final.name
        report = tune(TuneOptions(painting=str(image), out=str(out), minutes=minutes, model=tier, overwrite=True,
                                  threads=threads))
        if report["best_step"] > 0:
            os.replace(checkpoint_path(out), checkpoint_path(final))
            os.replace(out, final)
    return {"onnx": final.name, "pt": checkpoint_path(final).name, "style_file": image.name,
            "base_sha256": sha256(onnx), "style_sha256": sha256(image),
            "before": report["before"], "after": report["after"],
            "colortransfer_style_score": report["colortransfer_style_score"],
            "scope": report["scope"], "minutes": report["minutes"], "steps": report["steps"],
            "best_step": report["best_step"],
            "heldout_photos": report["heldout_photos"], "threads": threads or os.cpu_count(),
            "machine": cpu_line(), "date": time.strftime("%Y-%m-%d"), "python": platform.python_version()}


def reexport(tier: str) -> int:
    """The tuned ONNX files again from their .pt, each checked against PyTorch by `distill.export`; the manifest
    then names the tier's current ONNX as their base. Weights and scores are unchanged, only the graph is new."""
    onnx, _ = tier_files(tier)
    manifest = read_manifest()
    for style, entry in manifest.get(tier, {}).items():
        final = TUNED_DIR / entry["onnx"]
        report = export_replacing(str(TUNED_DIR / entry["pt"]), final)
        entry["base_sha256"] = sha256(onnx)
        print(f"{style}: {final.name} exported again (at most {report['max_abs_diff_vs_torch']:.1e} from PyTorch)")
    write_manifest(manifest)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", default="student-live", choices=sorted(TIERS))
    ap.add_argument("--style", action="append", help="only these bundled styles (default: all)")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--force", action="store_true", help="tune again styles whose tuned model is still valid")
    ap.add_argument("--reexport", action="store_true",
                    help="no tuning: export every tuned .pt of the tier to ONNX again and record the tier's ONNX as "
                         "their base (after a change to the network's graph that keeps its weights)")
    args = ap.parse_args(argv)
    if args.reexport:
        return reexport(args.tier)
    onnx, pt = tier_files(args.tier)
    if onnx is None or pt is None:
        raise SystemExit(f"{args.tier}: needs both its .onnx and its .pt bundled")
    styles = args.style or list(bundled_styles())
    unknown = [s for s in styles if s not in bundled_styles()]
    if unknown:
        raise SystemExit(f"{', '.join(unknown)}: not bundled styles (bundled: {', '.join(bundled_styles())})")
    TUNED_DIR.mkdir(exist_ok=True)
    for style in styles:
        if style in tuned_styles(args.tier) and not args.force:
            print(f"{style}: tuned model still valid, skipped (--force tunes it again)")
            continue
        t0 = time.time()
        try:
            entry = tune_style(args.tier, style, args.minutes, args.threads)
        except InputError as exc:
            raise SystemExit(f"{style}: {exc}") from None
        manifest = read_manifest()           # re-read: another run may have added styles meanwhile
        gain = entry["after"]["style_score"] - entry["before"]["style_score"]
        if gain < MIN_GAIN:                  # nothing, or no more than the score's noise, for more flicker: ship none
            manifest.get(args.tier, {}).pop(style, None)
            for name in (entry["onnx"], entry["pt"]):
                (TUNED_DIR / name).unlink(missing_ok=True)
        else:
            manifest.setdefault(args.tier, {})[style] = entry
        write_manifest(manifest)
        print(f"not shipped (gain under {MIN_GAIN}): " if gain < MIN_GAIN else "", end="")
        print(f"{style}: style score {entry['before']['style_score']:.3f} -> {entry['after']['style_score']:.3f}, "
              f"SSIM/4 {entry['before']['ssim_quarter']:.3f} -> {entry['after']['ssim_quarter']:.3f}, "
              f"{entry['steps']} steps, {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
