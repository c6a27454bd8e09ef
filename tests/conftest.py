"""Shared test helpers: real clips made with PyAV from real pixels, and a way to run the CLI.

Clips pan a window across a bundled painting (real image content, moving), with a synthesized
audio track (a chirp with harmonics).  Nothing here reads ../shared or the network.
"""
from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
STYLE_DIR = REPO / "streamer" / "assets" / "styles"
sys.path.insert(0, str(REPO))


def painting(name: str = "hokusai_bridge") -> np.ndarray:
    img = cv2.imread(str(STYLE_DIR / f"{name}.jpg"), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def panning_frames(width: int, height: int, n: int, name: str = "hokusai_bridge") -> list[np.ndarray]:
    """n frames of a window sliding diagonally over a painting scaled to about twice the frame size."""
    img = painting(name)
    scale = max(2 * width / img.shape[1], 2 * height / img.shape[0])
    img = cv2.resize(img, (int(img.shape[1] * scale) + 1, int(img.shape[0] * scale) + 1), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        t = i / max(n - 1, 1)
        x, y = int(t * (img.shape[1] - width)), int(t * (img.shape[0] - height) * 0.5)
        frames.append(np.ascontiguousarray(img[y:y + height, x:x + width]))
    return frames


def make_clip(path: Path, *, width: int = 64, height: int = 48, frames: int = 10, fps: int = 30,
              codec: str = "libx264", pix_fmt: str = "yuv420p", pts: list[int] | None = None,
              time_base: Fraction | None = None, audio: str | None = "aac", audio_seconds: float | None = None,
              rotation: int = 0, faststart: bool = False, style: str = "hokusai_bridge") -> Path:
    """Write a real clip: panning painting video (+ a chirp audio track unless audio=None)."""
    options = {"movflags": "+faststart"} if faststart else {}
    out = av.open(str(path), "w", options=options)
    vs = out.add_stream(codec, rate=fps, options={"preset": "ultrafast"} if codec == "libx264" else {})
    vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
    tb = time_base or Fraction(1, fps)
    vs.codec_context.time_base = tb
    if rotation:
        vs.set_display_rotation(rotation)
    a_stream = None
    if audio:
        a_stream = out.add_stream(audio, rate=44100)
        a_stream.layout = "mono"
    if pts is None:
        pts = [i * round(1 / (fps * tb)) for i in range(frames)]
    for i, img in enumerate(panning_frames(width, height, len(pts), style)):
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        vf.pts, vf.time_base = pts[i], tb
        out.mux(vs.encode(vf))
    out.mux(vs.encode())
    if a_stream is not None:
        seconds = audio_seconds if audio_seconds is not None else float((pts[-1] + round(1 / (fps * tb))) * tb)
        sr = 44100
        t = np.arange(int(seconds * sr)) / sr
        wave = 0.3 * np.sin(2 * np.pi * (220 + 200 * t) * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
        af = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16)[None], format="s16", layout="mono")
        af.sample_rate, af.pts = sr, 0
        out.mux(a_stream.encode(af))
        out.mux(a_stream.encode())
    out.close()
    return path


def probe(path: Path) -> dict:
    """What the fidelity tests compare: size, time base, pts of every frame, rotation, audio."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"width": v.codec_context.width, "height": v.codec_context.height, "time_base": v.time_base,
                "audio": [(a.codec_context.name, a.time_base) for a in c.streams.audio]}
        frames = list(c.decode(v))
        info["pts"] = [f.pts for f in frames]
        info["rotation"] = frames[0].rotation if frames else 0
        info["first"] = frames[0].to_ndarray(format="rgb24") if frames else None
    with av.open(str(path)) as c:
        durations = {}
        for p in c.demux(*c.streams.audio):
            if p.size and p.duration:
                durations[p.stream_index] = durations.get(p.stream_index, 0) + float(p.duration * p.time_base)
        info["audio_seconds"] = sorted(durations.values())
    return info


def run_cli(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "streamer", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=kw.pop("cwd", REPO), **kw)


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if ".streamer-tmp-" in p.name]


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A small valid MP4 (64x48, 10 frames, 30 fps, AAC)."""
    return make_clip(tmp_path_factory.mktemp("clips") / "small.mp4")


@pytest.fixture(scope="session")
def encoder():
    from streamer.styles import StyleEncoder

    return StyleEncoder()


@pytest.fixture(scope="session")
def identity_converter(encoder):
    """Converter factory sharing one style encoder; identity model so the pipeline itself is under test."""
    from streamer.convert import ConvertOptions, Converter

    def make(**kw):
        kw.setdefault("model", "identity")
        kw.setdefault("preset", "ultrafast")
        return Converter(ConvertOptions(**kw), encoder=encoder)

    return make
