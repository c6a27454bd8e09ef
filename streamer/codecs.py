"""Video encoder choice: NVENC (``h264_nvenc``) where the driver offers it, else libx264, with a one-line notice.

PyAV's wheels list ``h264_nvenc`` in ``av.codecs_available`` whether or not an
NVIDIA driver is present, so the only real test is to open the encoder once
(``avcodec_open2`` fails without the driver's NVENC library or a capable GPU:
a CPU-only machine, or a GPU without NVENC such as the H100/H200).

Speed presets come in two families that do not understand each other: NVENC's
``p1`` (fastest) .. ``p7`` (best), and x264/x265's ``ultrafast`` .. ``veryslow``.
:func:`pick_encoder` maps a preset of one family to the other's nearest when the
encoder that will run is of the other family (``--codec h264_nvenc --preset p4``
on a machine without NVENC: libx264 with ``medium``), and sizes x264's threads to
the CPUs this process may use.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import av

from streamer.errors import InputError, one_line

SOFTWARE_H264 = "libx264"
NVENC_H264 = "h264_nvenc"

NVENC_PRESETS = ("p1", "p2", "p3", "p4", "p5", "p6", "p7")            # fastest .. slowest (FFmpeg's default p4)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")                                              # fastest .. slowest (x264's default medium)
# Nearest by position on the speed/quality scale, defaults onto defaults (p4 <-> medium); the project's
# default x264 preset veryfast and p2 map onto each other, so a round trip keeps it.
X264_TO_NVENC = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3", "fast": "p3",
                 "medium": "p4", "slow": "p5", "slower": "p6", "veryslow": "p7", "placebo": "p7"}
NVENC_TO_X264 = {"p1": "ultrafast", "p2": "veryfast", "p3": "faster", "p4": "medium", "p5": "slow",
                 "p6": "slower", "p7": "veryslow"}
X264_FAMILY = ("libx264", "libx265")          # both take x264's preset names


@lru_cache(maxsize=None)
def encoder_usable(name: str) -> tuple[bool, str]:
    """(True, "") if the encoder opens at a small size, else (False, one-line reason)."""
    if name not in av.codecs_available:
        return False, f"{name} is not in this PyAV/FFmpeg build"
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 256, "yuv420p", Fraction(1, 30)
        ctx.open()
    except Exception as exc:    # av.error.* (PermissionError without a driver), ValueError, ...
        detail = getattr(exc, "strerror", None) or one_line(exc)
        return False, f"{name} cannot be opened ({detail}; no NVIDIA driver with NVENC?)"
    return True, ""


def pick_video_codec(requested: str, gpu: bool) -> tuple[str, str | None]:
    """The encoder to use and a one-line notice when the request could not be honoured.

    ``auto``: h264_nvenc on the GPU path when it opens, else libx264 (silently: nothing was asked for).
    ``h264_nvenc``: itself when it opens, else libx264 with a notice.  Anything else: itself.
    """
    if requested == "auto":
        if gpu and encoder_usable(NVENC_H264)[0]:
            return NVENC_H264, None
        return SOFTWARE_H264, None
    if requested == NVENC_H264:
        ok, why = encoder_usable(NVENC_H264)
        if ok:
            return NVENC_H264, None
        return SOFTWARE_H264, f"notice: {why}; encoding with {SOFTWARE_H264} instead"
    return requested, None


# ------------------------------------------------------------------ presets

def encoder_family(codec: str) -> str | None:
    """"nvenc", "x264" (libx264, libx265) or None (an encoder without these presets: VP9, AV1, ...)."""
    if codec.endswith("_nvenc"):
        return "nvenc"
    return "x264" if codec in X264_FAMILY else None


def preset_family(preset: str | None) -> str | None:
    """"nvenc" for p1..p7, "x264" for ultrafast..placebo, None for anything else."""
    if preset in NVENC_PRESETS:
        return "nvenc"
    return "x264" if preset in X264_PRESETS else None


def check_encoder_options(codec: str, preset: str | None, crf: int | None, *, preset_flag: str = "--preset") -> None:
    """InputError naming the flag for a preset or CRF the encoder would refuse, before anything is decoded: FFmpeg
    would refuse it only when the encoder opens, after the model has loaded, with its own log line on stderr.
    ``auto`` is checked as libx264; an encoder of neither preset family (VP9, AV1, ...) is left to FFmpeg."""
    family = encoder_family(SOFTWARE_H264 if codec == "auto" else codec)
    if preset is not None and family is not None and preset_family(preset) is None:
        raise InputError(f"{preset_flag} {preset}: not an x264 or NVENC preset "
                         f"(use {', '.join(X264_PRESETS[:6])}, ... or p1..p7)")
    top = 51 if family is not None else 63      # x264, x265 and NVENC's CQ stop at 51; VP9 and AV1 at 63
    if crf is not None and not 0 <= crf <= top:
        raise InputError(f"--crf {crf}: out of range for {codec if codec != 'auto' else SOFTWARE_H264} (0..{top})")


def map_preset(preset: str | None, codec: str) -> str | None:
    """``preset`` for ``codec``: unchanged when it is of the codec's family (or either is of no family),
    else the other family's nearest preset."""
    enc, fam = encoder_family(codec), preset_family(preset)
    if enc is None or fam is None or enc == fam:
        return preset
    return X264_TO_NVENC[preset] if enc == "nvenc" else NVENC_TO_X264[preset]


# ------------------------------------------------------------------ threads

CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """CPUs allowed by a cgroup quota (v2 ``cpu.max``, or v1 cfs quota/period), None without one."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return int(quota) / int(period) if quota != "max" and int(period) > 0 else None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cpus(root: Path = CGROUP) -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit:
        n = min(n, math.ceil(limit))
    return max(1, n)


def x264_threads(cpus: int | None = None) -> int:
    """x264's frame threads for this machine: x264's own rule (1.5 per CPU), counted on the CPUs usable here."""
    return max(1, min((cpus or usable_cpus()) * 3 // 2, 128))


# ------------------------------------------------------------------ the whole choice

class EncoderChoice(NamedTuple):
    codec: str
    preset: str | None
    threads: int            # encoder threads; 0 leaves it to FFmpeg
    notice: str | None      # one line, or None when the request is honoured as asked


def pick_encoder(requested: str, *, gpu: bool, preset: str | None,
                 default_preset: str | None = None) -> EncoderChoice:
    """Encoder, preset, threads and a one-line notice for ``--codec requested --preset preset``.

    The codec is :func:`pick_video_codec`'s (``auto`` tries NVENC on the GPU path and falls back to
    libx264).  A preset of the other family than the encoder that will run is mapped to that family's
    nearest (:func:`map_preset`), with a notice unless it is ``default_preset`` (the caller's default,
    which nobody asked for).  x264/x265 get :func:`x264_threads`; other encoders FFmpeg's default.
    """
    codec, notice = pick_video_codec(requested, gpu)
    mapped = map_preset(preset, codec)
    if mapped != preset and preset != default_preset:
        kind = "NVENC" if preset_family(preset) == "nvenc" else "x264"
        if notice:          # the fallback's notice already names the encoder
            notice = f"{notice}, at preset {mapped} (the nearest to {kind}'s {preset})"
        else:
            notice = f"notice: preset {preset} is an {kind} preset; {codec} uses its nearest, {mapped}"
    threads = x264_threads() if encoder_family(codec) == "x264" else 0
    return EncoderChoice(codec, mapped, threads, notice)
