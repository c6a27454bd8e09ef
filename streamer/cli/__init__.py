"""``streamer`` command line: argument parsing, printing and exit codes only; the work is in the library.

One module per command (or family of commands) in :data:`COMMANDS`; each has a
``register(subparsers)`` that adds its parser and sets ``func=handler(args) -> exit code``. A handler
turns the parsed flags into an options dataclass, calls the library and prints the result; flags that
several commands take are declared once in :mod:`streamer.cli.options`.

Errors are one line, ``streamer: error: FILE: problem``, with exit code 2 for bad input or usage,
130/143 for SIGINT/SIGTERM, 1 for anything else; ``--debug`` adds the traceback.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback

import av

from streamer import __version__
from streamer.cli import bench, convert, gpu, info, live, tune, web
from streamer.errors import EXIT_FAILURE, EXIT_SIGINT, EXIT_SIGTERM, Interrupted, StreamerError, one_line

PROG = "streamer"
COMMANDS = (convert, info, live, bench, gpu, web, tune)


# --- entry point ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Real-time neural style transfer for video.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.register(sub)
    return parser


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Console entry point. After an interrupt it exits at once (os._exit) once the temp output is gone:
    native thread pools (ONNX Runtime, FFmpeg) still winding down must not race interpreter shutdown."""
    code = run(argv)
    if code in (EXIT_SIGINT, EXIT_SIGTERM):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def run(argv: list[str] | None = None) -> int:
    """Parse argv, run the subcommand, map every error to its exit code; returns the code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    if debug:
        av.logging.set_libav_level(av.logging.WARNING)   # FFmpeg prints straight to stderr (see streamer/__init__.py)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        return args.func(args)
    except (Interrupted, KeyboardInterrupt) as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else EXIT_SIGINT
        if debug:
            traceback.print_exc()
        print(f"{PROG}: interrupted", file=sys.stderr)
        return code
    except StreamerError as exc:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:   # noqa: BLE001 - the promise is one line, never a traceback
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
