"""service.engine: queries waiting together are encoded as one batch on the worker thread, each gets its own
vector (the one it would get alone), an error reaches only the queries of its batch, and the worker goes on."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from qualia.embed import Encoder
from service.engine import EncoderWorker

WORDS = [f"{a} {b}" for a in ("quiet", "grainy", "harbor", "honey") for b in ("morning", "fog", "kitchen", "cup")]


class _Gated(Encoder):
    """An encoder whose first call waits for a gate: the queries sent meanwhile pile up in the queue."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.calls: list[int] = []

    def encode_texts(self, texts):
        if not self.calls:
            self.gate.wait(10)
        self.calls.append(len(texts))
        if "boom" in texts:
            raise ValueError("boom")
        return super().encode_texts(texts)


def test_waiting_queries_are_encoded_together_and_each_gets_its_own_vector(tiny) -> None:
    encoder = _Gated(tiny.model, tiny)
    sizes: list[int] = []
    worker = EncoderWorker(max_batch=8, torch_threads=0, on_batch=sizes.append)
    worker.start()

    async def main() -> list[np.ndarray]:
        first = asyncio.ensure_future(worker.encode(encoder, "text", WORDS[0]))
        await asyncio.sleep(0.05)  # the worker holds the first query at the gate
        rest = [asyncio.ensure_future(worker.encode(encoder, "text", w)) for w in WORDS[1:]]
        await asyncio.sleep(0.05)
        encoder.gate.set()
        return await asyncio.gather(first, *rest)

    try:
        vectors = asyncio.run(main())
    finally:
        worker.stop()
    assert encoder.calls == [1, 8, 7]  # the 15 that waited went in batches of max_batch
    assert sizes == encoder.calls
    alone = Encoder(tiny.model, tiny).encode_texts(WORDS)
    assert np.abs(np.stack(vectors) - alone).max() < 1e-5


def test_an_error_reaches_its_batch_only_and_the_worker_goes_on(tiny) -> None:
    encoder = _Gated(tiny.model, tiny)
    encoder.gate.set()
    worker = EncoderWorker(torch_threads=0)
    worker.start()

    async def main():
        bad = await asyncio.gather(worker.encode(encoder, "text", "boom"), return_exceptions=True)
        bad += await asyncio.gather(worker.encode(object(), "text", "no model"), return_exceptions=True)
        good = await worker.encode(encoder, "text", "quiet morning")
        pixels = torch.zeros(3, tiny.image_size, tiny.image_size)
        picture = await worker.encode(encoder, "pixels", pixels)
        return bad, good, picture

    try:
        bad, good, picture = asyncio.run(main())
    finally:
        worker.stop()
    assert isinstance(bad[0], ValueError)
    assert isinstance(bad[1], AttributeError)  # a broken turn fails its queries, the worker lives on
    assert good.shape == picture.shape == (tiny.embed_dim,)
    assert abs(float(np.linalg.norm(good)) - 1) < 1e-5


def test_a_stopped_worker_refuses_instead_of_hanging(tiny) -> None:
    worker = EncoderWorker(torch_threads=0)
    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(worker.encode(Encoder(tiny.model, tiny), "text", "fog"))


def test_what_runs_after_a_query_answers_it_and_its_error_stays_its_own(tiny) -> None:
    encoder = _Gated(tiny.model, tiny)
    encoder.gate.set()
    ran_on: list[str] = []
    worker = EncoderWorker(max_batch=8, torch_threads=0)
    worker.start()

    def norm(vector: np.ndarray) -> float:
        ran_on.append(threading.current_thread().name)
        return float(np.linalg.norm(vector))

    def fails(vector: np.ndarray) -> float:
        raise LookupError("no such row")

    async def main() -> list:
        return await asyncio.gather(worker.encode(encoder, "text", WORDS[0], norm),
                                    worker.encode(encoder, "text", WORDS[1], fails),
                                    worker.encode(encoder, "text", WORDS[2]), return_exceptions=True)  # fmt: skip

    try:
        answered, failed, plain = asyncio.run(main())
    finally:
        worker.stop()
    assert answered == pytest.approx(1.0, abs=1e-5) and ran_on == ["encoder"]  # on the worker, not the loop
    assert isinstance(failed, LookupError)
    assert plain.shape == (tiny.embed_dim,)


def test_a_query_alone_and_a_batch_run_on_their_own_torch_threads(tiny) -> None:
    """One thread for a query alone (steady beside other work), more for a batch (throughput under load)."""

    class Counting(_Gated):
        def encode_texts(self, texts):
            threads.append(torch.get_num_threads())
            return super().encode_texts(texts)

    threads: list[int] = []
    encoder = Counting(tiny.model, tiny)
    worker = EncoderWorker(max_batch=8, torch_threads=1, batch_threads=2)
    worker.start()

    async def main() -> None:
        first = asyncio.ensure_future(worker.encode(encoder, "text", WORDS[0]))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(worker.encode(encoder, "text", w)) for w in WORDS[1:]]
        await asyncio.sleep(0.05)
        encoder.gate.set()
        await asyncio.gather(first, *rest)
        await worker.encode(encoder, "text", "alone again")

    try:
        asyncio.run(main())
    finally:
        worker.stop()
    assert encoder.calls == [1, 8, 7, 1]
    assert threads == [1, 2, 2, 1]


def test_after_a_busy_turn_the_worker_waits_a_little_for_the_next_queries_and_alone_never(tiny) -> None:
    """A turn of 8 that took ~0.2 s: a query that comes 50 ms after the next one joins its batch. After a
    turn of one, two queries 50 ms apart are encoded apart."""

    class Slow(_Gated):
        def encode_texts(self, texts):
            if len(texts) == 8:
                time.sleep(0.2)
            return super().encode_texts(texts)

    encoder = Slow(tiny.model, tiny)
    worker = EncoderWorker(max_batch=8, torch_threads=0, linger_share=1.0)
    worker.start()

    async def two_apart() -> None:
        first = asyncio.ensure_future(worker.encode(encoder, "text", "harbor fog"))
        await asyncio.sleep(0.05)
        await asyncio.gather(first, worker.encode(encoder, "text", "honey cup"))

    async def main() -> None:
        first = asyncio.ensure_future(worker.encode(encoder, "text", WORDS[0]))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(worker.encode(encoder, "text", w)) for w in WORDS[1:9]]
        await asyncio.sleep(0.05)
        encoder.gate.set()
        await asyncio.gather(first, *rest)
        await two_apart()  # after the turn of 8: encoded together
        await worker.encode(encoder, "text", "alone")  # a fast turn of 2 before it: hardly any wait
        await two_apart()  # after a turn of 1: apart

    try:
        asyncio.run(main())
    finally:
        worker.stop()
    assert encoder.calls == [1, 8, 2, 1, 1, 1]
