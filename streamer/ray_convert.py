"""``streamer convert IN_DIR OUT_DIR --ray ADDRESS``: a directory's files converted on a Ray cluster.

One actor per CPU slot (``num_cpus``; one GPU each, ``num_gpus=1``, for a GPU engine) builds the engine and the
style vector once, through the same Converter and ConvertOptions as a run on one machine, and converts the files
handed to it one at a time.  The driver keeps ``Converter.convert_dir``'s promises: an output that exists is
skipped (a re-run resumes), a file that fails for its own reason is reported and the others go on, a full disk
leaves the files not yet started ``not_attempted``, and every output is complete at its final name or absent.

Storage is shared: every node reads the inputs and writes the outputs at the same paths.  Each actor checks that
before any work; a node that cannot fails the run with one line.  An actor converts into a folder on its own node
and then publishes the finished file beside the output under a temp name of its own
(``.NAME.streamer-tmp-ray-NODE-PID.mp4``), renamed into place.  It does not write through AtomicOutput's temp
beside the output because AtomicOutput sweeps temps whose PID is not running *on the sweeping machine*, and on
shared storage that PID belongs to another machine.

A video longer than ``--segment`` seconds is converted in parts cut at its keyframes (:func:`plan_parts`), on
several actors at once.  Each part decodes from a keyframe before it and runs WARM_FRAMES frames of the part before
through the stages first, unwritten, so the temporal smoothing enters the part as it would in one pass; the parts
are written video only and joined by remuxing their packets (no re-encoding), with the source's audio copied or
re-encoded once for the whole file by the same AudioCopier a one-pass conversion uses.  Frame count, timestamps
and audio equal a one-pass conversion's; the pixels too, up to the encoder restarting at each cut.

An actor that dies mid-file or mid-part (killed, out of memory, its node lost) is restarted by Ray; the driver
removes what it had published, resets its frame count and hands the work to another actor, at most MAX_ATTEMPTS
times.

This module sits with the parts: it never imports the use cases.  The CLI hands it a Converter (built, not yet
run); the actors rebuild one of the same class from the same options on their nodes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

import av

from streamer.errors import EXIT_FAILURE, EXIT_USAGE, InputError, StreamerError, one_line
from streamer.media_files import is_image
from streamer.pipeline import Frame
from streamer.sinks import TEMP_MARK, AudioCopier, pid_alive
from streamer.sources import Damage, VideoFileSource

MAX_ATTEMPTS = 3            # tries per file; an actor is restarted as often before it is given up
PROGRESS_EVERY = 10         # frames between an actor's reports to the driver's bar
POLL_S = 0.5                # the driver's bar refreshes this often
RAY_TEMP = TEMP_MARK + "ray-"
RAY_MISSING = "--ray needs Ray, which is not installed: pip install 'streamer[ray]'"
WARM_FRAMES = 30            # frames before a part that run through the pipeline, unwritten, to set its smoothing


def import_ray() -> Any:
    """Ray is an optional extra and takes a second to import, so it is loaded only for --ray."""
    try:
        import ray   # heavy, optional: the ray extra
        return ray
    except ImportError as exc:
        raise InputError(RAY_MISSING) from exc


def connect(address: str, *, debug: bool = False) -> Any:
    """ray.init for ``--ray ADDRESS`` (auto, HOST:PORT, ray://HOST:PORT; ``local`` starts a cluster in this
    process); Ray's own logging only with --debug, so the output stays the CLI's."""
    ray = import_ray()
    check_reachable(address)
    kw: dict[str, Any] = {"logging_level": logging.DEBUG if debug else logging.ERROR, "log_to_driver": debug}
    if address == "local":
        kw["include_dashboard"] = False
    try:
        ray.init(address=address, **kw)
    except Exception as exc:   # noqa: BLE001 - ConnectionError, ValueError, RuntimeError...: one line for all
        raise InputError(f"--ray {address}: cannot connect ({one_line(exc)})") from exc
    return ray


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) that nothing answers at fails here at once, with one line: ray.init would
    retry for minutes."""
    if address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray {address}: not an address (auto, local, HOST:PORT or ray://HOST:PORT)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        why = (exc.strerror or str(exc) or type(exc).__name__).lower()
        raise InputError(f"--ray {address}: cannot connect (nothing answers at {host}:{port}: {why})") from exc


def node_scratch(root: Path | None = None) -> Path:
    """This actor's folder on its own node's disk, and the folders of actors of this node that died, removed
    (PIDs are meaningful here: same node)."""
    root = root or Path(tempfile.gettempdir()) / "streamer-ray"
    root.mkdir(parents=True, exist_ok=True)
    for d in root.iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid() and not pid_alive(int(d.name)):
            shutil.rmtree(d, ignore_errors=True)
    mine = root / str(os.getpid())
    mine.mkdir(exist_ok=True)
    return mine


def storage_problem(inputs: list[str], output_dir: str, node: str) -> str | None:
    """Why this node cannot take part (an input it cannot read, an output folder it cannot write), or None."""
    shared = "--ray needs storage every node shares at the same paths"
    for name in inputs:
        try:
            with open(name, "rb") as f:
                f.read(1)
        except OSError as exc:
            return f"{name}: not readable on Ray node {node} ({(exc.strerror or str(exc)).lower()}); {shared}"
    probe = Path(output_dir) / f".streamer-ray-probe-{node.rsplit('/', 1)[-1]}-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"{output_dir}: not writable on Ray node {node} ({(exc.strerror or str(exc)).lower()}); {shared}"
    return None


def ray_temps(dst: Path, what: str = "") -> list[Path]:
    """What actors left beside ``dst``: ``what`` "" everything, "file" copies of the whole file that were not renamed
    into place (an actor died while copying), "partNNNN" one part (published, or a copy of it)."""
    head, tail = f".{dst.stem}{RAY_TEMP}{'' if what == 'file' else what}", dst.suffix
    try:
        found = [p for p in dst.parent.iterdir() if p.name.startswith(head) and p.name.endswith(tail)]
    except OSError:
        return []
    return [p for p in found if not p.name[len(head):].startswith("part")] if what == "file" else found


def part_path(dst: Path, number: int) -> Path:
    """Where a finished part waits for the join, beside the output (the nodes share that folder)."""
    return dst.parent / f".{dst.stem}{RAY_TEMP}part{number:04d}{dst.suffix}"


def publish(local: Path, dst: Path, *, overwrite: bool, tag: str) -> None:
    """Copy a finished output from the node's scratch folder beside ``dst``, then rename it into place: ``dst`` is
    complete or absent, as AtomicOutput promises."""
    if RAY_TEMP in dst.name:                                    # a part (part_path): its name has the mark
        temp = dst.parent / f"{dst.stem}-{tag}-{os.getpid()}{dst.suffix}"
    else:
        temp = dst.parent / f".{dst.stem}{RAY_TEMP}{tag}-{os.getpid()}{dst.suffix}"
    try:
        shutil.copyfile(local, temp)
        if dst.exists() and not overwrite:
            raise InputError(f"{dst}: appeared while converting; kept it (use -y to overwrite)")
        os.replace(temp, dst)
    except OSError as exc:
        raise InputError(f"{dst}: cannot write ({(exc.strerror or str(exc)).lower()})") from exc
    finally:
        temp.unlink(missing_ok=True)
        local.unlink(missing_ok=True)


def disk_full(exc: BaseException) -> bool:
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)


def node_name(ray: Any) -> str:
    """``IP/NODE`` (the first 8 hex digits of the node ID): the address the node registered with, which tells nodes on
    different machines apart, and the ID, which tells apart nodes that share a machine."""
    node_id = ray.get_runtime_context().get_node_id()
    ip = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id),
              ray.util.get_node_ip_address())
    return f"{ip}/{node_id[:8]}"


# --- long files in parts (--segment) -------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Part:
    """Frames ``start <= pts < end`` of a video (end None: to the last), decoded from the keyframe ``seek``; those from
    ``first`` to ``start`` are the warm-up: they run through the stages (the smoother settles as it would have in
    one pass) and are not written."""

    number: int
    seek: int
    first: int
    start: int
    end: int | None

    def source(self, path: Path) -> "PartSource":
        return PartSource(path, self)

    def sink(self, inner: Any) -> "AfterWarmup":
        return AfterWarmup(inner, self.start)


def plan_parts(path: Path, seconds: float) -> list[Part]:
    """Cuts at keyframes at least ``seconds`` apart, from a read of the video packets (no decoding).  No parts (the
    whole file in one piece) when it is shorter, has no keyframe to cut at, has timestamps a part could not be found
    by (missing, repeated), or shows damage (corrupt packets, fewer packets than its index declares): a damaged file
    is converted whole, so that its damage is found, counted and reported as without --ray."""
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            v = c.streams.video[0]
            packets = [(p.pts, p.is_keyframe, p.is_corrupt) for p in c.demux(v) if p.size]
            tb, declared = v.time_base, v.frames
    except (av.error.FFmpegError, OSError, IndexError, ValueError):
        return []
    pts = sorted(p for p, _, _ in packets if p is not None)
    damaged = any(bad for _, _, bad in packets) or (declared and declared != len(packets))
    if damaged or not pts or len(pts) != len(packets) or len(set(pts)) != len(pts) or not tb:
        return []
    keys = sorted(p for p, key, _ in packets if key)
    step = int(round(seconds / tb))
    cuts = [pts[0]]
    for k in keys:
        if k >= cuts[-1] + step:
            cuts.append(k)
    parts = []
    for n, start in enumerate(cuts):
        first = pts[max(0, pts.index(start) - WARM_FRAMES)] if n else start
        seek = max((k for k in keys if k <= first), default=pts[0])
        parts.append(Part(n, seek, first, start, cuts[n + 1] if n + 1 < len(cuts) else None))
    return parts if len(parts) > 1 else []


class PartSource(VideoFileSource):
    """A VideoFileSource (same probe, same attributes) that decodes one Part: from its keyframe, frames before its
    warm-up dropped, ending before the next part."""

    def __init__(self, path: Path, part: Part) -> None:
        super().__init__(path)
        self.part = part

    def frames(self) -> Iterator[Frame]:
        self.damage = Damage()                 # damage is judged by the whole file's run, not per part
        p, stream, seq = self.part, self._stream, 0
        if p.seek > (stream.start_time or 0):
            self._container.seek(p.seek, stream=stream, backward=True, any_frame=False)
        for packet in self._container.demux(stream):
            for vf in packet.decode():
                if vf.pts is None or vf.pts < p.first:
                    continue
                if p.end is not None and vf.pts >= p.end:
                    return
                self.rotation = int(vf.rotation or 0)
                yield Frame(seq, vf.pts, self.time_base, time.perf_counter(), vf.to_ndarray(format="rgb24"),
                            rotation=self.rotation)
                seq += 1


class AfterWarmup:
    """A sink that writes only the frames from ``start`` on (a part's own, not its warm-up)."""

    def __init__(self, inner: Any, start: int) -> None:
        self.inner, self.start, self.frames = inner, start, 0
        self.name = inner.name
        self.audio_modes: list[str] = []

    def write(self, frame: Frame) -> None:
        if frame.pts is None or frame.pts >= self.start:
            self.inner.write(frame)
            self.frames += 1

    def finish(self) -> None:
        self.inner.finish()

    def abort(self) -> None:
        self.inner.abort()


def join_parts(parts: list[Path], src: Path, out_path: Path) -> list[str]:
    """The parts' video packets one after another (no re-encoding) and the source's audio, copied or re-encoded once
    for the whole file as a one-pass conversion does; returns how the audio was handled."""
    out = av.open(str(out_path), "w")
    audio = None
    try:
        with av.open(str(parts[0])) as first:
            video = out.add_stream_from_template(first.streams.video[0])
        with av.open(str(src), metadata_errors="ignore") as probe:
            has_audio = bool(probe.streams.audio)
        audio = AudioCopier(src, out) if has_audio else None
        for part in parts:
            with av.open(str(part)) as c:
                for pkt in c.demux(c.streams.video[0]):
                    if pkt.dts is None and pkt.pts is None:
                        continue
                    t = pkt.dts if pkt.dts is not None else pkt.pts
                    pkt.stream = video
                    out.mux(pkt)
                    if audio is not None:
                        audio.pump(float(t * pkt.time_base))
        if audio is not None:
            audio.finish()
        return audio.modes if audio is not None else []
    finally:
        if audio is not None:
            audio.close()
        out.close()


class FrameCounter:
    """A Ray actor the workers report their frame counts to, so the driver's bar counts frames across the cluster."""

    def __init__(self) -> None:
        self.frames: dict[int, int] = {}

    def set(self, job: int, frames: int) -> None:
        self.frames[job] = frames

    def total(self) -> int:
        return sum(self.frames.values())


class FileWorker:
    """A Ray actor: one Converter built on its node, reused for every file handed to it."""

    def __init__(self, make: Callable[[Any], Any], options: Any, counter: str) -> None:
        ray = import_ray()
        self.converter = make(options)
        self.counter = ray.get_actor(counter)      # by name: an actor handle among the arguments would keep Ray from
                                                   # restarting this actor once the driver's copy goes out of scope
        self.node = node_name(ray)
        self.scratch = node_scratch()

    def ready(self, inputs: list[str], output_dir: str) -> tuple[str | None, str, int]:
        """(why this actor cannot work or None, its node, its PID); builds the engine and the style vector here, once,
        so a bad style or backend fails the run before any file."""
        try:
            self.converter.engine, self.converter.style_source()
        except StreamerError as exc:
            return one_line(exc), self.node, os.getpid()
        return storage_problem(inputs, output_dir, self.node), self.node, os.getpid()

    def reporter(self, key: Any) -> Callable[[Any], None]:
        """An on_frame that tells the driver's bar every PROGRESS_EVERY frames."""
        frames = 0

        def on_frame(_frame: Any) -> None:
            nonlocal frames
            frames += 1
            if frames % PROGRESS_EVERY == 0:
                self.counter.set.remote(key, frames)

        return on_frame

    def convert_part(self, key: str, src: str, dst: str, part: Part) -> tuple[Any, str | None]:
        """One part of a long file, published beside its output for the join (see part_path)."""
        final = part_path(Path(dst), part.number)
        local = self.scratch / final.name.lstrip(".")
        try:
            result = self.converter.convert_part(Path(src), local, part, on_frame=self.reporter(key))
            self.counter.set.remote(key, result.frames)
            publish(local, final, overwrite=True, tag=self.node.rsplit("/", 1)[-1])
        except StreamerError as exc:
            result = self.converter.batch_result(Path(src), Path(dst), "failed", error=one_line(exc),
                                                 exit_code=exc.exit_code)
        local.unlink(missing_ok=True)
        error = result.error.replace(str(local), dst) if result.error else None
        return dataclasses.replace(result, input=src, output=dst, node=self.node, error=error), None

    def join(self, src: str, dst: str, count: int) -> tuple[list[str] | None, str | None]:
        """(how the audio was handled, None), or (None, why the join failed): the parts and the audio into dst."""
        final, local = Path(dst), self.scratch / Path(dst).name
        local.unlink(missing_ok=True)
        try:
            modes = join_parts([part_path(final, n) for n in range(count)], Path(src), local)
            publish(local, final, overwrite=self.converter.options.overwrite, tag=self.node.rsplit("/", 1)[-1])
        except InputError as exc:
            return None, one_line(exc)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            return None, f"{dst}: cannot join its parts ({one_line(exc)})"
        finally:
            local.unlink(missing_ok=True)
        return modes, None

    def convert(self, job: int, src: str, dst: str) -> tuple[Any, str | None]:
        """(the file's ConvertResult, why the files after it are not attempted or None)."""
        final, local = Path(dst), self.scratch / Path(dst).name
        local.unlink(missing_ok=True)
        on_frame = self.reporter(job)
        result, full = self.converter.convert_or_fail(Path(src), local, on_frame=on_frame)
        self.counter.set.remote(job, result.frames)
        if result.status == "ok":
            try:
                publish(local, final, overwrite=self.converter.options.overwrite, tag=self.node.rsplit("/", 1)[-1])
            except InputError as exc:
                result = self.converter.batch_result(Path(src), final, "failed", error=one_line(exc),
                                                     exit_code=exc.exit_code)
                full = f"not attempted: {final.parent} is full (no space left on device)" if disk_full(exc) else None
        local.unlink(missing_ok=True)
        error = result.error.replace(str(local), dst) if result.error else None
        return dataclasses.replace(result, input=src, output=dst, node=self.node, error=error), full


class Dispatcher:
    """The driver's side: hands work to idle actors (whole files, or the parts of a long one and then their join),
    retries work whose actor died on another actor, reports each file as it ends and the frames converted so far."""

    def __init__(self, ray: Any, actors: list[Any], counter: Any, converter: Any,
                 on_file: Callable[[Any], None] | None, on_progress: Callable[[int, int, int], None] | None) -> None:
        self.ray, self.actors, self.counter, self.converter = ray, list(actors), counter, converter
        self.on_file, self.on_progress = on_file, on_progress
        self.deaths = [0] * len(actors)
        self.live = set(range(len(actors)))
        self.idle = deque(range(len(actors)))
        self.running: dict[Any, tuple[int, dict]] = {}
        self.queue: deque[dict] = deque()
        self.results: dict[int, Any] = {}
        self.parts: dict[int, dict[int, Any]] = {}          # a split file's finished parts, by number
        self.full: str | None = None
        self.stdout = sys.stdout                # the CLI's; Ray's own messages go elsewhere (see convert_on_ray)

    def run(self, jobs: dict[int, tuple[Path, Path]], plans: dict[int, list[Part]]) -> dict[int, Any]:
        for i, (src, dst) in jobs.items():
            base = {"index": i, "src": src, "dst": dst, "attempts": 0, "avoid": None}
            if plans.get(i):
                self.parts[i] = {}
                self.queue.extend(dict(base, kind="part", part=part, count=len(plans[i])) for part in plans[i])
            else:
                self.queue.append(dict(base, kind="file"))
        while self.queue or self.running:
            self.assign()
            if not self.running:                     # every actor is gone: what is left cannot be converted
                for job in list(self.queue):
                    self.fail(job, "no Ray worker left to convert it")
                break
            ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=POLL_S)
            for ref in ready:
                self.collect(ref)
            if self.on_progress is not None:
                self.on_progress(len(self.results), len(jobs), self.ray.get(self.counter.total.remote()))
        return self.results

    def assign(self) -> None:
        """Each idle actor takes the first queued job it did not just die on (any job when it is the only one)."""
        for _ in range(len(self.idle)):
            a = self.idle.popleft()
            if a not in self.live:
                continue
            job = next((j for j in self.queue if j["avoid"] != a or len(self.live) == 1), None)
            if job is None:
                self.idle.append(a)
                continue
            self.queue.remove(job)
            job["attempts"] += 1
            actor, src, dst = self.actors[a], str(job["src"]), str(job["dst"])
            if job["kind"] == "part":
                ref = actor.convert_part.remote(f"{job['index']}/{job['part'].number}", src, dst, job["part"])
            elif job["kind"] == "join":
                ref = actor.join.remote(src, dst, job["count"])
            else:
                ref = actor.convert.remote(job["index"], src, dst)
            self.running[ref] = (a, job)

    def collect(self, ref: Any) -> None:
        a, job = self.running.pop(ref)
        self.idle.append(a)
        try:
            result, full = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            self.actor_died(a, job, exc)
            return
        except self.ray.exceptions.RayTaskError as exc:      # not a StreamerError: a bug, reported for this file
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            self.fail(job, f"{type(cause).__name__}: {one_line(cause)}", EXIT_FAILURE)
            return
        if job["index"] in self.results:                     # another part of this file failed already
            for temp in ray_temps(job["dst"]):
                temp.unlink(missing_ok=True)
            return
        if job["kind"] == "part":
            self.part_done(job, result)
        elif job["kind"] == "join":
            self.joined(job, result, full)
        else:
            self.file_done(job, result, full)

    def file_done(self, job: dict, result: Any, full: str | None) -> None:
        if full is not None and self.full is None:
            self.full = full
            for later in list(self.queue):
                if later["index"] not in self.results:
                    self.finish(later, self.converter.batch_result(later["src"], later["dst"], "not_attempted",
                                                                   error=full, exit_code=EXIT_USAGE))
            self.queue.clear()
        self.finish(job, result)

    def part_done(self, job: dict, result: Any) -> None:
        if result.status != "ok":
            self.finish(job, result)
            return
        done = self.parts[job["index"]]
        done[job["part"].number] = result
        if len(done) == job["count"]:                        # all parts there: join them next, before other work
            self.queue.appendleft(dict(job, kind="join", attempts=0, avoid=None))

    def joined(self, job: dict, modes: list[str] | None, error: str | None) -> None:
        if modes is None:
            self.fail(job, error or "cannot join its parts", named=False)
            return
        parts = [self.parts[job["index"]][n] for n in range(job["count"])]
        frames, seconds = sum(r.frames for r in parts), sum(r.seconds for r in parts)
        nodes = ",".join(sorted({r.node for r in parts}))
        self.finish(job, dataclasses.replace(parts[0], frames=frames, seconds=seconds, audio=modes, node=nodes,
                                             fps=frames / seconds if seconds else 0.0))

    def actor_died(self, a: int, job: dict, exc: BaseException) -> None:
        """The actor's process ended mid-job: clear what it left, try the job again elsewhere."""
        what = f"part{job['part'].number:04d}" if job["kind"] == "part" else "file"
        for temp in ray_temps(job["dst"], what):
            temp.unlink(missing_ok=True)
        self.counter.set.remote(f"{job['index']}/{job['part'].number}" if job["kind"] == "part" else job["index"], 0)
        self.deaths[a] += 1
        if self.deaths[a] > MAX_ATTEMPTS:
            self.live.discard(a)
        if job["attempts"] >= MAX_ATTEMPTS or self.full is not None:
            self.fail(job, f"the Ray worker converting it died {job['attempts']} times ({one_line(exc)})")
        else:
            job["avoid"] = a
            self.queue.appendleft(job)

    def fail(self, job: dict, why: str, exit_code: int = EXIT_FAILURE, *, named: bool = True) -> None:
        error = f"{job['src']}: {why}" if named else why
        self.finish(job, self.converter.batch_result(job["src"], job["dst"], "failed", error=error,
                                                     exit_code=exit_code))

    def finish(self, job: dict, result: Any) -> None:
        """A file's end: its result reported, its queued parts dropped, its parts' files removed."""
        index = job["index"]
        if index in self.results:
            return
        self.results[index] = result
        for other in [j for j in self.queue if j["index"] == index]:
            self.queue.remove(other)
        if index in self.parts:
            for temp in ray_temps(job["dst"]):
                temp.unlink(missing_ok=True)
        if self.on_file is not None:
            with contextlib.redirect_stdout(self.stdout):
                self.on_file(result)


def wants_gpu(options: Any, resources: dict[str, float]) -> bool:
    """Whether each actor takes a GPU: a GPU backend asked for, or ``auto`` on a cluster that has GPUs."""
    if options.backend in ("torch", "tensorrt"):
        return True
    if options.backend == "onnxruntime":
        return options.provider not in (None, "auto", "cpu")
    return resources.get("GPU", 0) >= 1


def start_actors(ray: Any, converter: Any, jobs: list[tuple[Path, Path]], work: int, output_dir: Path,
                 address: str) -> tuple[list[Any], Any]:
    """As many actors as the cluster has slots (no more than files), spread over the nodes, each ready to work."""
    resources = ray.cluster_resources()
    gpu = wants_gpu(converter.options, resources)
    cpus = max(1, converter.options.threads or 1)
    slots = int(resources.get("GPU", 0)) if gpu else int(resources.get("CPU", 0) // cpus)
    if slots < 1:
        raise InputError(f"--ray {address}: the cluster has no {'GPU' if gpu else f'{cpus} CPUs'} for a worker")
    options = dataclasses.replace(converter.options, threads=converter.options.threads or cpus)
    name = f"streamer-frames-{uuid.uuid4().hex}"
    counter = ray.remote(num_cpus=0)(FrameCounter).options(name=name).remote()
    worker = ray.remote(FileWorker).options(num_cpus=1 if gpu else cpus, num_gpus=1 if gpu else 0,
                                            max_restarts=MAX_ATTEMPTS, max_task_retries=0,
                                            scheduling_strategy="SPREAD")
    actors = [worker.remote(type(converter), options, name) for _ in range(min(slots, work))]
    inputs = [str(s) for s, _ in jobs]
    try:
        checks = ray.get([a.ready.remote(inputs, str(output_dir)) for a in actors])
    except ray.exceptions.RayError as exc:
        raise InputError(f"--ray {address}: a worker could not start ({one_line(exc)})") from exc
    problem = next((why for why, _node, _pid in checks if why), None)
    if problem:
        raise InputError(problem)
    return actors, counter


def plan(converter: Any, todo: dict[int, tuple[Path, Path]], segment: float | None) -> dict[int, list[Part]]:
    """The videos longer than ``segment`` seconds, in parts.  Not with --strength below 1 (each file mixes in the look
    of its own first frame, which a part does not see) nor --strict (whose checks need the whole file's decode)."""
    if not segment or converter.options.strength < 1 or converter.options.strict:
        return {}
    plans = {i: plan_parts(src, segment) for i, (src, _) in todo.items() if not is_image(src)}
    return {i: parts for i, parts in plans.items() if parts}


def convert_on_ray(converter: Any, jobs: list[tuple[Path, Path]], address: str, *,
                   on_file: Callable[[Any], None] | None = None,
                   on_progress: Callable[[int, int, int], None] | None = None, debug: bool = False,
                   segment: float | None = None) -> list[Any]:
    """ConvertResults for ``jobs`` (from streamer.convert.batch_jobs) in their order, each converted file's with
    the ``node`` that converted it (the nodes, comma-separated, for a file converted in parts: videos longer than
    ``segment`` seconds); ``converter`` (a Converter) is only asked for its class, options and the results of files
    it did not convert."""
    results: dict[int, Any] = {}
    todo: dict[int, tuple[Path, Path]] = {}
    for i, (src, dst) in enumerate(jobs):
        if dst.exists() and not converter.options.overwrite:
            results[i] = converter.batch_result(src, dst, "skipped")
            if on_file is not None:
                on_file(results[i])
        else:
            todo[i] = (src, dst)
    if todo:
        stdout = sys.stdout
        # the driver prints what the raylets report (a worker killed, ...) on stdout, where --json's object goes:
        # on stderr with --debug, else nowhere (each file's result says what became of it)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(sys.stderr if debug else devnull):
            ray = connect(address, debug=debug)
            try:
                plans = plan(converter, todo, segment)
                work = sum(len(plans.get(i) or [1]) for i in todo)
                actors, counter = start_actors(ray, converter, list(todo.values()), work, jobs[0][1].parent, address)
                dispatcher = Dispatcher(ray, actors, counter, converter, on_file, on_progress)
                dispatcher.stdout = stdout
                results.update(dispatcher.run(todo, plans))
            finally:
                ray.shutdown()
    return [results[i] for i in range(len(jobs))]
