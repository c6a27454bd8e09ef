"""Sinks that fail in the middle of a live run: the failing sink stops with one line, the others go on.

Real parts throughout: a looping clip paced as a camera, a real tmpfs that fills, real UDP sockets, and
pyvirtualcam with a backend (its documented plug-in interface) whose device disappears.
"""
from __future__ import annotations

import json
import socket
import threading
import time

import av
import numpy as np
import pytest

from conftest import make_clip, run_cli

from engines.base import IdentityEngine
from streamer.live import LiveOptions, LiveSession


def decoded_frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture(scope="module")
def busy_clip(tmp_path_factory):
    """640x360 panning clip: a recording of it fills a small disk within seconds."""
    return make_clip(tmp_path_factory.mktemp("busy") / "busy.mp4", width=640, height=360, frames=60, audio=None)


def test_a_recording_whose_disk_fills_is_finalized_and_the_other_sinks_go_on(tmp_path, mount_tmpfs, busy_clip):
    disk = mount_tmpfs("small", size="800k")    # ~2 KB a frame: the recording stops after ~4 s
    full, other = disk / "rec.mp4", tmp_path / "other.mp4"
    proc = run_cli("live", "--source", busy_clip, "--loop", "--sink", full, "--sink", other, "--model", "identity",
                   "--smooth", "off", "--max-size", "0", "--duration", "10", "--json", "--quiet", timeout=60)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["ended"] == "duration"
    assert len(stats["failed_sinks"]) == 1 and stats["failed_sinks"][0].startswith(f"{full}: disk nearly full")
    warning = [ln for ln in proc.stderr.splitlines() if "disk nearly full" in ln]
    assert len(warning) == 1 and warning[0].endswith(f"that sink stopped, still sending to {other}"), proc.stderr
    kept = int(warning[0].split("recording stopped and kept, ")[1].split(" frames")[0])
    assert 0 < kept < stats["frames_out"]
    assert decoded_frames(full) == kept                         # finalized: an index, every frame playable
    assert decoded_frames(other) == stats["frames_out"]         # the other recording has the whole run
    assert sorted(p.name for p in disk.iterdir()) == ["rec.mp4"]   # no temp file left on the full disk
    assert "Traceback" not in proc.stderr


def test_a_udp_receiver_that_goes_away_does_not_affect_the_other_sinks(tmp_path, busy_clip, encoder):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]
    received = []

    def receive_then_leave() -> None:
        receiver.settimeout(5)
        t_end = time.perf_counter() + 1.5
        while time.perf_counter() < t_end:
            received.append(len(receiver.recv(65536)))
        receiver.close()                                         # the player quits; the port is closed

    thread = threading.Thread(target=receive_then_leave)
    thread.start()
    out = tmp_path / "rec.mp4"
    said: list[str] = []
    session = LiveSession(LiveOptions(source=str(busy_clip), sinks=[f"udp://127.0.0.1:{port}", str(out)], loop=True,
                                      smooth="off", max_size=320, duration=4.0),
                          engine=IdentityEngine(), encoder=encoder, say=said.append)
    try:
        r = session.run()
    finally:
        session.close()
        thread.join(6)
    assert sum(received) > 10_000                                # the stream did arrive while it listened
    assert r.ended == "duration" and r.failed_sinks == [] and not said
    assert r.frames_out > 60 and decoded_frames(out) == r.frames_out


class VanishingCamera:
    """A pyvirtualcam backend whose device disappears after ``LIMIT`` frames, as an unloaded v4l2loopback does."""

    LIMIT = 20
    instances: list["VanishingCamera"] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.sent = 0
        self.closed = False
        VanishingCamera.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        if self.sent >= self.LIMIT:
            raise OSError(19, "No such device")
        self.sent += 1

    def close(self) -> None:
        self.closed = True                       # close(2) on the fd of a removed device still succeeds

    def device(self) -> str:
        return "/dev/video9"

    def native_fourcc(self):
        return None


def test_a_virtual_camera_that_disappears_stops_with_a_message_and_the_recording_goes_on(tmp_path, monkeypatch,
                                                                                        busy_clip, encoder):
    pyvirtualcam = pytest.importorskip("pyvirtualcam", reason="pyvirtualcam is not installed (pip install "
                                       "'streamer[live]')")
    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"vanishing": VanishingCamera})
    VanishingCamera.instances.clear()
    out = tmp_path / "rec.mp4"
    said: list[str] = []
    session = LiveSession(LiveOptions(source=str(busy_clip), sinks=["virtualcam", str(out)], loop=True, smooth="off",
                                      max_size=320, duration=3.0),
                          engine=IdentityEngine(), encoder=encoder, say=said.append)
    try:
        r = session.run()
    finally:
        session.close()
    assert VanishingCamera.instances[0].sent == VanishingCamera.LIMIT and VanishingCamera.instances[0].closed
    assert r.ended == "duration"
    assert r.failed_sinks == ["virtualcam: the virtual camera went away ([Errno 19] No such device)"]
    assert said == [f"warning: {r.failed_sinks[0]}; that sink stopped, still sending to {out}"]
    assert r.frames_out > 40 and decoded_frames(out) == r.frames_out


def test_when_the_only_sink_fails_the_run_ends_with_its_error(tmp_path, monkeypatch, busy_clip):
    pyvirtualcam = pytest.importorskip("pyvirtualcam", reason="pyvirtualcam is not installed (pip install "
                                       "'streamer[live]')")
    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"vanishing": VanishingCamera})
    session = LiveSession(LiveOptions(source=str(busy_clip), sinks=["virtualcam"], loop=True, smooth="off",
                                      max_size=320, duration=10.0),
                          engine=IdentityEngine())
    t0 = time.perf_counter()
    try:
        with pytest.raises(Exception, match="the virtual camera went away"):
            session.run()
    finally:
        session.close()
    assert time.perf_counter() - t0 < 5
