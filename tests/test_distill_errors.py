"""`distill` follows streamer's error contract: one line, ``distill: error: FILE-OR-FOLDER: problem``, exit 2 for bad
input, ``--debug`` for the traceback; and its held-out split scales down for small folders.

Real subprocesses of ``python -m distill`` on small real image folders made here (crops of the bundled paintings).
Only one command runs the teacher (``prepare`` with a handful of pairs, on the CPU); every other error is found
before any network loads.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, painting

ERROR = "distill: error: "


def distill(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "distill", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def one_error_line(r: subprocess.CompletedProcess, *parts: str) -> str:
    """Exit 2 and exactly one stderr line, starting with the prefix and holding every part; returns the line."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith(ERROR), r.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    assert "Traceback" not in r.stderr and "[Errno" not in r.stderr
    return lines[0]


def image_folder(folder: Path, n: int, name: str = "hokusai_bridge", ext: str = ".jpg") -> Path:
    """n different real pictures: crops of a bundled painting."""
    folder.mkdir(parents=True, exist_ok=True)
    img = painting(name)
    for i in range(n):
        crop = img[i * 17 % 80:i * 17 % 80 + 160, i * 29 % 120:i * 29 % 120 + 200]
        cv2.imwrite(str(folder / f"{name}_{i}{ext}"), cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """The issue's case: 6 photos and 3 paintings."""
    root = tmp_path_factory.mktemp("distill-folders")
    styles = root / "paintings"
    for name in ("kandinsky", "starry_night", "hokusai_bridge"):
        image_folder(styles, 1, name, ".png")
    return {"root": root, "photos": image_folder(root / "photos", 6), "paintings": styles}


@pytest.fixture(scope="module")
def small_cache(folders) -> tuple[Path, subprocess.CompletedProcess]:
    """`distill prepare` on the small folders with the default held-out split: it used to fail with 'need at least
    one array to stack' (the default split held out all 3 paintings)."""
    out = folders["root"] / "cache"
    r = distill("prepare", "--content", folders["photos"], "--styles", folders["paintings"], "--out", out,
                "--pairs", 4, "--threads", 2, "--quiet")
    return out, r


def test_prepare_on_small_folders_scales_the_held_out_split_down(small_cache, folders):
    out, r = small_cache
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["pairs"] == 4
    manifest = json.loads((out / "manifest.json").read_text())
    # a quarter of a small folder, at least one: 1 of 6 photos and 1 of 3 paintings held out, the rest train
    assert (len(manifest["heldout_content"]), len(manifest["train_content"])) == (1, 5)
    assert (len(manifest["heldout_styles"]), len(manifest["train_styles"])) == (1, 2)
    assert not set(manifest["heldout_content"]) & set(manifest["train_content"])
    assert np.load(out / "target.npy", mmap_mode="r").shape[0] == 4
    assert np.load(out / "style_images.npy", mmap_mode="r").shape[0] == 2


def test_prepare_says_how_many_images_an_explicit_split_needs(folders, tmp_path):
    r = distill("prepare", "--content", folders["photos"], "--styles", folders["paintings"], "--out", tmp_path / "c",
                "--holdout-content", 6)
    one_error_line(r, str(folders["photos"]), "6 images", "hold out 6", "needs at least 7", "--holdout-content")
    r = distill("prepare", "--content", folders["photos"], "--styles", folders["paintings"], "--out", tmp_path / "c",
                "--holdout-styles", 3)
    one_error_line(r, str(folders["paintings"]), "3 images", "needs at least 4", "--holdout-styles")
    assert not (tmp_path / "c").exists()                   # refused before anything is written


def test_prepare_needs_two_images_to_split(folders, tmp_path):
    single = image_folder(tmp_path / "one", 1)
    r = distill("prepare", "--content", single, "--styles", folders["paintings"], "--out", tmp_path / "c")
    one_error_line(r, str(single), "1 image", "needs at least 2", "--holdout-content 0")


@pytest.mark.parametrize("case", ["missing", "empty", "a file", "no images", "corrupt image"])
def test_prepare_names_the_folder_or_file_and_the_problem(case, folders, tmp_path):
    content = tmp_path / "photos"
    expect = [str(content)]
    if case == "missing":
        expect.append("no such folder")
    elif case == "empty":
        content.mkdir()
        expect.append("no images inside")
    elif case == "a file":
        content.write_text("not a folder")
        expect.append("not a folder")
    elif case == "no images":
        content.mkdir()
        (content / "notes.txt").write_text("hello")
        expect.append("no images inside")
    else:
        image_folder(content, 3)
        (content / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
        expect = [str(content / "broken.jpg"), "not an image"]
    r = distill("prepare", "--content", content, "--styles", folders["paintings"], "--out", tmp_path / "c",
                "--pairs", 2, "--threads", 2, "--quiet")
    one_error_line(r, *expect)
    assert not (tmp_path / "c").exists()     # no empty cache folder left behind


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder: an unreadable one cannot be made")
def test_prepare_unreadable_folder(folders, tmp_path):
    locked = image_folder(tmp_path / "locked", 2)
    locked.chmod(0)
    try:
        r = distill("prepare", "--content", locked, "--styles", folders["paintings"], "--out", tmp_path / "c")
    finally:
        locked.chmod(0o755)
    one_error_line(r, str(locked), "permission denied")


def test_train_refuses_what_is_not_a_prepared_cache(folders, small_cache, tmp_path):
    one_error_line(distill("train", "--data", tmp_path / "nope", "--out", tmp_path / "run"),
                   str(tmp_path / "nope"), "no such cache folder", "distill prepare")
    one_error_line(distill("train", "--data", folders["photos"], "--out", tmp_path / "run"),
                   str(folders["photos"]), "not a prepared cache", "manifest.json")
    # one of several caches incomplete (a prepare that was stopped): that one is named, with what it lacks
    cache, _ = small_cache
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "manifest.json").write_text((cache / "manifest.json").read_text())
    line = one_error_line(distill("train", "--data", f"{cache},{partial}", "--out", tmp_path / "run"),
                          str(partial), "incomplete prepared cache", "target.npy")
    assert f"{cache}:" not in line
    assert not (tmp_path / "run").exists()                  # refused before the run folder is made


def test_train_refuses_a_cache_array_it_cannot_read(small_cache, tmp_path):
    cache, _ = small_cache
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in cache.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "target.npy").write_bytes(b"garbage, not an array")
    one_error_line(distill("train", "--data", broken, "--out", tmp_path / "run", "--steps", 1),
                   str(broken / "target.npy"), "unreadable cache array", "distill prepare")


def test_missing_or_invalid_weights(folders, small_cache, tmp_path):
    cache, _ = small_cache
    missing = tmp_path / "run" / "student.pt"
    one_error_line(distill("export", "--weights", missing, "--out", tmp_path / "s.onnx"), str(missing), "no such file")
    one_error_line(distill("train", "--data", cache, "--out", tmp_path / "run", "--init", missing),
                   str(missing), "no such file", "--init")
    not_weights = folders["photos"] / "hokusai_bridge_0.jpg"
    one_error_line(distill("export", "--weights", not_weights, "--out", tmp_path / "s.onnx"),
                   str(not_weights), "not student weights")
    one_error_line(distill("eval", "--model", missing.with_suffix(".onnx"), "--data", cache),
                   str(missing.with_suffix(".onnx")), "no such file", "--model")
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"not an onnx graph")
    one_error_line(distill("eval", "--model", fake, "--data", cache), str(fake), "not a student model")
    one_error_line(distill("eval", "--model", fake, "--data", folders["photos"]), str(folders["photos"]),
                   "not a prepared cache")


def test_debug_adds_the_traceback(tmp_path):
    for args in (["--debug", "train"], ["train", "--debug"]):          # before or after the command's name
        r = distill(*args, "--data", tmp_path / "nope", "--out", tmp_path / "run")
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert "Traceback (most recent call last)" in r.stderr and "check_prepared" in r.stderr
        assert lines[-1] == f"{ERROR}{tmp_path / 'nope'}: no such cache folder (make one with `distill prepare`)"
