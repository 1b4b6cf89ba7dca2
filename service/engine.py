"""The service's one encoding thread: queries are encoded together, never on the event loop.

Every query's words or picture go into one queue. A single worker thread owns torch: each turn it takes
every query waiting (up to ``max_batch``) and encodes those that share an encoder and a modality as one
batch, so under load a batch grows by itself, with no waiting window added when the service is idle.
One thread also makes applying an unmerged adapter to the shared backbone safe
(``qualia.adapter_bank.LowRank.applied``).

Threads: a query encoded alone runs on ``torch_threads`` torch threads (default one), a batch of several
on ``batch_threads`` (default one per core this process may use). Torch's OpenMP threads spin-wait after
each operation; beside another busy process (a training job on the same cores) that spinning is what made
one encode take 250 ms instead of 6, and with two threads one client's p99 beside training was 2.6 x its
idle p99 against 2.1 x with one. Batches come only when queries arrive together, when throughput is what
counts: on ViT-B-32 a batch of 16 took 10.5 ms a query on two threads against 17.5 on one
(docs/benchmarks.md has the measurements behind both choices).

Under load, after a turn of several queries, the worker waits a little (``LINGER_SHARE`` of that turn's
time) for as many again: the clients it has just answered are sending their next queries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# After a turn of several queries, wait up to this share of that turn's time for as many again. 16 clients
# (docs/benchmarks.md): ViT-B-32 81 -> 91 req/s, qualia-tiny 853 -> 881; waiting a whole turn gained
# little more (93, 931) for three times the wait at the end of a burst.
LINGER_SHARE = 0.3


@dataclass
class _Job:
    encoder: Any  # qualia.embed.Encoder
    modality: str  # "text" or "pixels"
    payload: Any  # the text, or the preprocessed picture (3, S, S)
    then: Callable[[np.ndarray], Any] | None = None  # run on the vector here, its answer the job's
    future: Future = field(default_factory=Future)


class EncoderWorker:
    """``await worker.encode(encoder, "text", words)`` -> the (dim,) unit vector."""

    def __init__(self, max_batch: int = 32, torch_threads: int = 1, batch_threads: int = 0,
                 on_batch: Callable[[int], None] | None = None, linger_share: float = LINGER_SHARE) -> None:  # fmt: skip
        self.max_batch = max_batch
        self.linger_share = linger_share
        self.torch_threads = torch_threads  # a query alone; 0: torch's default
        self.batch_threads = batch_threads  # a batch of several; 0: one per core this process may use
        self._threads = {1: 1, 2: 1}  # by "alone" (1) or "together" (2): resolved in start()
        self._set_threads = 0
        self.on_batch = on_batch  # called with each batch's size (the service's metrics)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._last_size, self._last_seconds = 0, 0.0  # the worker's last turn: queries taken, seconds spent

    def start(self) -> None:
        import torch  # not before a service starts: the command line answers --help without it

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self._threads = {1: self.torch_threads or torch.get_num_threads(), 2: self.batch_threads or cores}
        torch.set_num_threads(self._threads[1])  # what torch's other users here (picture preprocessing) start from
        self._set_threads = 0  # set on the worker, the one thread that runs torch here
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
        # Under load (the last turn took several queries) wait a little for as many as it took: the
        # clients it answered are sending their next queries, and without the wait turns alternate between
        # a big batch and the few that came while its answers went out. A query alone never waits.
        wanted = min(self.max_batch, self._last_size)
        deadline = time.perf_counter() + (self.linger_share * self._last_seconds if wanted > 1 else 0.0)
        while len(jobs) < self.max_batch:
            try:
                left = deadline - time.perf_counter() if len(jobs) < wanted else 0.0
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this turn
                break
            jobs.append(job)
        return jobs

    def _loop(self) -> None:
        while (jobs := self._take()) is not None:
            started = time.perf_counter()
            try:
                groups: dict[tuple[int, int, str], list[_Job]] = {}
                for job in jobs:  # one model with one adapter: encoders made per request for one profile are equal
                    key = (id(job.encoder.model), id(getattr(job.encoder, "low_rank", None)), job.modality)
                    groups.setdefault(key, []).append(job)
                for group in groups.values():
                    self._run(group)
            except Exception as e:  # a dead worker would leave every later request waiting forever
                log.exception("encoder worker turn failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e)
            self._last_size, self._last_seconds = len(jobs), time.perf_counter() - started

    def _run(self, group: Sequence[_Job]) -> None:
        live = [job for job in group if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        import torch

        encoder, modality = live[0].encoder, live[0].modality
        threads = self._threads[min(len(live), 2)]
        if threads != self._set_threads:
            torch.set_num_threads(threads)
            self._set_threads = threads
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
