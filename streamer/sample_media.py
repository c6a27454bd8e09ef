"""Real test media made on the spot: a window panning across a bundled painting, with a synthesized audio track.

The one clip writer of the project: the tests (through ``tests/conftest.py``), ``streamer bench``'s
generated clips and the benchmarks all use it, so every measured or tested clip has real image
content and real motion, and nothing depends on files outside the package.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from streamer.media_files import read_image
from streamer.styles import bundled_styles


def painting(name: str = "hokusai_bridge") -> np.ndarray:
    """A bundled painting as HxWx3 uint8 RGB."""
    return read_image(bundled_styles()[name])


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


def chirp(seconds: float, rate: int = 44100) -> np.ndarray:
    """A rising tone with a harmonic, int16 mono: audible, and different in every audio frame."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * (220 + 200 * t) * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
    return (wave * 32767).astype(np.int16)


def write_clip(path: str | Path, *, width: int = 64, height: int = 48, frames: int = 10, fps: int = 30,
               codec: str = "libx264", pix_fmt: str = "yuv420p", pts: list[int] | None = None,
               time_base: Fraction | None = None, audio: str | None = "aac", audio_seconds: float | None = None,
               rotation: int = 0, faststart: bool = False, style: str = "hokusai_bridge",
               crf: int | None = None, audio_rate: int = 44100, audio_layout: str = "mono",
               audio_start: float = 0.0, audio_format: str | None = None) -> Path:
    """Write a clip of a window panning over a painting (+ a chirp audio track unless audio=None).

    ``audio`` names the audio encoder (aac, pcm_s16le, flac, libopus, ac3, ...); ``audio_rate``, ``audio_layout``
    (mono, stereo, 5.1, ...) and ``audio_format`` (a sample format the encoder takes; default: its first one)
    shape the track, which starts ``audio_start`` seconds into the clip (video starts late: pass ``pts``).
    """
    path = Path(path)
    options = {"movflags": "+faststart"} if faststart else {}
    out = av.open(str(path), "w", options=options)
    vopts = {"preset": "ultrafast"} if codec == "libx264" else {}
    if crf is not None:
        vopts["crf"] = str(crf)
    vs = out.add_stream(codec, rate=fps, options=vopts)
    vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
    tb = time_base or Fraction(1, fps)
    vs.codec_context.time_base = tb
    if rotation:
        vs.set_display_rotation(rotation)
    a_stream = None
    if audio:
        a_stream = out.add_stream(audio, rate=audio_rate)
        a_stream.layout = audio_layout
        formats = [f.name for f in (a_stream.codec_context.codec.audio_formats or [])]
        a_stream.format = audio_format or (formats[0] if formats else "s16")
        a_stream.codec_context.time_base = Fraction(1, audio_rate)
    if pts is None:
        pts = [i * round(1 / (fps * tb)) for i in range(frames)]
    for i, img in enumerate(panning_frames(width, height, len(pts), style)):
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        vf.pts, vf.time_base = pts[i], tb
        out.mux(vs.encode(vf))
    out.mux(vs.encode())
    if a_stream is not None:
        seconds = audio_seconds if audio_seconds is not None else float((pts[-1] + round(1 / (fps * tb))) * tb)
        channels = av.AudioLayout(audio_layout).nb_channels
        wave = np.repeat(chirp(seconds, audio_rate)[None], channels, axis=0)      # planar: one row per channel
        af = av.AudioFrame.from_ndarray(wave, format="s16p", layout=audio_layout)
        af.sample_rate, af.pts, af.time_base = audio_rate, round(audio_start * audio_rate), Fraction(1, audio_rate)
        out.mux(a_stream.encode(af))
        out.mux(a_stream.encode())
    out.close()
    return path
