"""Where the infer stage gets its style vector: a fixed vector for a file, a switchable bank for live.

Both implement :class:`StyleSource`. The infer stage asks ``for_frame(rgb)`` once per batch and must
never wait on the style predictor, so anything slow (encoding a new style, the content vector that
``--strength`` below 1 mixes in) happens once (files) or on a side thread (live).
``generation`` changes whenever the style switches, so a temporal smoother knows to start over
instead of blending the old style into the new.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from streamer.errors import InputError, one_line
from streamer.styles import StyleEncoder, resolve_style


@runtime_checkable
class StyleSource(Protocol):
    generation: int

    def for_frame(self, rgb: np.ndarray) -> np.ndarray:
        """The [1,100] float32 vector for a batch whose first frame is ``rgb`` (HxWx3 uint8); no long waits."""


def check_strength(strength: float) -> None:
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"--strength {strength}: must be between 0 and 1")


def mix_style(style: np.ndarray, content: np.ndarray | None, strength: float) -> np.ndarray:
    """Magenta's interpolation: s*style + (1-s)*content style vector."""
    if strength >= 1.0 or content is None:
        return style
    return (strength * style + (1.0 - strength) * content).astype(np.float32)


class FixedStyle:
    """One style for a whole run; with strength < 1 it mixes in the first frame's own vector (computed once)."""

    generation = 0

    def __init__(self, style: np.ndarray, strength: float = 1.0, encoder: StyleEncoder | None = None) -> None:
        check_strength(strength)
        self.style, self.strength, self.encoder = style, strength, encoder
        self._value: np.ndarray | None = style if strength >= 1.0 or encoder is None else None

    def for_frame(self, rgb: np.ndarray) -> np.ndarray:
        if self._value is None:
            self._value = mix_style(self.style, self.encoder.encode_image(rgb), self.strength)
        return self._value


class StyleBank:
    """The current style vector, swapped atomically; encoding and strength mixing on a side thread.

    ``for_frame`` returns the current vector with one attribute read. The n/p hotkeys step through
    ``names``; vectors for all of them are computed at start on the side thread, so a switch never
    restarts the engine nor stalls a frame.
    """

    def __init__(self, encoder: StyleEncoder, names: list[str], strength: float = 1.0, *,
                 say: Callable[[str], None] | None = None) -> None:
        check_strength(strength)
        for name in names:                          # a typo fails at start, not when its key is pressed
            resolve_style(name)
        self.encoder, self.names, self.say = encoder, list(names), say
        self._vectors: dict[str, np.ndarray] = {}
        self._content: np.ndarray | None = None
        self._content_asked = False
        self._index = 0
        self._strength = strength
        self.generation = 0                         # +1 per style switch (the smoother resets on it)
        self._state = (self.names[0], strength, self._encode(self.names[0]))   # replaced, never mutated
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="streamer-styles", daemon=True)
        self._thread.start()
        for name in self.names[1:]:
            self._jobs.put(("encode", name))

    def _encode(self, name: str) -> np.ndarray:
        if name not in self._vectors:
            self._vectors[name] = self.encoder.encode(name)
        return self._vectors[name]

    # --- read by the infer stage (any thread) --------------------------------------------
    def for_frame(self, rgb: np.ndarray) -> np.ndarray:
        if self._strength < 1.0 and not self._content_asked:
            self._content_asked = True
            self._jobs.put(("content", rgb.copy()))
        return self._state[2]

    @property
    def name(self) -> str:
        return self._state[0]

    @property
    def strength(self) -> float:
        return self._state[1]

    # --- requests (any thread; applied on the side thread) -----------------------------------
    def step(self, delta: int) -> None:
        self._jobs.put(("step", delta))

    def change_strength(self, delta: float) -> None:
        self._jobs.put(("strength", delta))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every request so far has been applied (tests, benchmarks)."""
        done = threading.Event()
        self._jobs.put(("mark", done))
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the side thread and wait for it: a process that exits while it is inside ONNX Runtime (encoding the
        cycle's styles at start) aborts with "terminate called" instead of its exit code."""
        self._jobs.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # --- side thread ---------------------------------------------------------------------------
    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            kind, arg = job
            try:
                self._apply(kind, arg)
            except Exception as exc:   # noqa: BLE001 - a style that fails to load must not stop the show
                if self.say is not None:
                    self.say(f"style: {one_line(exc)}")

    def _apply(self, kind: str, arg) -> None:
        if kind == "encode":
            self._encode(arg)
        elif kind == "content":
            self._content = self.encoder.encode_image(arg)
            self._publish(self._state[0])
        elif kind == "step":
            self._index = (self._index + arg) % len(self.names)
            self._publish(self.names[self._index], switched=True)
        elif kind == "strength":
            self._strength = round(min(1.0, max(0.0, self._strength + arg)), 3)
            self._publish(self._state[0])         # below 1: mixed with the content vector once it exists
        elif kind == "mark":
            arg.set()

    def _publish(self, name: str, switched: bool = False) -> None:
        vec = mix_style(self._encode(name), self._content, self._strength)
        if switched:
            self.generation += 1
        self._state = (name, self._strength, vec)
