"""The few exception types that reach the command line, and the exit codes they map to.

Library code raises these with a message that already names the file and the problem;
the CLI prints ``streamer: error: <message>`` and exits with :data:`EXIT_CODES`.
"""
from __future__ import annotations

from engines.base import one_line  # noqa: F401 - the one definition, re-exported for streamer's modules



def brief(exc: BaseException) -> str:
    """``Type: first sentence`` of a library's exception, for a one-line error about a file it could not load: torch's
    unpickling errors, for one, run to a paragraph."""
    return f"{type(exc).__name__}: {one_line(exc).split('. ')[0][:100]}"


EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2          # bad input, bad option, unusable output location
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class StreamerError(RuntimeError):
    """Something went wrong; ``str(err)`` is one line for the user. ``exit_code`` says which kind."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage


class InputError(StreamerError):
    """The user's input, option or output location cannot be used (missing, corrupt, unsupported...)."""

    exit_code = EXIT_USAGE


class PipelineError(StreamerError):
    """A stage failed for a reason that is not the input's fault; ``__cause__`` holds the original."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived. A BaseException so that ``except Exception`` in stages cannot swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


