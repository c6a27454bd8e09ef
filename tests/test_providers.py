"""ONNX Runtime execution providers: auto picks what the build offers, a missing or failing one falls back to cpu
with a one-line notice, and `streamer info` says which providers exist and where the student runs."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from conftest import make_clip, run_cli
from engines.base import EngineError
from engines.onnxruntime import PROVIDERS, OnnxRuntimeEngine, available_providers, make_session, resolve_provider
from streamer.model_registry import resolve_model

STUDENT_ONNX = resolve_model("student-live").onnx


def test_available_providers_follow_the_build_in_preference_order():
    offered = set(ort.get_available_providers())
    names = available_providers()
    assert names[-1] == "cpu" and all(PROVIDERS[n] in offered for n in names)
    assert names == sorted(names, key=list(PROVIDERS).index)
    assert resolve_provider("auto") == names[0] and resolve_provider(None) == names[0]


def test_a_provider_missing_from_the_build_falls_back_to_cpu_with_a_notice():
    missing = next((n for n in PROVIDERS if n not in available_providers()), None)
    if missing is None:
        pytest.skip("this onnxruntime build offers every provider")
    engine = OnnxRuntimeEngine(STUDENT_ONNX, provider=missing)
    assert engine.info.device == "cpu"
    assert len(engine.notices) == 1 and engine.notices[0].startswith(f"provider {missing} is not in this onnxruntime")
    out = engine.infer(np.full((1, 3, 32, 48), 0.5, np.float32), np.zeros((1, 100), np.float32))
    assert out.shape == (1, 3, 32, 48)


def test_unknown_provider_is_refused():
    with pytest.raises(EngineError, match="--provider quantum: unknown"):
        make_session(STUDENT_ONNX, provider="quantum")


def test_cli_reports_the_fallback_and_rejects_unknown_names(tmp_path):
    missing = next((n for n in PROVIDERS if n not in available_providers()), None)
    if missing is None:
        pytest.skip("this onnxruntime build offers every provider")
    clip = make_clip(tmp_path / "in.mp4", frames=3, audio=None)
    p = run_cli("convert", clip, tmp_path / "out.mp4", "--provider", missing, "--json", "--smooth", "off")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["device"] == "cpu" and any(n.startswith(f"provider {missing}") for n in result["notices"])
    bad = run_cli("convert", clip, tmp_path / "out2.mp4", "--provider", "quantum")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--provider quantum" in bad.stderr


def test_info_lists_providers_and_where_the_student_runs():
    p = run_cli("info", "--json")
    info = json.loads(p.stdout)
    assert info["onnxruntime_providers"] == available_providers()
    assert info["student_provider"] == available_providers()[0]
