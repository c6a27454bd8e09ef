"""GPU measurements for the device check (run by benchmarks/device_check.sh; writes JSON + a markdown table).

Sections, most wanted first; each is timed and guarded (one failure does not lose the others), and the
JSON and markdown are rewritten after every section and every row, so a run killed by a timeout keeps
what it measured (``running`` names the section it was in):

  env       GPU, driver, torch, CUDA, nvcc, usable CPUs, whether NVENC opens, the encoder `--codec auto` picks
  validate  PyTorch CUDA fp16 vs ONNX Runtime FP32: PSNR of the float and uint8 paths, 720p and 1080p
  model     model-only fps, PyTorch CUDA fp16 (channels_last, CUDA graph replays, device-resident input):
            720p and 1080p at batch 1/2/4/8, and the best batch
  hq        the same for the bundled student-hq at batch 1, after its fp16-vs-ORT-FP32 PSNR at 1080p
  convert   end to end through `streamer convert --backend torch --json` itself (a subprocess per row) on
            720p and 1080p clips: fps, the convert JSON's stage_ms_per_frame, the share of the wall time
            each stage is busy (stages run in parallel threads: the busiest bounds the fps), notices;
            then, if time is left, 1080p with --smooth off and an explicit `--codec h264_nvenc --preset p4`
  encode    the encoders alone on decoded frames: libx264 (veryfast, ultrafast; the threads convert uses)
            and h264_nvenc where it opens
  uint8     the torch engine's uint8 path host -> GPU -> host with 3 batches in flight, 720p and 1080p
  tensorrt  model-only fps on TensorRT where it imports (else the reason it does not)
  variants  1080p batch 1 without channels_last, in fp32 and without CUDA graphs

Every wait has a limit: the convert subprocesses run under a timeout, the whole script under --budget
(sections that no longer fit are recorded as skipped) and under the shell script's `timeout`.

Usage: python3 benchmarks/device_check.py OUTDIR [--weights streamer/models/student_live.pt] [--quick] [--budget S]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
SECTIONS = ("env", "validate", "model", "hq", "convert", "encode", "uint8", "tensorrt", "variants")
HQ_WEIGHTS = REPO / "streamer" / "models" / "student_hq.pt"   # the high-quality tier: the file default on a GPU


class Report:
    """The results dict, saved as JSON and markdown whenever something is added."""

    def __init__(self, out: Path, budget: float) -> None:
        self.out, self.t0, self.budget = out, time.perf_counter(), budget
        self.r: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv),
                        "budget_seconds": budget, "section_seconds": {}, "running": None}

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def save(self) -> None:
        self.r["elapsed_seconds"] = round(time.perf_counter() - self.t0, 1)
        for name, text in (("device_check.json", json.dumps(self.r, indent=1, default=str)),
                           ("device_check.md", render(self.r))):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.out / name)

    def row(self, section: str, row: dict, key: str = "rows") -> dict:
        """Append a row to results[section][key], print it, save."""
        self.r.setdefault(section, {}).setdefault(key, []).append(row)
        print(f"   {row}", flush=True)
        self.save()
        return row

    def section(self, name: str, fn, *, needs: float = 10.0) -> None:
        """Run fn(); store its dict (or the error, or 'skipped') under results[name]; save."""
        if self.left() < needs:
            self.r[name] = {**self.r.get(name, {}), "skipped": f"{self.left():.0f} s of the budget left, needs {needs:.0f}"}
            print(f"== {name}: skipped ({self.r[name]['skipped']})", flush=True)
            self.save()
            return
        print(f"== {name} ({self.left():.0f} s of the budget left)", flush=True)
        self.r["running"] = name
        self.save()
        t0 = time.perf_counter()
        try:
            result = fn()
            self.r[name] = {**self.r.get(name, {}), **(result or {})}
        except Exception as exc:  # noqa: BLE001 - keep going, record the error
            traceback.print_exc()
            self.r[name] = {**self.r.get(name, {}), "error": f"{type(exc).__name__}: {exc}"}
        self.r["section_seconds"][name] = round(time.perf_counter() - t0, 1)
        self.r["running"] = None
        print(f"   {name}: {self.r['section_seconds'][name]} s", flush=True)
        self.save()


def student_files(weights: Path | None, workdir: Path) -> tuple[Path, Path, str]:
    """(.pt, .onnx, origin): the trained student if present, else random weights (speed does not depend on them)."""
    import torch

    from engines.student import Student, StudentConfig, load_weights, save_checkpoint_weights

    if weights and weights.is_file():
        model, origin = load_weights(weights), f"trained ({weights.relative_to(REPO) if weights.is_relative_to(REPO) else weights.name})"
    else:
        torch.manual_seed(0)
        model, origin = Student(StudentConfig()).eval(), "random weights (no trained student.pt)"
        torch.nn.init.normal_(model.style_mlp[-1].weight, std=0.02)
    pt, onnx_path = workdir / "student.pt", workdir / "student.onnx"
    save_checkpoint_weights(model, pt)
    torch.onnx.export(model, (torch.rand(1, 3, 64, 64), torch.randn(1, 100)), str(onnx_path), dynamo=False,
                      opset_version=17, input_names=["frame", "style"], output_names=["stylized"],
                      dynamic_axes={"frame": {0: "N", 2: "H", 3: "W"}, "style": {0: "N"},
                                    "stylized": {0: "N", 2: "H", 3: "W"}})
    return pt, onnx_path, origin


def encode_fps(codec: str, preset: str | None, threads: int, frames: list[np.ndarray], path: Path) -> dict:
    """Frames per second of one encoder on frames already in memory (rgb24 -> yuv420p conversion included)."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=30, options={"preset": preset} if preset else {})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.time_base = Fraction(1, 30)
        vs.thread_type, vs.thread_count = "AUTO", threads
        t0 = time.perf_counter()
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            out.mux(vs.encode(vf))
        out.mux(vs.encode())
        secs = time.perf_counter() - t0
    return {"size": f"{w}x{h}", "codec": codec, "preset": preset or "", "threads": threads, "frames": len(frames),
            "fps": round(len(frames) / secs, 1)}


def run_convert(clip: Path, out: Path, pt: Path, max_size: int, batch: int, extra: tuple[str, ...],
                timeout: float) -> dict:
    """`streamer convert --backend torch --json` as a subprocess; its JSON plus wall time and stage shares."""
    cmd = [sys.executable, "-m", "streamer", "convert", str(clip), str(out), "--model", str(pt), "--backend", "torch",
           "--max-size", str(max_size), "--batch", str(batch), "--json", "-y", *extra]
    row: dict = {"args": " ".join(["--batch", str(batch), *extra])}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                           env=dict(os.environ, PYTHONPATH=f"{REPO}:{os.environ.get('PYTHONPATH', '')}"))
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr or ""
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
        row.update(rc=f"killed after {timeout:.0f} s", wall_seconds=round(time.perf_counter() - t0, 1),
                   stderr=err.strip()[-400:])
        return row
    row.update(rc=p.returncode, wall_seconds=round(time.perf_counter() - t0, 1))
    try:
        result = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        row["stderr"] = p.stderr.strip()[-600:]
        return row
    for key in ("frames", "width", "height", "processing", "seconds", "fps", "backend", "device", "notices",
                "stage_ms_per_frame", "error"):
        if key in result:
            row[key] = result[key]
    frames, secs = result.get("frames") or 0, result.get("seconds") or 0
    ms = result.get("stage_ms_per_frame") or {}
    if frames and secs:
        row["busy_share"] = {k: round(v * frames / 1000 / secs, 2) for k, v in ms.items()}
        row["limited_by"] = max(row["busy_share"], key=row["busy_share"].get) if ms else None
    if p.returncode:
        row["stderr"] = p.stderr.strip()[-600:]
    return row


def trt_model_fps(engine, batch: int, height: int, width: int, iters: int) -> float:
    """Model-only fps of a TensorRTEngine: execute_async_v3 replays on device-resident buffers, timed with events."""
    from engines.base import STYLE_DIM
    from engines.tensorrt_build import round_up

    cuda = engine._cuda
    ph, pw = round_up(height), round_up(width)
    with engine._pushed():
        slot = engine._inflight.slots[0]
        d_in, d_out = engine._net_buffers(slot, batch, ph, pw)
        d_style = slot.dev_buf("style", batch * STYLE_DIM * engine._dtype["style"].itemsize)
        cuda.memset_d8(d_in, 0, batch * 3 * ph * pw * engine._dtype["frame"].itemsize)
        cuda.memset_d8(d_style, 0, batch * STYLE_DIM * engine._dtype["style"].itemsize)
        stream = engine._compute
        for _ in range(5):
            engine._plan.execute((batch, ph, pw), d_in, d_out, d_style, stream)
        start, end = cuda.Event(), cuda.Event()
        start.record(stream)
        for _ in range(iters):
            engine._plan.execute((batch, ph, pw), d_in, d_out, d_style, stream)
        end.record(stream)
        end.synchronize()
        return batch * iters / (end.time_since(start) / 1000.0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--weights", type=Path, default=REPO / "streamer" / "models" / "student_live.pt")
    ap.add_argument("--quick", action="store_true", help="fewer iterations and frames")
    ap.add_argument("--budget", type=float, default=270.0, help="seconds for all sections (default 270)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "device_check"
    work.mkdir(parents=True, exist_ok=True)
    iters = 50 if args.quick else 200
    clip_frames = 150 if args.quick else 450
    rep = Report(args.out, args.budget)
    r = rep.r
    rep.save()                                  # a JSON exists from the first second on

    try:
        import torch

        from engines.torch import TorchEngine
        from streamer.codecs import NVENC_H264, encoder_usable, pick_encoder, usable_cpus, x264_threads
    except Exception as exc:  # noqa: BLE001
        r["error"] = f"{type(exc).__name__}: {exc}"
        rep.save()
        print(f"device check cannot start: {r['error']}", flush=True)
        return 1

    def env():
        def cmd(*a):
            try:
                return subprocess.run(a, capture_output=True, text=True, timeout=30).stdout.strip()
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"({type(exc).__name__})"
        auto = pick_encoder("auto", gpu=True, preset="veryfast", default_preset="veryfast")
        info = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                "cpu_count": os.cpu_count(), "usable_cpus": usable_cpus(),
                "nvcc": (cmd("nvcc", "--version").splitlines() or [""])[-1],
                "nvidia_smi": cmd("nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                  "--format=csv,noheader"),
                "nvenc": list(encoder_usable(NVENC_H264)),
                "auto_encoder": {"codec": auto.codec, "preset": auto.preset, "threads": auto.threads}}
        r["env"] = info
        rep.save()
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA GPU")
        info.update(gpu=torch.cuda.get_device_name(0), cudnn=torch.backends.cudnn.version())
        return info

    rep.section("env", env, needs=0)
    if "error" in r["env"]:
        for name in SECTIONS[1:]:
            r[name] = {"skipped": "no CUDA GPU"}
        rep.save()
        return 1

    pt, onnx_path, origin = student_files(args.weights, work)
    r["student"] = origin

    def validate():
        from streamer.gpu_tools import validate_torch

        out = {}
        for name, (w, h) in SIZES.items():
            out[name] = validate_torch(pt, onnx_path, device="cuda", width=w, height=h, batch=2 if name == "720p" else 1)
            r.setdefault("validate", {})[name] = out[name]
            rep.save()
        return out

    rep.section("validate", validate, needs=30)

    def model():
        engine = TorchEngine(pt, "cuda")
        try:
            for name, (w, h) in SIZES.items():
                for batch in (1, 2, 4, 8):
                    if rep.left() < 20:
                        return {"stopped": "budget"}
                    fps = engine.benchmark_model(batch, h, w, max(iters // batch, 25))
                    rep.row("model", {"size": name, "batch": batch, "variant": "fp16 channels_last graphs",
                                      "fps": round(fps, 1)})
        finally:
            engine.close()
        return {}

    rep.section("model", model, needs=30)
    rows = r.get("model", {}).get("rows", [])
    r.setdefault("model", {})["best"] = {s: max((x for x in rows if x["size"] == s), key=lambda x: x["fps"])
                                         for s in SIZES if any(x["size"] == s for x in rows)}
    torch.cuda.empty_cache()

    def hq():
        from streamer.gpu_tools import validate_carried_state, validate_torch

        if not HQ_WEIGHTS.is_file():
            return {"skipped": "student-hq is not bundled"}
        hq_onnx = HQ_WEIGHTS.with_suffix(".onnx")
        r["hq"] = {"validate_1080p": validate_torch(HQ_WEIGHTS, hq_onnx, device="cuda", width=1920, height=1080,
                                                    batch=1),
                   "carried_state_640x360": validate_carried_state(HQ_WEIGHTS, hq_onnx, device="cuda")}
        rep.save()
        engine = TorchEngine(HQ_WEIGHTS, "cuda")
        try:
            for name, (w, h) in SIZES.items():
                if rep.left() < 15:
                    return {"stopped": "budget"}
                fps = engine.benchmark_model(1, h, w, max(iters // 4, 25))
                rep.row("hq", {"size": name, "batch": 1, "variant": "student-hq fp16 channels_last graphs",
                               "fps": round(fps, 1)})
        finally:
            engine.close()
        return {}

    rep.section("hq", hq, needs=25)
    torch.cuda.empty_cache()

    clips: dict[str, Path] = {}

    def convert():
        from streamer.sample_media import write_clip

        for name, (w, h) in SIZES.items():
            clips[name] = write_clip(work / f"clip{name}.mp4", width=w, height=h, frames=clip_frames, audio=None,
                                     crf=20)
        limit = 60 if args.quick else 120
        plan = [("1080p", 4, ()), ("720p", 4, ()), ("1080p", 1, ()), ("720p", 1, ()),
                ("1080p", 4, ("--smooth", "off")), ("720p", 4, ("--codec", "h264_nvenc", "--preset", "p4"))]
        for name, batch, extra in plan:
            if rep.left() < limit / 2 + 10:
                rep.row("convert", {"size": name, "args": " ".join(["--batch", str(batch), *extra]),
                                    "skipped": "budget"})
                continue
            w, _ = SIZES[name]
            row = run_convert(clips[name], work / f"convert_{name}_b{batch}.mp4", pt, w, batch, extra,
                              timeout=min(limit, rep.left() - 5))
            rep.row("convert", {"size": name, **row})
        return {}

    rep.section("convert", convert, needs=60)

    def encode():
        import av

        n = 90 if args.quick else 240
        threads = x264_threads()
        for name, (w, h) in SIZES.items():
            if rep.left() < 15:
                return {"stopped": "budget"}
            clip = clips.get(name)
            if clip is None:
                from streamer.sample_media import write_clip

                clip = clips[name] = write_clip(work / f"clip{name}.mp4", width=w, height=h, frames=n, audio=None)
            with av.open(str(clip)) as c:
                frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(n), c.decode(video=0))]
            runs = [("libx264", "veryfast", threads), ("libx264", "ultrafast", threads)]
            runs.append((NVENC_H264, "p4", 0) if encoder_usable(NVENC_H264)[0] else (NVENC_H264, None, 0))
            for codec, preset, t in runs:
                if codec == NVENC_H264 and preset is None:
                    rep.row("encode", {"size": name, "codec": codec, "error": encoder_usable(codec)[1]})
                    continue
                try:
                    rep.row("encode", encode_fps(codec, preset, t, frames, work / f"enc_{name}_{codec}_{preset}.mp4"))
                except Exception as exc:  # noqa: BLE001
                    rep.row("encode", {"size": name, "codec": codec, "preset": preset,
                                       "error": f"{type(exc).__name__}: {exc}"})
        return {}

    rep.section("encode", encode, needs=20)

    style = (np.random.default_rng(0).standard_normal((1, 100)) * 0.5).astype(np.float32)

    def uint8():
        engine = TorchEngine(pt, "cuda")
        rng = np.random.default_rng(1)
        try:
            for name, (w, h) in SIZES.items():
                for batch in (1, 4):
                    frames = [rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8) for _ in range(4)]
                    engine.infer_uint8(frames[0], style)
                    n = max(iters // batch, 12)
                    t0 = time.perf_counter()
                    pending = []
                    for i in range(n):
                        pending.append(engine.submit_uint8(frames[i % 4], style))
                        if len(pending) == 3:
                            engine.collect(pending.pop(0))
                    for t in pending:
                        engine.collect(t)
                    secs = time.perf_counter() - t0
                    rep.row("uint8", {"size": name, "batch": batch, "in_flight": 3, "fps": round(n * batch / secs, 1)})
        finally:
            engine.close()
        return {}

    rep.section("uint8", uint8, needs=15)

    def tensorrt():
        from engines import tensorrt_build

        ok, why = tensorrt_build.availability()
        if not ok:
            return {"available": False, "reason": why}
        if rep.left() < 150:
            return {"available": True, "reason": why, "skipped": "an engine build needs about 2 minutes"}
        from engines.tensorrt import TensorRTEngine

        profile = tensorrt_build.make_profile((64, 64), (1920, 1080), (1920, 1080), 1, 8)
        engine = TensorRTEngine(onnx_path, profiles=(profile,), cache_dir=work / "trt", log=lambda *_: None)
        try:
            for name, (w, h) in SIZES.items():
                for batch in (1, 4, 8):
                    rep.row("tensorrt", {"size": name, "batch": batch, "variant": "fp16",
                                         "fps": round(trt_model_fps(engine, batch, h, w, max(iters // batch, 25)), 1)})
        finally:
            engine.close()
        return {"available": True, "reason": why}

    rep.section("tensorrt", tensorrt, needs=5)

    def variants():
        for variant, kw in (("fp16 contiguous graphs", {"channels_last": False}),
                            ("fp32 channels_last graphs", {"precision": "fp32"}),
                            ("fp16 channels_last eager", {"cuda_graphs": False})):
            if rep.left() < 10:
                return {"stopped": "budget"}
            e = TorchEngine(pt, "cuda", **kw)
            try:
                rep.row("variants", {"size": "1080p", "batch": 1, "variant": variant,
                                     "fps": round(e.benchmark_model(1, 1080, 1920, max(iters // 2, 25)), 1)})
            finally:
                e.close()
        return {}

    rep.section("variants", variants, needs=20)
    r["finished"] = True
    rep.save()
    print(render(r), flush=True)
    return 0


def _fmt(d: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (d or {}).items())


def render(r: dict) -> str:
    """The markdown summary of whatever the results hold so far."""
    lines = [f"# device check {r.get('date')}", ""]
    env = r.get("env") or {}
    lines.append(f"GPU: {env.get('gpu')} | {env.get('nvidia_smi')} | torch {env.get('torch')} CUDA {env.get('cuda')} | "
                 f"{env.get('nvcc')} | CPUs {env.get('usable_cpus')} usable of {env.get('cpu_count')} | "
                 f"student: {r.get('student')}")
    nvenc = env.get("nvenc") or [None, ""]
    auto = env.get("auto_encoder") or {}
    lines.append(f"NVENC opened: {'yes' if nvenc[0] else 'no'}{'' if nvenc[0] else ' (' + str(nvenc[1]) + ')'}; "
                 f"`--codec auto` on the GPU path encodes with {auto.get('codec')} preset {auto.get('preset')} "
                 f"threads {auto.get('threads')}")
    lines += ["", "| check | setting | result |", "| --- | --- | --- |"]
    for name, v in (r.get("validate") or {}).items():
        if isinstance(v, dict) and "psnr_db" in v:
            lines.append(f"| validate torch fp16 vs ORT fp32 | {name} b{v['batch']} | PSNR {v['psnr_db']} dB float, "
                         f"{v['psnr_uint8_db']} dB uint8, {'PASS' if v['passed'] else 'FAIL'} |")
    for row in (r.get("model") or {}).get("rows", []):
        lines.append(f"| model-only fps torch | {row['size']} b{row['batch']} {row['variant']} | {row['fps']} |")
    for size, row in ((r.get("model") or {}).get("best") or {}).items():
        lines.append(f"| model-only fps torch, best batch | {size} | {row['fps']} at b{row['batch']} |")
    hq = r.get("hq") or {}
    if isinstance(hq.get("validate_1080p"), dict) and "psnr_db" in hq["validate_1080p"]:
        v = hq["validate_1080p"]
        lines.append(f"| validate student-hq torch fp16 vs ORT fp32 | 1080p b1 | PSNR {v['psnr_db']} dB float, "
                     f"{v['psnr_uint8_db']} dB uint8, {'PASS' if v['passed'] else 'FAIL'} |")
    c = hq.get("carried_state_640x360")
    if isinstance(c, dict) and "psnr_db_min" in c:
        lines.append(f"| student-hq carried state, torch uint8 vs ORT fp32 | {c['size']}, {c['frames']} frames | "
                     f"min PSNR {c['psnr_db_min']} dB, {'PASS' if c['passed'] else 'FAIL'} |")
    for row in hq.get("rows", []):
        lines.append(f"| model-only fps torch | {row['size']} b{row['batch']} {row['variant']} | {row['fps']} |")
    for row in (r.get("convert") or {}).get("rows", []):
        setting = f"{row.get('size')} {row.get('args', '')}"
        if "fps" in row:
            lines.append(f"| `streamer convert` fps | {setting} | {row['fps']} ({row.get('frames')} frames, "
                         f"{row.get('wall_seconds')} s wall with start-up); ms/frame: {_fmt(row.get('stage_ms_per_frame'))}; "
                         f"busy share: {_fmt(row.get('busy_share'))}; limited by {row.get('limited_by')}"
                         f"{'; ' + ' '.join(row['notices']) if row.get('notices') else ''} |")
        else:
            lines.append(f"| `streamer convert` | {setting} | {row.get('skipped') or 'rc ' + str(row.get('rc'))} "
                         f"{str(row.get('stderr', ''))[-300:]} |".replace("\n", " "))
    for row in (r.get("encode") or {}).get("rows", []):
        lines.append(f"| encode fps | {row.get('size')} {row['codec']} {row.get('preset') or ''} "
                     f"threads {row.get('threads', '')} | {row.get('fps', row.get('error'))} |")
    for row in (r.get("uint8") or {}).get("rows", []):
        lines.append(f"| uint8 host->GPU->host fps torch | {row['size']} b{row['batch']} in flight {row['in_flight']} | "
                     f"{row['fps']} |")
    trt = r.get("tensorrt") or {}
    if trt.get("reason") and not trt.get("rows"):
        lines.append(f"| TensorRT | available: {trt.get('available')} | {trt['reason']} {trt.get('skipped', '')} |")
    for row in trt.get("rows", []):
        lines.append(f"| model-only fps TensorRT | {row['size']} b{row['batch']} {row['variant']} | {row['fps']} |")
    for row in (r.get("variants") or {}).get("rows", []):
        lines.append(f"| model-only fps torch | {row['size']} b{row['batch']} {row['variant']} | {row['fps']} |")
    for name in SECTIONS:
        v = r.get(name)
        if isinstance(v, dict) and ("error" in v or "skipped" in v):
            lines.append(f"| {name} | {'error' if 'error' in v else 'skipped'} | "
                         f"{str(v.get('error') or v.get('skipped'))[:300]} |")
    if r.get("error"):
        lines.append(f"| start | error | {r['error'][:300]} |")
    lines += ["", f"section seconds: {r.get('section_seconds')}; elapsed {r.get('elapsed_seconds')} s"
                  f"{'; killed or still running in: ' + r['running'] if r.get('running') else ''}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
