"""Adaptive micro-batching: concurrent requests merged into one predict call.

As MLServer's adaptive batcher does: requests go into an asyncio queue with a future each; one
task drains up to ``max_batch`` rows, runs one predict on the merged batch, and splits the
result back into the futures. While a batch is being predicted, the next one fills up, so
batches grow with the load by themselves.

Waiting for more requests never costs more than a call saves: the batcher measures what one
call costs (a moving average) and holds a batch open at most that long, capped by
``max_wait``. A model whose single call already takes longer than ``max_wait`` is never held
back: it takes what is queued and goes.

A batch that fails is retried request by request, so one bad request fails alone and the
others of its batch still get their answers. One batcher serves one model version: arms of an
A/B test never share a batch.

>>> batcher = Batcher(scorer.score, max_batch=64, max_wait=0.002)
>>> answer = await batcher.submit(block)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

log = logging.getLogger("modelyard.serving")

Item = TypeVar("Item")
Answer = TypeVar("Answer")

_STOP = object()


class Batcher(Generic[Item, Answer]):
    """Merge concurrent submissions into calls of ``run(items) -> answers`` (same order)."""

    def __init__(
        self,
        run: Callable[[Sequence[Item]], list[Answer]],
        *,
        max_batch: int = 64,
        max_wait: float = 0.002,
        size: Callable[[Item], int] = lambda item: 1,
        on_batch: Callable[[int], None] | None = None,
        enabled: bool = True,
        inline: bool = False,
        initializer: Callable[[], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait))
        self._size = size
        self._on_batch = on_batch
        self.enabled = enabled
        # Short CPU-bound calls run on the event loop itself: in a thread they would make every
        # socket call of the loop wait for the GIL (Python hands it over every 5 ms).
        self.inline = inline
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._held: tuple[Item, asyncio.Future[Answer]] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1 if enabled else 4,
                                        thread_name_prefix="modelyard-predict",
                                        initializer=initializer)
        self.call_cost: float | None = None  # seconds per call, a moving average
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._pool_open = True

    # -- public -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, item: Item) -> Answer:
        """The answer for one item; raises what predicting that item raised."""
        if not self.enabled or self._closed or self._task is None:
            answers = await self._call([item])
            return answers[0]
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def close(self) -> None:
        """Answer everything already queued, then stop (used when a version is swapped out)."""
        self._closed = True
        if self._task is not None:
            self._queue.put_nowait(_STOP)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._pool_open = False
        self._pool.shutdown(wait=False)

    # -- the batching loop ----------------------------------------------------------------------
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            if self._held is not None:
                first, self._held = self._held, None
            else:
                got = await self._queue.get()
                if got is _STOP:
                    break
                first = got
            batch = [first]
            rows = self._size(first[0])
            deadline = loop.time() + self.wait()
            while rows < self.max_batch:
                try:
                    got = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        got = await asyncio.wait_for(self._queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                if got is _STOP:
                    stopping = True
                    break
                n = self._size(got[0])
                if rows + n > self.max_batch:
                    self._held = got  # starts the next batch
                    break
                batch.append(got)
                rows += n
            await self._answer(batch, rows)
        if self._held is not None:  # a held item after the stop signal still gets its answer
            held, self._held = self._held, None
            await self._answer([held], self._size(held[0]))
        while not self._queue.empty():
            got = self._queue.get_nowait()
            if got is not _STOP:
                await self._answer([got], self._size(got[0]))

    def wait(self) -> float:
        """How long a batch is held open for more requests: at most one call's measured
        cost, capped by ``max_wait``; nothing when a call costs more than ``max_wait``."""
        cost = self.call_cost
        if cost is None:
            return self.max_wait
        return 0.0 if cost > self.max_wait else cost

    async def _answer(self, batch: list[tuple[Item, asyncio.Future[Answer]]], rows: int) -> None:
        items = [item for item, _ in batch]
        try:
            answers = await self._call(items)
        except Exception as exc:  # noqa: BLE001 - handed to the batch's own futures
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            log.warning("batch of %d failed (%s); answering its requests one by one",
                        len(batch), type(exc).__name__)
            for item, future in batch:
                try:
                    _settle(future, answer=(await self._call([item]))[0])
                except Exception as one:  # noqa: BLE001
                    _settle(future, exc=one)
            return
        if self._on_batch is not None:
            self._on_batch(rows)
        for (_, future), answer in zip(batch, answers, strict=True):
            _settle(future, answer=answer)

    async def _call(self, items: list[Item]) -> list[Answer]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        # A straggler that reaches a closed batcher still gets answered, on the loop's pool.
        if self.inline:
            answers = self._run(items)
        else:
            pool = self._pool if self._pool_open else None
            answers = await loop.run_in_executor(pool, self._run, items)
        took = time.perf_counter() - started
        self.call_cost = took if self.call_cost is None else 0.8 * self.call_cost + 0.2 * took
        if len(answers) != len(items):
            raise RuntimeError(f"predict returned {len(answers)} answers for {len(items)}")
        if not self.enabled and self._on_batch is not None:
            self._on_batch(sum(self._size(i) for i in items))
        return answers


def _settle(future: asyncio.Future[Any], *, answer: Any = None,
            exc: BaseException | None = None) -> None:
    if future.done():  # the client went away
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(answer)
