"""Shared test helpers: real clips (``make_clip``: `streamer.sample_media.write_clip`, the project's one clip
writer: a window panning across a bundled painting, with a chirp audio track), a probe of what a file holds,
and a way to run the CLI.  Nothing here reads ../shared or the network.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamer.sample_media import painting, panning_frames, write_clip as make_clip  # noqa: E402,F401 - the one clip writer


def probe(path: Path) -> dict:
    """What the fidelity tests compare: size, time base, pts of every frame, rotation, colour tags, audio."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"width": v.codec_context.width, "height": v.codec_context.height, "time_base": v.time_base,
                "video_codec": v.codec_context.name,
                # colour tags as FFmpeg numbers: primaries, transfer, matrix, range (2, 2, 2, 0: none)
                "colour": (v.codec_context.color_primaries, v.codec_context.color_trc, v.codec_context.colorspace,
                           v.codec_context.color_range),
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
def prepared(tmp_path_factory) -> Path:
    """A tiny distillation cache: 10 teacher pairs from the test photos and the bundled styles, one of each held out."""
    from distill.data import prepare   # runs the teacher: only the distillation tests ask for it

    out = tmp_path_factory.mktemp("prep")
    prepare(str(Path(__file__).parent / "data" / "content"), str(REPO / "streamer" / "assets" / "styles"), str(out),
            pairs=10, holdout_content=1, holdout_styles=1, seed=0, progress=False)
    return out


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


@pytest.fixture
def mount_tmpfs(tmp_path):
    """mount_tmpfs(name, size="1m", ro=False) -> a real tmpfs, unmounted after the test; skips where not permitted."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "1m", ro: bool = False) -> Path:
        d = tmp_path / name
        d.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'}): needs root or "
                        "CAP_SYS_ADMIN")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
