"""The service's one encoding thread: queries are encoded together, never on the event loop.

Every query's words or picture go into one queue. A single worker thread owns torch: each turn it takes
every query waiting (up to ``max_batch``) and encodes those that share an encoder and a modality as one
batch, so under load a batch grows by itself, with no waiting window added when the service is idle.
One thread also makes applying an unmerged adapter to the shared backbone safe
(``qualia.adapter_bank.LowRank.applied``).

Threads: torch's intra-op pool is set to ``torch_threads`` for the whole process. Its OpenMP threads
spin-wait after each operation; beside another busy process (a training job on the same cores) that
spinning is what made one encode take 250 ms instead of 6, so the default is a single thread
(docs/benchmarks.md has the measurements behind the choice).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Job:
    encoder: Any  # qualia.embed.Encoder
    modality: str  # "text" or "pixels"
    payload: Any  # the text, or the preprocessed picture (3, S, S)
    then: Callable[[np.ndarray], Any] | None = None  # run on the vector here, its answer the job's
    future: Future = field(default_factory=Future)


class EncoderWorker:
    """``await worker.encode(encoder, "text", words)`` -> the (dim,) unit vector."""

    def __init__(self, max_batch: int = 32, torch_threads: int = 1,
                 on_batch: Callable[[int], None] | None = None) -> None:  # fmt: skip
        self.max_batch = max_batch
        self.torch_threads = torch_threads
        self.on_batch = on_batch  # called with each batch's size (the service's metrics)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import torch  # not before a service starts: the command line answers --help without it

        if self.torch_threads > 0:
            torch.set_num_threads(self.torch_threads)
        self._thread = threading.Thread(target=self._loop, name="encoder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    async def encode(self, encoder: Any, modality: str, payload: Any, then: Callable[[np.ndarray], Any] | None = None) -> Any:
        """The query's (dim,) unit vector; with ``then``, ``then(vector)`` run on this worker right after the
        batch (a search over a loaded index: a thread hop less per request, and faiss still off the loop)."""
        if self._thread is None:
            raise RuntimeError("the encoder worker is not running")
        job = _Job(encoder, modality, payload, then)
        self._queue.put(job)
        return await asyncio.wrap_future(job.future)

    def _take(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        jobs = [first]
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this turn
                break
            jobs.append(job)
        return jobs

    def _loop(self) -> None:
        while (jobs := self._take()) is not None:
            groups: dict[tuple[int, int, str], list[_Job]] = {}
            for job in jobs:  # one model with one adapter: encoders made per request for one profile are equal
                key = (id(job.encoder.model), id(getattr(job.encoder, "low_rank", None)), job.modality)
                groups.setdefault(key, []).append(job)
            for group in groups.values():
                self._run(group)

    def _run(self, group: Sequence[_Job]) -> None:
        live = [job for job in group if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        import torch

        encoder, modality = live[0].encoder, live[0].modality
        try:
            payloads = [job.payload for job in live]
            vectors = encoder.encode_texts(payloads) if modality == "text" else encoder.encode_pixels(torch.stack(payloads))
        except BaseException as e:  # each waiting request gets the error; the worker goes on
            for job in live:
                job.future.set_exception(e)
            return
        if self.on_batch is not None:
            self.on_batch(len(live))
        for job, vector in zip(live, vectors):
            if job.then is None:
                job.future.set_result(vector)
                continue
            try:
                job.future.set_result(job.then(vector))
            except BaseException as e:  # that request's error alone
                job.future.set_exception(e)
