"""streamer: real-time neural style transfer for video, files and live sources alike.

The package holds the command line (``streamer.cli``), the use cases (convert, live, bench), the one run
assembly (``streamer.assembly``) and the parts it assembles (the pipeline runner, CPU stages, styles, smoothing,
media sources and sinks); the inference backends live in the ``engines`` package below it.
"""
import av.logging as _av_logging

__version__ = "0.1.0"

# FFmpeg's own log lines would break the one-line error promise. FFmpeg's default callback at PANIC level, not
# PyAV's Python callback: that one takes the GIL from FFmpeg's decoder threads and deadlocks against a Python
# thread that holds the GIL while it closes or flushes a frame-threaded decoder (PyAV-Org/PyAV#751; seen here in
# the fuzz test on corrupt H.264).
_av_logging.restore_default_callback()
_av_logging.set_libav_level(_av_logging.PANIC)
