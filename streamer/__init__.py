"""streamer: real-time neural style transfer for video, files and live sources alike.

The package holds the command line (``streamer.cli``), the use cases (convert, live, bench), the one run
assembly (``streamer.assembly``) and the parts it assembles (the pipeline runner, CPU stages, styles, smoothing,
media sources and sinks); the inference backends live in the ``engines`` package below it.
"""
import ctypes as _ctypes
import glob as _glob
import importlib.util as _importlib_util
import os as _os


def _load_opencv_x11_libraries_first() -> None:
    """OpenCV's copies of libxcb-shm/-xfixes/-shape before PyAV's: both wheels vendor them under the same file names
    but linked to different libxcb builds, whichever loads first serves both, and PyAV's hangs OpenCV's Qt window
    (`streamer live --sink window` froze in cv2.namedWindow on Linux desktops and under Xvfb)."""
    spec = _importlib_util.find_spec("cv2")
    if spec is None or not spec.origin:
        return
    libs = _os.path.join(_os.path.dirname(spec.origin), "..", "opencv_python.libs")
    for prefix in ("libxcb-shm-", "libxcb-xfixes-", "libxcb-shape-"):
        for lib in _glob.glob(_os.path.join(libs, prefix + "*.so*")):
            try:
                _ctypes.CDLL(lib, mode=_ctypes.RTLD_GLOBAL)
            except OSError:
                pass


_load_opencv_x11_libraries_first()

import av.logging as _av_logging  # noqa: E402 - after the X11 libraries above

__version__ = "0.1.0"

# FFmpeg's own log lines would break the one-line error promise. FFmpeg's default callback at PANIC level, not
# PyAV's Python callback: that one takes the GIL from FFmpeg's decoder threads and deadlocks against a Python
# thread that holds the GIL while it closes or flushes a frame-threaded decoder (PyAV-Org/PyAV#751; seen here in
# the fuzz test on corrupt H.264).
_av_logging.restore_default_callback()
_av_logging.set_libav_level(_av_logging.PANIC)
