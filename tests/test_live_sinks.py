"""Live sinks that need a display or a device: the preview window under Xvfb (screenshot, hotkeys through
xdotool), and everything around pyvirtualcam (format, size, pacing, the error text with the modprobe line).

``make test`` installs the ``live`` extra (pyvirtualcam) and ``.ci/run`` installs Xvfb and xdotool where it can.
A test is skipped, with the reason, only when what it needs cannot run here: pyvirtualcam missing (the virtual camera
tests), no Xvfb, an OpenCV without GUI, or Qt that cannot open a plain window under Xvfb (probed on its own, without
streamer); a streamer window that shows nothing is a failure.  pyvirtualcam's own device layer is exercised through
its public ``register_backend`` hook with a backend that records what it is sent (the v4l2loopback kernel module
cannot be loaded here).
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import REPO, make_clip, run_cli

from streamer.errors import InputError
from streamer.live_sinks import MODPROBE_HINT, VirtualCamSink, WindowSink, opencv_has_gui
from streamer.live_sources import LIVE_TIME_BASE
from streamer.pipeline import Frame


def frame_of(img: np.ndarray, seq: int = 0) -> Frame:
    return Frame(seq, seq * 3000, LIVE_TIME_BASE, time.perf_counter(), img, stylized=img)


# A plain OpenCV window, nothing of streamer's: tells "Qt cannot start under this Xvfb" from "streamer's window is
# broken".
QT_PROBE = """
import cv2, numpy as np
cv2.namedWindow("probe", cv2.WINDOW_NORMAL)
cv2.imshow("probe", np.full((60, 80, 3), 200, np.uint8))
for _ in range(5):
    cv2.waitKey(20)
cv2.destroyAllWindows()
print("window ok")
"""
QT_PROBE_AFTER_AV = "import av\n" + QT_PROBE     # the same window in a process that loaded PyAV first, as streamer does


def qt_window_problem(env: dict, code: str = QT_PROBE, timeout: float = 20) -> str | None:
    """None when a child process opens an OpenCV window on env's display, else what went wrong."""
    try:
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"cv2.namedWindow hung for {timeout:.0f} s"
    if "window ok" in r.stdout:
        return None
    err = [x for x in r.stderr.splitlines() if x.strip() and "QFont" not in x and "Qt no longer ships fonts" not in x]
    return f"exit {r.returncode}: {' / '.join(err[-3:]) or 'no message'}"


# --- window ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def xvfb():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install -y xvfb)")
    ok, backend = opencv_has_gui()
    if not ok:
        pytest.skip(f"this OpenCV build has no GUI ({backend}); install opencv-python")
    for n in range(91, 99):
        if not os.path.exists(f"/tmp/.X11-unix/X{n}") and not os.path.exists(f"/tmp/.X{n}-lock"):
            break
    display = f":{n}"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        if os.path.exists(f"/tmp/.X11-unix/X{n}") or proc.poll() is not None:
            break
        time.sleep(0.05)
    if not os.path.exists(f"/tmp/.X11-unix/X{n}"):
        proc.kill()
        pytest.skip(f"Xvfb did not start on {display}: {one_line_of(proc.communicate()[1])}")
    try:
        problem = qt_window_problem(dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb"))
        if problem:
            pytest.skip(f"Qt cannot open even a plain OpenCV window under this Xvfb ({problem})")
        yield display
    finally:
        proc.terminate()
        proc.wait(5)


def one_line_of(text: str | None) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1] if lines else "no message"


def screenshot(display: str) -> np.ndarray:
    """One frame of the X screen through FFmpeg's x11grab (PyAV)."""
    with av.open(display, format="x11grab", options={"video_size": "800x600"}) as c:
        for f in c.decode(video=0):
            return f.to_ndarray(format="rgb24")
    raise AssertionError("no screenshot")


def test_window_needs_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if not opencv_has_gui()[0]:
        with pytest.raises(InputError, match="no GUI"):
            WindowSink()
        return
    if sys.platform.startswith("linux"):
        with pytest.raises(InputError, match="no display"):
            WindowSink()


def test_window_under_xvfb_shows_frames_and_takes_hotkeys(xvfb, tmp_path):
    if "x11grab" not in av.formats_available:
        pytest.skip("PyAV's FFmpeg has no x11grab for the screenshot")
    clip = make_clip(tmp_path / "pan.mp4", width=320, height=180, frames=60, fps=30, audio=None)
    env = dict(os.environ, PYTHONPATH=str(REPO), DISPLAY=xvfb, QT_QPA_PLATFORM="xcb")
    proc = subprocess.Popen([sys.executable, "-m", "streamer", "live", "--source", str(clip), "--loop",
                             "--sink", "window", "--model", "identity", "--smooth", "off", "--json",
                             "--styles", "kandinsky", "--duration", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    try:
        deadline, live = time.monotonic() + 25, False
        while time.monotonic() < deadline and not live:          # a stats line with frames out: the window shows them
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            live = line.startswith("streamer live: in") and " out   0.0" not in line
        if not live:              # Qt opens a plain window here (the fixture checked): streamer's window is broken
            proc.kill()
            proc.wait()
            stderr = [x for x in iter(lambda: lines.get_nowait() if not lines.empty() else None, None)
                      if "QFont" not in x and "Qt no longer ships fonts" not in x]
            after_av = qt_window_problem(env, QT_PROBE_AFTER_AV)
            why = (f"; a plain OpenCV window in a process that imported PyAV first fails too ({after_av}): PyAV's "
                   "and OpenCV's wheels vendor libxcb-shm/-xfixes/-shape under the same file names, linked to "
                   "different libxcb builds, and the first loaded (PyAV's) serves Qt" if after_av else "")
            pytest.fail(f"no frames in the streamer window after 25 s, while Qt opens a plain window under this "
                        f"Xvfb{why}; streamer's stderr: {' / '.join(x.strip() for x in stderr[-5:]) or 'nothing'}")
        deadline = time.monotonic() + 10     # on a loaded machine the first paint can trail the first frames
        shot = screenshot(xvfb)
        while shot[:180, :320].astype(np.float32).std() <= 20 and time.monotonic() < deadline:
            time.sleep(0.3)
            shot = screenshot(xvfb)
        import cv2

        path = tmp_path / "live_window.png"
        cv2.imwrite(str(path), cv2.cvtColor(shot, cv2.COLOR_RGB2BGR))
        if os.environ.get("STREAMER_SCREENSHOT_DIR"):
            shutil.copy(path, Path(os.environ["STREAMER_SCREENSHOT_DIR"]) / "live_window.png")
        region = shot[:180, :320].astype(np.float32)
        assert region.std() > 20, "the window shows no picture"
        bright = (shot[:40, :320] > 235).all(axis=2).sum()
        assert bright > 30, "no overlay text"
        if shutil.which("xdotool") is None:
            proc.terminate()
            pytest.skip("xdotool is not installed: hotkeys not exercised (the picture was checked)")
        wid = subprocess.run(["xdotool", "search", "--name", "streamer live"], capture_output=True, text=True,
                             env=env).stdout.split()
        assert wid, "no window named 'streamer live'"
        subprocess.run(["xdotool", "windowfocus", "--sync", wid[0]], env=env, timeout=5)
        for key in ("n", "minus", "s"):
            subprocess.run(["xdotool", "key", key], env=env, timeout=5)
            time.sleep(0.3)
        time.sleep(0.5)
        subprocess.run(["xdotool", "key", "q"], env=env, timeout=5)
        proc.wait(timeout=10)
        out = proc.stdout.read()
        err = "".join(iter(lambda: lines.get_nowait() if not lines.empty() else None, None))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    stats = json.loads(out)
    assert stats["ended"] == "quit"
    assert stats["style"] == "kandinsky" and stats["strength"] == pytest.approx(0.9) and stats["smooth"] == "flow"


# --- virtual camera ------------------------------------------------------------------------------
def test_virtualcam_without_pyvirtualcam_says_how_to_install_it(monkeypatch):
    """The one virtual camera test that runs without pyvirtualcam: the error names the package to install."""
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)          # import pyvirtualcam -> ImportError
    with pytest.raises(InputError, match=r"pyvirtualcam is not installed.*streamer\[live\]"):
        VirtualCamSink(64, 48, 30)


class RecordingBackend:
    """A pyvirtualcam backend (its documented plug-in interface) that keeps what it is sent."""

    instances: list["RecordingBackend"] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.closed = False
        RecordingBackend.instances.append(self)

    def send(self, frame):
        self.frames.append(frame.copy())
        self.times.append(time.perf_counter())

    def close(self):
        self.closed = True

    def device(self):
        return "recording"

    def native_fourcc(self):
        return None


@pytest.fixture
def pyvirtualcam():
    """pyvirtualcam, or a skip with the reason (``make test`` installs it with the live extra)."""
    return pytest.importorskip("pyvirtualcam", reason="pyvirtualcam is not installed (pip install 'streamer[live]')")


@pytest.fixture
def recording_cam(pyvirtualcam):
    pyvirtualcam.register_backend("streamer-test", RecordingBackend)
    RecordingBackend.instances.clear()
    yield RecordingBackend.instances


def _loopback_present() -> bool:
    import glob

    for dev in glob.glob("/sys/devices/virtual/video4linux/video*/name"):
        return True
    return False


def test_virtualcam_missing_device_gives_modprobe_line(pyvirtualcam):
    if not sys.platform.startswith("linux"):
        pytest.skip("the modprobe hint is for Linux")
    if _loopback_present():
        pytest.skip("a v4l2loopback device exists here")
    with pytest.raises(InputError) as err:
        VirtualCamSink(64, 48, 30)
    text = str(err.value)
    assert MODPROBE_HINT in text and "v4l2loopback" in text
    assert MODPROBE_HINT == "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=streamer"


def test_virtualcam_cli_error_is_one_line_exit_2(tmp_path, pyvirtualcam):
    if not sys.platform.startswith("linux") or _loopback_present():
        pytest.skip("needs Linux without a v4l2loopback device")
    clip = make_clip(tmp_path / "c.mp4", width=64, height=48, frames=5, audio=None)
    r = run_cli("live", "--source", clip, "--sink", "virtualcam", "--model", "identity")
    assert r.returncode == 2
    assert MODPROBE_HINT in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_virtualcam_format_and_size(recording_cam, pyvirtualcam):
    sink = VirtualCamSink(63, 47, 30, backend="streamer-test")
    try:
        cam = recording_cam[0]
        assert (cam.width, cam.height) == (62, 46) and (sink.width, sink.height) == (62, 46)   # even for I420/NV12
        assert cam.fourcc == pyvirtualcam.util.encode_fourcc(pyvirtualcam.PixelFormat.RGB.value)
        rgb = np.random.default_rng(0).integers(0, 256, (47, 63, 3), dtype=np.uint8)
        sink.write(frame_of(rgb))
        sink.write(frame_of(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), 1))      # RGBA
        sink.write(frame_of(rgb[..., 0], 2))                                                     # gray
        sink.write(frame_of(np.zeros((120, 200, 3), np.uint8), 3))                               # other size
    finally:
        sink.close()
    sent = cam.frames[:4]
    assert all(f.dtype == np.uint8 and f.ndim == 1 and f.size == 62 * 46 * 3 for f in sent)
    assert np.array_equal(sent[0].reshape(46, 62, 3), rgb[:46, :62])
    assert np.array_equal(sent[1].reshape(46, 62, 3), rgb[:46, :62])
    assert np.array_equal(sent[2].reshape(46, 62, 3)[..., 1], rgb[:46, :62, 0])
    assert cam.closed


def test_virtualcam_repeats_the_last_frame_when_the_pipeline_stalls(recording_cam):
    sink = VirtualCamSink(32, 32, 30, backend="streamer-test")
    cam = recording_cam[0]
    try:
        img = np.full((32, 32, 3), 77, np.uint8)
        for i in range(10):                                      # steady 30 fps: no repeats needed
            sink.write(frame_of(img, i))
            time.sleep(1 / 30)
        steady = sink.repeated
        time.sleep(0.5)                                          # a stall of 15 frame intervals
        stalled = sink.repeated - steady
    finally:
        sink.close()
    assert sink.sent == 10
    assert steady <= 2
    assert 3 <= stalled <= 16                                    # kept alive, never faster than the camera rate
    gaps = np.diff(cam.times[10:])
    assert gaps.size == 0 or gaps.min() > 0.5 / 30
    n = len(cam.frames)
    time.sleep(0.2)
    assert len(cam.frames) == n                                  # closed: nothing sent after close
