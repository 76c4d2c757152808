"""Dynamic batcher: requests queue up while the model is busy and run together when it is free.

Policy, in order of importance:
- At most `parallel` model calls at once (default one), each on a thread of the executor that
  every served model shares. Two single-threaded calls side by side keep two cores busy while
  each waits on its own Python work (tokenizing, splitting results), which one call with two
  intra-op threads does not. What is queued when slots free up is spread over them (32 queued,
  two idle slots: two batches of 16), not run as one batch while the other slot idles.
- A lone request on an idle server runs at once. Waiting (up to `max_wait`, counted from the
  oldest queued request) only happens when the previous batch held several requests, i.e. when
  concurrent load makes companions likely, and only for the idle slots' share of
  `max_batch_size`: with two slots, a slot that frees up while the other runs starts once half a
  batch is queued, rather than idling until a whole one is.
- The queue is bounded in texts; when full, `Overloaded` carries a Retry-After estimate from the
  measured throughput. A request past its deadline, or whose client went away, is dropped from
  the queue if its batch has not started, so it costs no model time.
- Inputs are of the model's task (texts, or decoded images); length grouping and batched
  tokenization happen in the predictor (one tokenizer call per batch).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frugalml.monitor.metrics import ServingMetrics
from frugalml.runtime.predictor import Predictor

log = logging.getLogger("frugalml.serve")


class Overloaded(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"queue full; retry after {retry_after} s")
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    pass


class ClientGone(Exception):
    pass


@dataclass(eq=False)
class _Pending:
    texts: Sequence[Any]  # the request's inputs: texts or images
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)
    started: bool = False
    dropped: bool = False


class Batcher:
    def __init__(
        self,
        predictor: Predictor,
        metrics: ServingMetrics,
        model: str,
        max_batch_size: int = 32,
        max_wait: float = 0.01,
        max_queue: int = 1024,
        parallel: int = 1,
    ):
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.parallel = parallel
        self._queue: deque[_Pending] = deque()
        self._queued = 0  # texts waiting, dropped ones excluded
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_batch_requests = 0
        self._texts_per_second = 0.0  # moving average per model call, for Retry-After
        self._task: asyncio.Task | None = None
        self._slots = asyncio.Semaphore(parallel)
        self._running: set[asyncio.Task] = set()
        self._executor: Executor | None = None
        self._depth = metrics.queue_depth.labels(model)
        self._in_flight = metrics.in_flight.labels(model)
        self._queue_wait = metrics.queue_wait.labels(model)
        self._inference = metrics.inference.labels(model)
        self._batch_size = metrics.batch_size.labels(model)
        self._metrics, self._model = metrics, model

    def start(self, executor: Executor) -> None:
        self._executor = executor
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="frugalml-batcher")

    async def close(self) -> None:
        """Finish every queued and running request, then stop."""
        await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, *self._running, return_exceptions=True)

    async def predict(
        self, texts: Sequence[Any], timeout: float, gone: asyncio.Future | None = None
    ) -> np.ndarray:
        """Class probabilities for `texts`, batched with whatever else is queued.

        Raises Overloaded (queue full), DeadlineExceeded (not done within `timeout` seconds) or
        ClientGone (`gone` finished first: the client disconnected).
        """
        if self._queued + len(texts) > self.max_queue:
            raise Overloaded(self._retry_after())
        pending = _Pending(texts, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._count_queued(len(texts))
        self._idle.clear()
        self._arrived.set()
        waiters = [pending.future] if gone is None else [pending.future, gone]
        self._in_flight.inc()
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if pending.future.done():
                return pending.future.result()
            raise ClientGone() if gone in done else DeadlineExceeded()
        finally:
            self._in_flight.dec()
            if not pending.future.done():
                self._drop(pending)

    def _drop(self, pending: _Pending) -> None:
        pending.future.cancel()
        if not pending.started and not pending.dropped:
            pending.dropped = True
            self._count_queued(-len(pending.texts))
            self._arrived.set()  # a batcher waiting for companions of dropped requests stops

    def _count_queued(self, texts: int) -> None:
        # The gauge moves by the change, not to this batcher's count: the versions of one model
        # share its series, which then reads their total.
        self._queued += texts
        self._depth.inc(texts)

    def _retry_after(self) -> int:
        rate = (self._texts_per_second or 1.0) * self.parallel
        return max(1, math.ceil(self._queued / rate))

    async def _loop(self) -> None:
        while True:
            while self._queue and self._queue[0].dropped:
                self._queue.popleft()
            if not self._queue:
                self._arrived.clear()
                if not self._running:
                    self._idle.set()
                await self._arrived.wait()
                continue
            await self._slots.acquire()  # while every slot is busy, the queue gathers a batch
            if self.max_wait > 0 and self._last_batch_requests > 1:
                await self._wait_for_companions()
            # Spread over the idle slots: two half batches side by side finish sooner than one.
            idle_slots = self._idle_slots()
            batch = self._take(max(1, min(self.max_batch_size, math.ceil(self._queued / idle_slots))))
            if not batch:  # everything queued was dropped meanwhile
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _idle_slots(self) -> int:
        return self.parallel - len(self._running)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._slots.release()
        if not self._running and self._queued == 0:
            self._idle.set()

    async def _wait_for_companions(self) -> None:
        """Until the idle slots' share of a full batch is queued, the oldest has waited `max_wait`,
        or every queued request has been dropped (deadline, hang-up)."""
        deadline = self._queue[0].enqueued + self.max_wait
        while 0 < self._queued < math.ceil(self.max_batch_size * self._idle_slots() / self.parallel):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self, limit: int) -> list[_Pending]:
        """Oldest live requests up to `limit` texts (one larger request runs alone)."""
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if head.dropped:
                self._queue.popleft()
                continue
            if batch and rows + len(head.texts) > limit:
                break
            self._queue.popleft()
            # Started from here on: a deadline or hang-up before `_run` begins must not count
            # these texts out of the queue a second time.
            head.started = True
            batch.append(head)
            rows += len(head.texts)
        self._count_queued(-rows)
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        started = time.monotonic()
        texts: list[Any] = []
        for pending in batch:
            self._queue_wait.observe(started - pending.enqueued)
            texts.extend(pending.texts)
        loop = asyncio.get_running_loop()
        try:
            probabilities = await loop.run_in_executor(self._executor, self.predictor.predict_proba, texts)
        except Exception as exc:  # one bad batch fails its requests, not the server
            log.exception("model call failed for a batch of %d texts", len(texts))
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        finally:
            elapsed = time.monotonic() - started
            self._inference.observe(elapsed)
            self._batch_size.observe(len(texts))
            self._last_batch_requests = len(batch)
        self._metrics.observe_predictions(self._model, list(self.predictor.labels), probabilities)
        rate = len(texts) / max(elapsed, 1e-6)
        self._texts_per_second = (
            rate if not self._texts_per_second else 0.8 * self._texts_per_second + 0.2 * rate
        )
        offset = 0
        for pending in batch:
            end = offset + len(pending.texts)
            if not pending.future.done():
                pending.future.set_result(probabilities[offset:end])
            offset = end
