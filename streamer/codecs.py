"""Video encoder choice: NVENC (``h264_nvenc``) where the driver offers it, else libx264, with a one-line notice.

PyAV's wheels list ``h264_nvenc`` in ``av.codecs_available`` whether or not an
NVIDIA driver is present, so the only real test is to open the encoder once
(``avcodec_open2`` fails without the driver's NVENC library or a capable GPU).
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import av

from streamer.errors import one_line

SOFTWARE_H264 = "libx264"
NVENC_H264 = "h264_nvenc"


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
