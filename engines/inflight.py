"""Batches in flight on a GPU engine: the ticket, slot-ring and in-order bookkeeping shared by torch and TensorRT.

Why it exists: both GPU engines overlap the upload of batch t+1, the compute of batch t
and the download of batch t-1, so several batches are in flight at once, each in a
*slot* (pinned host buffers, device buffers, events) that must not be reused before its
batch has come back.  The rules for that are the same whatever the backend, so they live
here once; each engine only says how to enqueue a batch and how to read its result.

The contract (every engine with ``submit_uint8`` / ``collect`` keeps it):

- ``submit``: a uint8 NHWC batch is enqueued without waiting and gets a *ticket*, an int
  that grows by one per submitted batch.  A submit that raises consumes no ticket and
  leaves its slot free.  With every slot in use, submit raises ``EngineError`` at once
  (it does not wait: waiting is ``collect``'s job, and the caller holds the tickets).
- ``collect(ticket)``: returns that batch's result.  Results come back in submission
  order: collecting a later ticket first waits for the earlier batches too and keeps
  their results (copied out of the slots) until they are collected, so slots are
  always reused in ring order and no batch is lost.  Collecting an unknown or already
  collected ticket raises ``EngineError``.
- ``flush()``: waits for every batch still in flight and returns all uncollected results
  in submission order.  ``close()`` on an engine flushes (dropping the results) before
  it frees anything, so no buffer is freed under a copy or kernel still running.

An engine with no slots (the torch CPU path, which computes at submit time) gets the
same tickets and ordering with no limit on batches in flight.

Thread safety: one thread may submit while another collects (the decode / infer /
encode loops do); submits are serialised among themselves, and so are collects.
"""
from __future__ import annotations

import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

import numpy as np

from engines.base import EngineError

SlotT = TypeVar("SlotT")


@dataclass
class Submission(Generic[SlotT]):
    """One batch being submitted: its ticket, its slot (None without slots) and how to finish it.

    The engine sets ``finish`` before the ``with`` block ends: a callable that waits for
    the batch and returns its result as an array it owns (slots are reused after it).
    """
    ticket: int
    slot: SlotT | None
    finish: Callable[[], np.ndarray] | None = None


class InFlight(Generic[SlotT]):
    """A ring of slots, the tickets of the batches in them, and their results in submission order."""

    def __init__(self, backend: str, slots: Sequence[SlotT] = ()) -> None:
        self._backend = backend
        self.slots: list[SlotT] = list(slots)
        self._state = threading.Lock()          # guards the counters and queues below, held briefly
        self._submitting = threading.Lock()     # one submit at a time: tickets are handed out in order
        self._collecting = threading.Lock()     # one waiter at a time: results are finished in order
        self._next = 0
        self._pending: deque[Submission[SlotT]] = deque()
        self._finishing = 0                     # batches popped from _pending whose finish is running
        self._ready: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        """Batches submitted and not yet collected (in flight or finished and waiting)."""
        with self._state:
            return len(self._pending) + self._finishing + len(self._ready)

    @contextmanager
    def submit(self) -> Iterator[Submission[SlotT]]:
        """The next ticket and its free slot; registered when the block ends without raising."""
        with self._submitting:
            with self._state:
                in_use = len(self._pending) + self._finishing
                if self.slots and in_use >= len(self.slots):
                    raise EngineError(f"{self._backend}: {in_use} batches already in flight; "
                                      f"collect() the oldest before submitting more")
                ticket = self._next
            sub: Submission[SlotT] = Submission(ticket, self.slots[ticket % len(self.slots)] if self.slots else None)
            yield sub                           # an exception here consumes nothing
            if sub.finish is None:
                raise EngineError(f"{self._backend}: internal error: batch {ticket} submitted without a finish")
            with self._state:
                self._pending.append(sub)
                self._next += 1

    def collect(self, ticket: int) -> np.ndarray:
        """The result of ``ticket``, after finishing every batch submitted before it (their results are kept)."""
        with self._collecting:
            while True:
                with self._state:
                    if ticket in self._ready:
                        return self._ready.pop(ticket)
                    if not self._pending or self._pending[0].ticket > ticket:
                        raise EngineError(f"{self._backend}: no batch in flight with ticket {ticket} "
                                          f"(already collected, or never submitted)")
                    sub = self._pending.popleft()
                    self._finishing += 1
                try:
                    result = sub.finish()
                finally:
                    with self._state:
                        self._finishing -= 1     # the slot is free again, whether or not finish raised
                with self._state:
                    self._ready[sub.ticket] = result

    def flush(self) -> list[np.ndarray]:
        """Wait for every batch still in flight; all uncollected results, in submission order."""
        with self._state:
            tickets = sorted([*self._ready, *(s.ticket for s in self._pending)])
        return [self.collect(t) for t in tickets]

    def discard(self) -> None:
        """Finish and drop every uncollected batch, errors included: what a stopped or failed run left behind,
        cleared before a new run on the same engine needs the slots."""
        with self._state:
            tickets = sorted([*self._ready, *(s.ticket for s in self._pending)])
        for t in tickets:
            try:
                self.collect(t)
            except Exception:   # noqa: BLE001 - that run has ended; its error was reported (or not wanted)
                pass


class GrowingBuffers:
    """Named buffers that are reallocated only when a larger one is asked for.

    A slot sees the same few sizes over and over (one per stream resolution), so buffers
    are kept between batches; ``alloc(nbytes)`` makes one (pinned host or device memory).
    """

    def __init__(self, alloc: Callable[[int], Any]) -> None:
        self._alloc = alloc
        self._bufs: dict[str, tuple[int, Any]] = {}

    def get(self, name: str, nbytes: int) -> Any:
        """A buffer of at least ``nbytes`` (callers slice or view it to the size they need)."""
        capacity, buf = self._bufs.get(name, (-1, None))
        if capacity < nbytes:
            self._bufs.pop(name, None)          # drop the old one before allocating its successor
            buf = self._alloc(max(nbytes, 1))
            self._bufs[name] = (nbytes, buf)
        return buf

    def release(self, free: Callable[[Any], None] | None = None) -> None:
        """Free every buffer now (``free(buf)`` if given, else by dropping the last reference)."""
        bufs, self._bufs = self._bufs, {}
        if free is not None:
            for _, buf in bufs.values():
                free(buf)
