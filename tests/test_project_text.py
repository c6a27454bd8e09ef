"""The project describes itself, not its history (issue 13).

Every tracked text file is read and two kinds of wording are refused, each reported as file:line:
- an absolute folder of the machine the work was done on (/work/..., /root/..., /home/USER/...,
  /Users/USER/..., C:\\Users\\...; and /tmp/... where prose uses it as a location). Paths in the
  docs are relative to the repository (cache/..., runs/...);
- the sittings in which the work was done ("the second session", "Session 3", "this sitting"). Results
  are dated and described by what was run, on which machine, with which command.

Code terms that contain the word are not flagged: LiveSession, InferenceSession, requests.Session, "an
ONNX Runtime session", pytest's scope="session". System paths (/dev/video0, /proc/, /etc/, /usr/bin/...,
the X server's /tmp/.X11-unix socket) and URLs are allowed.
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Files not scanned, each with its reason.
EXCLUDED = {
    "tests/test_project_text.py": "holds the patterns it looks for",
}

# Benchmark outputs written by the tools; they record the paths the run was given. Checked separately below.
RECORDS = re.compile(r"^benchmarks/.*\.json$")

# Absolute folders of a particular machine, refused anywhere (code included).
MACHINE_PATH = re.compile(
    r"(?<![\w.~/-])("
    r"/work/"
    r"|/root/"
    r"|/home/[A-Za-z0-9._-]+/"
    r"|/Users/[A-Za-z0-9._-]+/"
    r"|/scratch/"
    r"|/mnt/data/"
    r")"
    r"|\b[A-Za-z]:\\{1,2}Users\b",
    re.IGNORECASE,
)
# /tmp/... as a place where something was kept: refused in prose (docs, comments, docstrings) and in
# recorded results; code may use a temporary folder. The X server's socket and lock files are system paths.
TMP_PATH = re.compile(r"(?<![\w.~/-])/tmp/(?!\.X11-unix\b|\.X\d|\.X\{)")

# Sittings of work. Patterns need the word order of prose about history, so "LiveSession",
# "InferenceSession", "requests.Session", "ORT session" and "scope='session'" do not match.
_ORDINAL = r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|previous|earlier|this|last|next|later"
SITTING = re.compile(
    r"\b(?:" + _ORDINAL + r")[ -](?:session|sitting)s?\b"                       # the second session, this sitting
    r"|\b(?:first|second|third|fourth|fifth)[ -](?:and|or|to)[ -](?:" + _ORDINAL + r")[ -](?:session|sitting)s\b"
    r"|\bone[ -]sittings?\b"                                                       # in one sitting
    r"|\b(?:session|sitting)s?[ -]?#?[0-9]"                                        # Session 3, sessions 1-2, session #4
    r"|\b(?:session|sitting)s?[ -](?:one|two|three|four|five)\b"                   # session two
    r"|\b(?:session|sitting)s so far\b",                                           # the sessions so far
    re.IGNORECASE,
)
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)

PROSE_SUFFIXES = {".md", ".txt", ".rst"}
HASH_COMMENT_SUFFIXES = {".sh", ".toml", ".cfg", ".ini", ".yml", ".yaml"}
HASH_COMMENT_NAMES = {"Makefile", ".gitignore", "run"}


def tracked_text_files() -> list[tuple[str, str]]:
    """(path, text) of every tracked file that is text, without the excluded ones."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    files = []
    for rel in out.decode().split("\0"):
        if not rel or rel in EXCLUDED or rel.startswith(".venv/") or "/.venv/" in rel:
            continue
        path = REPO / rel
        if not path.is_file():                          # deleted in the working tree
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            files.append((rel, data.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return files


def python_prose(text: str) -> list[tuple[int, str]]:
    """(line, text) of the comments and docstrings (string statements) of a Python file."""
    lines: list[tuple[int, str]] = []
    prev = tokenize.NEWLINE
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                lines.append((tok.start[0], tok.string))
            elif tok.type == tokenize.STRING and prev in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT,
                                                          tokenize.DEDENT):
                lines.extend((tok.start[0] + i, part) for i, part in enumerate(tok.string.split("\n")))
            if tok.type not in (tokenize.COMMENT, tokenize.NL):
                prev = tok.type
    except (tokenize.TokenError, SyntaxError):        # not parseable: treat it all as prose
        return list(enumerate(text.splitlines(), 1))
    return lines


def hash_prose(text: str) -> list[tuple[int, str]]:
    """(line, comment) of a shell script, Makefile or config file: what follows a # at a word start."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        m = re.search(r"(?:^|\s)#.*", line)
        if m:
            out.append((n, m.group(0)))
    return out


def prose_lines(rel: str, text: str) -> list[tuple[int, str]]:
    p = Path(rel)
    if p.suffix in PROSE_SUFFIXES or p.suffix == ".json":
        return list(enumerate(text.splitlines(), 1))
    if p.suffix == ".py":
        return python_prose(text)
    if p.suffix in HASH_COMMENT_SUFFIXES or p.name in HASH_COMMENT_NAMES:
        return hash_prose(text)
    return list(enumerate(text.splitlines(), 1))


def problems(rel: str, text: str) -> list[str]:
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        bare = URL.sub(" ", line)
        for rx, what in ((MACHINE_PATH, "machine path"), (SITTING, "sitting of work")):
            m = rx.search(bare)
            if m:
                found.append(f"{rel}:{n}: {what} {m.group(0)!r}: {line.strip()[:140]}")
    for n, line in prose_lines(rel, text):
        m = TMP_PATH.search(URL.sub(" ", line))
        if m:
            found.append(f"{rel}:{n}: machine path {m.group(0)!r} as a location: {line.strip()[:140]}")
    return sorted(set(found), key=lambda s: (s.split(":")[0], int(s.split(":")[1])))


def test_project_text_names_no_machine_folders_and_no_sittings_of_work():
    files = [(rel, text) for rel, text in tracked_text_files() if not RECORDS.match(rel)]
    assert len(files) > 10, "too few tracked text files found: is this the streamer checkout?"
    hits = [h for rel, text in files for h in problems(rel, text)]
    assert not hits, (f"{len(hits)} passage(s) describe the project's history or a machine's folders; "
                      "date results and name what was run, with paths relative to the repository:\n"
                      + "\n".join(hits))


def test_benchmark_records_name_no_machine_folders():
    files = [(rel, text) for rel, text in tracked_text_files() if RECORDS.match(rel)]
    for rel, text in files:
        json.loads(text)                                            # records stay valid JSON
    hits = [h for rel, text in files for h in problems(rel, text)]
    assert not hits, f"{len(hits)} machine path(s) in benchmark records:\n" + "\n".join(hits)


@pytest.mark.parametrize("text", [
    "Rerun at 11:21 with the second session's student.",
    "Session 1-2: four warm-started stages",
    "Session 4 (this model): the same",
    "2026-11-28, third and fourth sessions, idle machine",
    "No GPU was lent to the sessions so far.",
    "veryfast (the default since this session)",
    "bundled student (second-session weights)",
    "the caches in /work/cache",
    "--out /root/runs/ssim2",
    "see /home/alice/notes.txt",
    "C:\\Users\\me\\streamer",
])
def test_patterns_catch_history_and_machine_paths(text):
    assert problems("x.md", text)


@pytest.mark.parametrize("text", [
    "session = LiveSession(options)",
    "sess = onnxruntime.InferenceSession(path)",
    "s = requests.Session()",
    "one ONNX Runtime session per engine; ORT sessions are created without spinning",
    "Sessions are created without spinning",
    '@pytest.fixture(scope="session")',
    "run it in a desktop session, or use --sink virtualcam",
    "streamer live --source /dev/video2 --sink virtualcam:/dev/video4",
    "reads /proc/cpuinfo and /etc/os-release; /usr/bin/chromium",
    "See https://example.org/work/tmp/home/alice/ for details.",
    "distill train --out runs/student --data cache/prep2000",
    "Engines are cached under ~/.cache/streamer/tensorrt",
    'DATA ?= ../shared/data',
])
def test_patterns_leave_code_terms_and_relative_paths_alone(text):
    assert not problems("x.md", text)


def test_tmp_is_refused_in_prose_but_allowed_as_code():
    assert problems("x.md", "espeak-ng -w /tmp/speech.wav")
    assert problems("x.py", "x = 1  # wrote it to /tmp/prof.py\n")
    assert problems("x.py", '"""Scratch copy in /tmp/prof.py."""\n')
    assert not problems("x.py", 'work = Path(os.environ.get("TMPDIR", "/tmp/")) / "d"\n')
    assert not problems("x.py", 'ok = os.path.exists(f"/tmp/.X11-unix/X{n}")\n')
    assert not problems("x.sh", "SITE=/tmp/site\n")
    assert problems("x.sh", "SITE=/tmp/site   # the copy in /tmp/site\n")
