"""The transactions route: whole fetched batches, one batch's aggregation and delivery
overlapping its neighbours' work.

`submit(batch)` starts preparing the batch at once (`prepare` returns an awaitable: the handler
admits the batch now and aggregates it on its store lane), finishes it in a task of its own
(scored as soon as its aggregates are back, delivered once the previous batch is delivered) and
returns once fewer than `depth` batches are in flight (at depth 2: when the previous batch is
delivered). So batch N+1 is admitted while batch N waits for Redis and scored while batch N's
outputs flush, outputs keep the input order, and the fetch loop waits when delivery is the
bottleneck. At depth 3 (the worker's default, FRAUD_PIPELINE_DEPTH) the store lane may start
batch N+2 while batch N's outputs still flush.
Once a batch's outputs are all on the broker, `on_done(batch)` acknowledges its offsets.
`observe(stage, seconds)`, when given, hears per batch how long it took from submission to
prepared ("deciding") and how long its delivery took ("delivery").
Deliveries run as tasks of their own: stopping the worker never cuts a batch between its
produce and its acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

B = TypeVar("B")
P = TypeVar("P")


class PipelinedRoute(Generic[B, P]):
    def __init__(
        self,
        prepare: Callable[[B], Awaitable[P]],
        deliver: Callable[[P], Awaitable[None]],
        on_done: Callable[[B], object],
        on_failure: Callable[[BaseException], Awaitable[None]] | None = None,
        observe: Callable[[str, float], object] | None = None,
        depth: int = 2,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.depth = depth
        self.prepare = prepare
        self.deliver = deliver
        self.on_done = on_done
        self.on_failure = on_failure
        self.observe = observe
        # The batches' tasks, oldest first; those done at the front are dropped as submit goes.
        self._tasks: deque[asyncio.Future[None]] = deque()
        self._pending = 0
        self._idle: asyncio.Event | None = None
        self._submitted_at: deque[float] = deque()  # of the batches in flight, oldest first

    @property
    def in_flight(self) -> int:
        """Batches submitted and not yet done."""
        return self._pending

    def oldest_in_flight_s(self) -> float:
        """How long the oldest batch not yet done has been in flight (0 when none is): a batch
        whose outputs cannot be delivered shows here, and its partition makes no progress."""
        return time.monotonic() - self._submitted_at[0] if self._submitted_at else 0.0

    def _idle_event(self) -> asyncio.Event:
        if self._idle is None:  # created on the worker's event loop, on first use
            self._idle = asyncio.Event()
            self._idle.set()
        return self._idle

    async def submit(self, batch: B) -> None:
        # Counted before any await, so that a revoke waiting in drain() sees this batch.
        self._pending += 1
        submitted = time.monotonic()
        self._submitted_at.append(submitted)
        self._idle_event().clear()
        try:
            preparing = self.prepare(batch)
        except BaseException:
            self._finish()
            raise
        previous = self._tasks[-1] if self._tasks else None  # None: every batch is done
        self._tasks.append(
            asyncio.ensure_future(self._deliver_after(previous, batch, preparing, submitted))
        )
        while True:
            while self._tasks and self._tasks[0].done():
                self._tasks.popleft()
            if len(self._tasks) < self.depth:
                return
            # Unlike `await`, a cancel leaves the batch running.
            await asyncio.wait({self._tasks[0]})

    async def _deliver_after(
        self,
        previous: asyncio.Future[None] | None,
        batch: B,
        preparing: Awaitable[P],
        submitted: float,
    ) -> None:
        try:
            prepared = await preparing  # scored while the previous batch's outputs flush
            self._observe("deciding", time.monotonic() - submitted)
            if previous is not None:
                await asyncio.wait({previous})
            delivering = time.monotonic()
            await self.deliver(prepared)
            self._observe("delivery", time.monotonic() - delivering)
            self.on_done(batch)
        except BaseException as exc:  # never acknowledged: its offsets stay uncommitted
            log.exception("batch delivery failed; its offsets stay uncommitted")
            if self.on_failure is not None:
                await self.on_failure(exc)
        finally:
            self._finish()

    def _observe(self, stage: str, seconds: float) -> None:
        if self.observe is not None:
            self.observe(stage, seconds)

    def _finish(self) -> None:
        self._pending -= 1
        if self._submitted_at:
            self._submitted_at.popleft()
        if self._pending == 0:
            self._idle_event().set()

    async def drain(self) -> None:
        """Return once every submitted batch is done."""
        while self._pending:
            await self._idle_event().wait()
