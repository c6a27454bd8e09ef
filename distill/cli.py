"""`distill` command line: prepare, train, export, eval.

Errors follow streamer's contract: one line, ``distill: error: FILE-OR-FOLDER: problem``, exit code 2 for bad input
(a missing or empty folder, too few images for the held-out split, a folder that is not a prepared cache, missing
or unreadable weights), 130 for Ctrl-C, 1 for anything else; ``--debug`` adds the traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from distill.data import check_prepared, prepare, read_manifest
from distill.evaluate import evaluate
from streamer.errors import EXIT_FAILURE, EXIT_SIGINT, EXIT_USAGE, InputError, StreamerError, one_line
from streamer.media_files import same_file

PROG = "distill"


def _prepare(a: argparse.Namespace) -> int:
    manifest = prepare(a.content, a.styles, a.out, pairs=a.pairs, holdout_content=a.holdout_content,
                       holdout_styles=a.holdout_styles, seed=a.seed, threads=a.threads, progress=not a.quiet,
                       palette_jitter=a.palette_jitter, photo_styles=a.photo_styles)
    print(json.dumps({k: manifest[k] for k in ("pairs", "seconds", "heldout_content", "heldout_styles")}))
    return 0


def _train(a: argparse.Namespace) -> int:
    parts = [x for x in a.data.split(",") if x]
    if not parts:
        raise InputError("--data: no cache folder given")
    for part in parts:                      # before torch loads: a bad cache fails at once
        check_prepared(part)
    check_train_options(a, [read_manifest(part) for part in parts])
    if a.init:
        weights_file(a.init, "--init")
    elif a.arch == "hq":
        raise InputError("--arch hq starts from the teacher's weights: give --init from `distill hq-init`")
    from distill.train import TrainConfig, train   # torch: only the commands that train or export load it

    cfg = TrainConfig(data=a.data, out=a.out, steps=a.steps, minutes=a.minutes, batch=a.batch, crop=a.crop, lr=a.lr,
                      seed=a.seed, device=a.device, threads=a.threads, resume=not a.no_resume, init=a.init,
                      w_temporal=a.w_temporal, w_perceptual=a.w_perceptual, w_style=a.w_style,
                      w_texture=a.w_texture, w_ssim4=a.w_ssim4, w_stylespace=a.w_stylespace, w_color=a.w_color, w_spectrum=a.w_spectrum,
                      arch=a.arch, c1=a.c1, c2=a.c2, blocks=a.blocks, c3=a.c3, blocks3=a.blocks3)
    result = train(cfg, progress=not a.quiet)
    print(json.dumps(result))
    return 0


def check_train_options(a: argparse.Namespace, manifests: list[dict]) -> None:
    """Numbers the training loop would fail on deep inside torch or NumPy (or, for --steps, silently write an
    untrained student for), refused before the run folder is made."""
    if a.steps < 1:
        raise InputError(f"--steps {a.steps}: must be at least 1")
    if a.minutes is not None and not a.minutes > 0:
        raise InputError(f"--minutes {a.minutes:g}: must be a positive number of minutes")
    if not a.lr > 0:
        raise InputError(f"--lr {a.lr:g}: must be positive")
    if a.batch < 1:
        raise InputError(f"--batch {a.batch}: must be at least 1")
    side = min(int(m.get("side", 384)) for m in manifests)
    if a.crop % 8 or not 32 <= a.crop <= side:
        raise InputError(f"--crop {a.crop}: a multiple of 8 from 32 to the cache's {side} px (the student's strides)")
    if a.device not in ("auto", "cpu", "cuda") and not a.device.startswith("cuda:"):
        raise InputError(f"--device {a.device}: use auto, cpu or cuda")


def _hq_init(a: argparse.Namespace) -> int:
    check_prepared(a.data)
    if a.frame_moments is not None and not 0 <= a.frame_moments < 1:
        raise InputError(f"--frame-moments {a.frame_moments:g}: the share of the previous frame's moments, from 0 "
                         "up to (not including) 1")
    if a.window < 0:
        raise InputError(f"--window {a.window}: must be 0 (none) or more pixels")
    for flag, value in (("--styles", a.styles), ("--photos", a.photos)):
        if value < 1:
            raise InputError(f"{flag} {value}: must be at least 1")
    if a.side % 8 or a.side < 32:
        raise InputError(f"--side {a.side}: a multiple of 8 from 32")
    if not 1 <= a.blocks <= 5:
        raise InputError(f"--blocks {a.blocks}: from 1 to the teacher's 5")
    if a.kernel not in (1, 3, 5, 7, 9):
        raise InputError(f"--kernel {a.kernel}: an odd size from 1 to the teacher's 9")
    from distill.hq_init import hq_init   # torch, see _train

    print(json.dumps(hq_init(a.data, a.out, styles=a.styles, photos=a.photos, side=a.side, seed=a.seed,
                             window=a.window, keep=a.frame_moments, blocks=a.blocks, kernel=a.kernel)))
    return 0


def _export(a: argparse.Namespace) -> int:
    weights_file(a.weights, "--weights")
    if same_file(a.weights, a.out):
        raise InputError(f"{a.out}: is the --weights file; refusing to overwrite it (give another --out)")
    from distill.export_formats import export_format, parse_size   # torch, see _train

    fmt = "onnx-fp16" if a.fp16 else a.format
    print(json.dumps(export_format(a.weights, a.out, fmt, size=parse_size(a.size), calib_dir=a.calib,
                                   threads=a.threads)))
    return 0


def _eval(a: argparse.Namespace) -> int:
    weights_file(a.model, "--model")
    if a.pairs < 1:
        raise InputError(f"--pairs {a.pairs}: must be at least 1")
    if a.side < 32:
        raise InputError(f"--side {a.side}: must be at least 32 px")
    report = evaluate(a.model, a.data, content_dir=a.content, styles_dir=a.styles, sheet=a.sheet, side=a.side,
                      max_pairs=a.pairs)
    print(json.dumps(report, indent=1))
    return 0


def weights_file(path: str, flag: str) -> Path:
    """A weights or model file that exists, or the one-line error naming it."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file ({flag}; `distill train` writes student.pt, `distill export` the .onnx)")
    if not p.is_file():
        raise InputError(f"{p}: not a file ({flag})")
    return p


def build_parser() -> argparse.ArgumentParser:
    # --debug before or after the command's name (SUPPRESS: a command's parser does not reset the top level's)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    p = argparse.ArgumentParser(prog=PROG, description="Distill the streamer student from the Magenta teacher.",
                                parents=[common])
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    s = command("prepare", help="image folders -> cached teacher targets")
    s.add_argument("--content", required=True, help="folder of content photos")
    s.add_argument("--styles", required=True, help="folder of style images (paintings)")
    s.add_argument("--out", required=True, help="cache folder")
    s.add_argument("--pairs", type=int, default=2000)
    s.add_argument("--holdout-content", type=int, default=None,
                   help="photos held out for `distill eval` (default 12, fewer for small folders: a quarter of them)")
    s.add_argument("--holdout-styles", type=int, default=None,
                   help="paintings held out for `distill eval` (default 3, fewer for small folders: a quarter of them)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--palette-jitter", type=float, default=0.0,
                   help="fraction of painting crops re-coloured (hue rotation, saturation) to widen the style space")
    s.add_argument("--photo-styles", type=float, default=0.1, help="fraction of pairs styled by a content photo")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_prepare)

    t = command("train", help="train the student on a prepared cache (resumes from OUT/last.pt)")
    t.add_argument("--data", required=True, help="prepared cache folder(s), comma-separated")
    t.add_argument("--out", required=True, help="run folder: checkpoints, log, final weights")
    t.add_argument("--steps", type=int, default=12000)
    t.add_argument("--minutes", type=float, default=None, help="stop after this wall time (checkpointed, resumable)")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--crop", type=int, default=192)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--w-temporal", type=float, default=5.0)
    t.add_argument("--w-perceptual", type=float, default=0.2)
    t.add_argument("--w-style", type=float, default=1.0)
    t.add_argument("--w-texture", type=float, default=1.0, help="weight of the texture-energy (anti-blur) term")
    t.add_argument("--w-ssim4", type=float, default=1.0, help="weight of 1 - SSIM on 4x-downscaled images")
    t.add_argument("--w-stylespace", type=float, default=0.0,
                   help="weight of the squared distance between the style vectors of output and teacher output")
    t.add_argument("--w-color", type=float, default=0.0,
                   help="weight of the L1 between 8x-downscaled output and teacher output (palette and colour layout)")
    t.add_argument("--w-spectrum", type=float, default=0.0,
                   help="weight of the L1 between log power spectra of output and teacher output (no periodic patterns)")
    t.add_argument("--arch", default="film", choices=("film", "hq"),
                   help="film: the small FiLM student (--c1 .. --blocks3); hq: the teacher's network without instance "
                        "norm (needs --init from `distill hq-init`)")
    t.add_argument("--c1", type=int, default=16, help="channels at 1/2 resolution")
    t.add_argument("--c2", type=int, default=32, help="channels at 1/4 resolution")
    t.add_argument("--blocks", type=int, default=4, help="residual blocks at 1/4 resolution")
    t.add_argument("--c3", type=int, default=0, help="channels of the 1/8-resolution branch (0: none)")
    t.add_argument("--blocks3", type=int, default=0, help="residual blocks in the 1/8 branch")
    t.add_argument("--no-resume", action="store_true")
    t.add_argument("--init", default=None, help="warm start from these student weights (ignored when resuming)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train)

    h = command("hq-init", "the high-quality student's starting weights: the teacher's, without instance norm")
    h.add_argument("--data", required=True, help="a prepared cache: its style vectors and photos fit the moments")
    h.add_argument("--out", required=True, help="weights .pt for `distill train --arch hq --init`")
    h.add_argument("--styles", type=int, default=256, help="style vectors the moments are fitted on")
    h.add_argument("--photos", type=int, default=6, help="photos the teacher's moments are averaged over")
    h.add_argument("--side", type=int, default=256, help="photo crop side")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--window", type=int, default=0, help="measure each norm's moments over this many pixels around "
                   "each pixel (0: predict them from the style, fitted here)")
    h.add_argument("--frame-moments", type=float, default=None, metavar="KEEP",
                   help="the teacher's whole-frame moments carried over time instead: each frame normalized by KEEP "
                        "x the previous frame's moments + (1 - KEEP) x its own (the shipped tier: 0.98)")
    h.add_argument("--blocks", type=int, default=5, help="residual blocks kept of the teacher's 5 (spread evenly): "
                   "a pruned start for a cheaper student, which `distill train` then repairs")
    h.add_argument("--kernel", type=int, default=9, help="the outer convs' kernel: the centre of the teacher's 9x9")
    h.set_defaults(func=_hq_init)

    e = command("export", help="student weights -> ONNX, TorchScript or TFLite (frame, style -> stylized), checked "
                               "against ONNX Runtime fp32 before it is kept")
    e.add_argument("--weights", required=True, help="student .pt (config + state_dict; `streamer tune` writes "
                                                    "NAME.pt beside NAME.onnx)")
    e.add_argument("--out", required=True, help="output file (.onnx, .pt for torchscript, .tflite)")
    e.add_argument("--format", default="onnx", choices=("onnx", "onnx-fp16", "onnx-int8", "torchscript", "tflite",
                                                         "tflite-int8"),
                   help="onnx (default; dynamic N, H, W), onnx-fp16 (TensorRT), onnx-int8 (static QDQ, calibrated), "
                        "torchscript (dynamic N, H, W), tflite / tflite-int8 (fixed --size, batch 1)")
    e.add_argument("--size", default="640x360", help="WxH, multiples of 8: the TFLite input size, the check and "
                                                     "calibration frames' size (default 640x360)")
    e.add_argument("--calib", default=None, help="folder of images/videos for onnx-int8 calibration (default: the "
                                                 "bundled sample clip)")
    e.add_argument("--threads", type=int, default=None, help="threads for the check's runtimes (default: all)")
    e.add_argument("--fp16", action="store_true", help="same as --format onnx-fp16")
    e.set_defaults(func=_export)

    v = command("eval", help="held-out quality against the teacher, parameters, FLOPs, contact sheet")
    v.add_argument("--model", required=True, help="student .onnx or .pt")
    v.add_argument("--data", help="prepared cache (for its held-out file list)")
    v.add_argument("--content", help="content folder (held-out images are taken from the cache manifest)")
    v.add_argument("--styles", help="styles folder")
    v.add_argument("--side", type=int, default=384)
    v.add_argument("--pairs", type=int, default=36)
    v.add_argument("--sheet", default=None, help="write a contact sheet PNG here")
    v.set_defaults(func=_eval)
    return p


def describe(exc: BaseException) -> str:
    """One line for the user: the file or folder first where the error names one."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    return one_line(exc)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except (StreamerError, OSError, ValueError) as exc:     # bad input: a folder, a cache, a weights file, an option
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {describe(exc)}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, StreamerError) else EXIT_USAGE
    except Exception as exc:   # noqa: BLE001 - the promise is one line, never a traceback
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
