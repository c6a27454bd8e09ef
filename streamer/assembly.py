"""The one place that turns options into a ready run: engine, style source, processing size, smoother, stages.

Every use case (``convert``, ``live``, ``bench``, the device check, and whatever comes next) builds its
run here, so an option means the same thing everywhere and a bad one fails with the same message:

    options = RunOptions(style="starry_night", strength=0.8)      # validated once, in validate()
    engine = open_engine(options)                                 # --backend/--model -> Engine
    encoder = StyleEncoder(threads=options.threads)
    run = assemble(engine, FixedStyle(encode_style(encoder, options.style), options.strength, encoder),
                   width, height, options, name="clip.mp4")
    Runner(source, run.stages, sink, policy="block").run()

The run's stages are the CPU float path (resize -> NCHW float -> ``engine.infer`` -> uint8 -> smooth);
the processing size is the input scaled to ``max_size`` (default 720 px on the longer side) and
capped by what the engine accepts.
"""
from __future__ import annotations

from dataclasses import dataclass

from engines.base import Engine, EngineError
from engines.select import BACKENDS, create_engine
from streamer.errors import InputError, one_line
from streamer.model_registry import resolve_model
from streamer.pipeline import Stage
from streamer.processing import processing_size, stylize_stages
from streamer.style_sources import StyleSource, check_strength
from streamer.temporal import DEFAULT_SMOOTH, SMOOTH_MODES, SwitchableSmoother

MIN_MAX_SIZE = 16


@dataclass
class RunOptions:
    """What every stylizing command takes; `convert` and `live` extend it with their own options."""

    style: str = "starry_night"
    strength: float = 1.0
    max_size: int | None = None        # longer side of the processing size (None: processing.DEFAULT_MAX_SIZE)
    backend: str = "auto"
    model: str | None = None           # student | teacher | identity | PATH (None: student if present)
    smooth: str = DEFAULT_SMOOTH       # off | ema | flow
    batch: int = 1                     # frames per engine call
    threads: int | None = None         # ONNX Runtime intra-op threads (None: all cores)

    def validate(self) -> None:
        """Raise InputError naming the first bad option (the flag as the user typed it)."""
        check_strength(self.strength)
        if self.max_size is not None and self.max_size < MIN_MAX_SIZE:
            raise InputError(f"--max-size {self.max_size}: too small (at least {MIN_MAX_SIZE})")
        if self.batch < 1:
            raise InputError(f"--batch {self.batch}: must be at least 1")
        if self.smooth not in SMOOTH_MODES:
            raise InputError(f"--smooth {self.smooth}: use one of {', '.join(SMOOTH_MODES)}")
        if self.backend not in BACKENDS:
            raise InputError(f"--backend {self.backend}: use one of {', '.join(BACKENDS)}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads {self.threads}: must be at least 1")


def open_engine(options: RunOptions, *, backend: str | None = None) -> Engine:
    """The engine for ``--backend``/``--model`` (or another backend for the same model); one-line errors."""
    try:
        return create_engine(backend or options.backend, resolve_model(options.model), threads=options.threads)
    except EngineError as exc:
        raise InputError(one_line(exc)) from exc


@dataclass
class Assembly:
    """A run ready for the Runner: the stages between a source and a sink, and what they were built from."""

    engine: Engine
    style: StyleSource
    size: tuple[int, int]               # (w, h) the network sees
    smoother: SwitchableSmoother | None
    stages: list[Stage]


def assemble(engine: Engine, style: StyleSource, width: int, height: int, options: RunOptions, *,
             name: str = "input", smoother: SwitchableSmoother | None = None) -> Assembly:
    """Stages for frames of ``width`` x ``height``. A smoother is made from ``options.smooth`` unless one is
    given (live passes its own, which hotkeys toggle); "off" makes none."""
    size = processing_size(width, height, options.max_size, engine.info, name=name)
    if smoother is None and options.smooth != "off":
        smoother = SwitchableSmoother(options.smooth, style)
    batch = max(1, min(options.batch, engine.info.max_batch))
    return Assembly(engine, style, size, smoother, stylize_stages(engine, style, size, batch=batch, smoother=smoother))
