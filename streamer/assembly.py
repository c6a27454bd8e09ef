"""The one place that turns options into a ready run: engine, style source, processing size, smoother, stages.

Every use case (``convert``, ``live``, ``bench``, the device check, and whatever comes next) builds its
run here, so an option means the same thing everywhere and a bad one fails with the same message:

    options = RunOptions(style="starry_night", strength=0.8)      # validated once, in validate()
    engine = open_engine(options)                                 # --backend/--model -> Engine
    encoder = StyleEncoder(threads=options.threads)
    run = assemble(engine, FixedStyle(encode_style(encoder, options.style), options.strength, encoder),
                   width, height, options, name="clip.mp4")
    Runner(source, run.stages, sink, policy="block").run()

The run's stages are the CPU float path (resize -> NCHW float -> ``engine.infer`` -> uint8 -> smooth),
or, when the engine takes uint8 batches in flight (``info.uint8_io`` with ``submit_uint8``/``collect``:
TensorRT, PyTorch on CUDA, ``engines.reference``), the one stage of ``streamer.inflight_stage``, where
the conversions, the network and the temporal blend run in the engine. The processing size is the input
scaled to ``max_size`` (default 720 px on the longer side) and capped by what the engine accepts.
"""
from __future__ import annotations

from dataclasses import dataclass

from engines.base import Engine, EngineError, ModelSpec
from engines.onnxruntime import PROVIDERS
from engines.tiling import TiledEngine
from engines.select import BACKENDS, choose_backend, create_engine
from streamer.adaptive import ProcessingSize
from streamer.errors import InputError, one_line
from streamer.inflight_stage import MAX_IN_FLIGHT, inflight_stage, runs_in_flight
from streamer.model_registry import TIERS, resolve_model, tuned_for, tuned_model
from streamer.pipeline import Stage
from streamer.processing import processing_size, stylize_stages
from streamer.style_sources import StyleSource, check_strength
from streamer.styles import bundled_styles, resolve_style
from streamer.temporal import DEFAULT_SMOOTH, SMOOTH_MODES, SwitchableSmoother

MIN_MAX_SIZE = 16
AUTO_TILE_ABOVE = 2048     # longer side past which frames run in tiles by default: 8K stills fit in 2 GB on a CPU
AUTO_TILE = 1024


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
    provider: str | None = None        # ONNX Runtime execution provider: None/auto = the best this build offers
    purpose: str = "file"              # file | live: which student tier `student` (the default) means
    tile: int | None = None            # tile side for big frames; None: automatic above AUTO_TILE_ABOVE, 0: never
    in_flight: int | None = None       # GPU path: batches kept in the engine between frames (None: 2 for files,
                                       # 0 for live, where each one held would add a frame of latency)
    tuned: bool = True                 # a bundled style that ships tuned runs its tuned model (False: --arbitrary)

    def fixed_style(self) -> str | None:
        """The style every frame of the run gets as is, or None where it can change mid-run or is mixed with the
        clip's own (strength below 1): a tuned model is only right for its own style vector."""
        return self.style if self.strength >= 1.0 else None

    def validate(self) -> None:
        """Raise InputError naming the first bad option (the flag as the user typed it)."""
        check_strength(self.strength)
        if self.max_size is not None and 0 < self.max_size < MIN_MAX_SIZE or (self.max_size or 0) < 0:
            raise InputError(f"--max-size {self.max_size}: too small (at least {MIN_MAX_SIZE}, or 0 for native size)")
        if self.tile is not None and 0 < self.tile < 64 or (self.tile or 0) < 0:
            raise InputError(f"--tile {self.tile}: too small (at least 64 and four times the model's reach, "
                             "or 0 for never)")
        if self.batch < 1:
            raise InputError(f"--batch {self.batch}: must be at least 1")
        if self.smooth not in SMOOTH_MODES:
            raise InputError(f"--smooth {self.smooth}: use one of {', '.join(SMOOTH_MODES)}")
        if self.backend not in BACKENDS:
            raise InputError(f"--backend {self.backend}: use one of {', '.join(BACKENDS)}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads {self.threads}: must be at least 1")
        if self.in_flight is not None and not 0 <= self.in_flight <= MAX_IN_FLIGHT:
            raise InputError(f"in_flight {self.in_flight}: must be between 0 and {MAX_IN_FLIGHT}")
        if self.provider not in (None, "auto", *PROVIDERS):
            raise InputError(f"--provider {self.provider}: use auto or one of {', '.join(PROVIDERS)}")


def open_engine(options: RunOptions, *, backend: str | None = None) -> Engine:
    """The engine for ``--backend``/``--model`` (or another backend for the same model); one-line errors.

    A bundled tier meets a fixed bundled style that ships tuned for it (``streamer styles``): the tuned model runs,
    same architecture and speed, closer to the painting; its name (``student-live/kandinsky``) says so."""
    try:
        backend = backend or options.backend
        model = options.model
        if model in (None, "student"):       # the tier depends on the job and on whether a GPU engine will run it
            gpu = choose_backend(backend, "student") in ("torch", "tensorrt")
            model = resolve_model(model, purpose=options.purpose, gpu=gpu)
        else:
            model = resolve_model(model)
        model = run_model(model, options)
        return create_engine(backend, model, threads=options.threads, provider=options.provider)
    except EngineError as exc:
        raise InputError(one_line(exc)) from exc


def run_model(model: ModelSpec, options: RunOptions) -> ModelSpec:
    """A bundled tier, tuned where the run's style is a fixed bundled style that ships tuned for it; and a tuned
    model (picked here or named with --model TIER/STYLE) only for the style it was tuned for."""
    style = options.fixed_style()
    bundled = bool(style) and resolve_style(style) == bundled_styles().get(style)   # not ./kandinsky, a file
    if options.tuned and bundled and model.name in TIERS:
        model = tuned_model(model.name, style) or model
    tuned = tuned_for(model)
    if tuned and not (bundled and style == tuned):
        this_run = (f"--style {style}" if style else "a style cycle" if options.strength >= 1.0 else
                    f"--strength {options.strength:g}")
        raise InputError(f"--model {model.name}: tuned for --style {tuned} at full strength only, not {this_run} "
                         f"(use --model {model.name.partition('/')[0]})")
    return model


def pinned_model(options: RunOptions) -> str | None:
    """``--model`` as this machine resolves it where that is a tuned model, else ``--model`` unchanged. For runs
    whose engines open elsewhere (Ray nodes): each then runs this tuned file or fails naming it, instead of a node
    without it quietly running the arbitrary student for some of the files."""
    if not options.tuned or options.model not in (None, "student", *TIERS):
        return options.model
    model = run_model(resolve_model(options.model, purpose=options.purpose), options)
    return model.name if tuned_for(model) else options.model


def engine_for_size(engine: Engine, size: tuple[int, int], options: RunOptions) -> Engine:
    """The engine itself, or wrapped to run frames of ``size`` in overlapping tiles (exact: see engines.tiling)."""
    tile = options.tile if options.tile is not None else (AUTO_TILE if max(size) > AUTO_TILE_ABOVE else 0)
    if not tile or max(size) <= tile or engine.info.model in ("teacher", "identity"):
        return engine
    try:
        return TiledEngine(engine, tile)
    except EngineError as exc:
        if options.tile is None:   # automatic: a model that cannot be tiled exactly (student-hq) runs whole frames
            return engine
        raise InputError(one_line(exc)) from exc


@dataclass
class Assembly:
    """A run ready for the Runner: the stages between a source and a sink, and what they were built from."""

    engine: Engine
    style: StyleSource
    size: tuple[int, int]               # (w, h) the network sees at the start
    smoother: SwitchableSmoother | None
    stages: list[Stage]
    size_control: ProcessingSize        # what the stages read per frame; live's adaptive controller moves it


def assemble(engine: Engine, style: StyleSource, width: int, height: int, options: RunOptions, *,
             name: str = "input", smoother: SwitchableSmoother | None = None) -> Assembly:
    """Stages for frames of ``width`` x ``height``. A smoother is made from ``options.smooth`` unless one is
    given (live passes its own, which hotkeys toggle); "off" makes none."""
    size = processing_size(width, height, options.max_size, engine.info, name=name)
    engine = engine_for_size(engine, size, options)
    if smoother is None and options.smooth != "off":
        smoother = SwitchableSmoother(options.smooth, style)
    batch = max(1, min(options.batch, engine.info.max_batch))
    control = ProcessingSize(size)
    if runs_in_flight(engine):
        in_flight = options.in_flight if options.in_flight is not None else (0 if options.purpose == "live" else
                                                                             MAX_IN_FLIGHT)
        stages = [inflight_stage(engine, style, control, batch=batch, smoother=smoother, in_flight=in_flight)]
    else:
        stages = stylize_stages(engine, style, control, batch=batch, smoother=smoother)
    return Assembly(engine, style, size, smoother, stages, control)
