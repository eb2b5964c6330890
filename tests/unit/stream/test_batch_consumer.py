"""The batch consumer's offset arithmetic against Faust's own commit rule, and the pipelined
route's ordering and acknowledgement, without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from types import SimpleNamespace

import pytest
from faust.types import TP

from stream.worker.batches import BatchApp, BatchConsumer, FetchedBatch
from stream.worker.route import PipelinedRoute

TX = TP("tx", 0)


@pytest.fixture
def consumer() -> Iterator[BatchConsumer]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = BatchApp("batch-consumer-test", broker="kafka://127.0.0.1:1", store="memory://")
    assert isinstance(app.consumer, BatchConsumer)
    app.consumer_generation_id = 3
    yield app.consumer
    loop.close()
    asyncio.set_event_loop(None)


def batch(start: int, first: int, last: int, generation: int = 3) -> FetchedBatch:
    records = [SimpleNamespace(offset=o) for o in range(first, last + 1)]
    return FetchedBatch("tx", {TX: records}, {TX: (start, last + 1)}, generation)


def test_batches_in_order_commit_to_the_last_offset_plus_one(consumer: BatchConsumer) -> None:
    consumer._committed_offset[TX] = 100
    consumer.ack_batch(batch(100, 100, 599))
    consumer.ack_batch(batch(600, 600, 1099))
    assert consumer._new_offset(TX) == 1100


def test_a_batch_not_yet_delivered_holds_later_commits_back(consumer: BatchConsumer) -> None:
    consumer._committed_offset[TX] = 100
    consumer.ack_batch(batch(100, 100, 599))
    consumer.ack_batch(batch(1100, 1100, 1599))  # 600..1099 still in flight
    assert consumer._new_offset(TX) == 600


def test_offsets_without_records_before_a_batch_are_covered(consumer: BatchConsumer) -> None:
    consumer._committed_offset[TX] = 100
    consumer.ack_batch(batch(100, 103, 599))  # 100..102: transaction markers, compaction
    assert consumer._new_offset(TX) == 600


def test_a_batch_read_again_after_a_rewind_is_not_counted_twice(consumer: BatchConsumer) -> None:
    consumer.ack_batch(batch(0, 0, 499))
    consumer.ack_batch(batch(250, 250, 749))
    assert consumer._acked[TX] == list(range(0, 750))


def test_a_batch_from_before_a_rebalance_is_not_acknowledged(consumer: BatchConsumer) -> None:
    assert consumer.ack_batch(batch(0, 0, 99, generation=2)) == 0
    assert consumer._new_offset(TX) is None


def test_the_route_delivers_in_order_and_acknowledges_after_delivery() -> None:
    events: list[str] = []

    async def deliver(prepared: str) -> None:
        events.append(f"deliver {prepared}")
        await asyncio.sleep(0.01 if prepared == "b1" else 0)

    def prepare(n: int) -> Awaitable[str]:
        events.append(f"admit {n}")

        async def rest() -> str:
            events.append(f"score {n}")
            return f"b{n}"

        return rest()

    route: PipelinedRoute[int, str] = PipelinedRoute(
        prepare=prepare, deliver=deliver, on_done=lambda n: events.append(f"ack {n}")
    )

    async def run() -> None:
        for n in (1, 2, 3):
            await route.submit(n)
        await route.drain()

    asyncio.run(run())
    # Batch 2 is admitted while batch 1 is delivered; every ack follows its own delivery.
    assert events.index("admit 2") < events.index("ack 1")
    assert [e for e in events if e.startswith("score")] == ["score 1", "score 2", "score 3"]
    assert [e for e in events if e.startswith("ack")] == ["ack 1", "ack 2", "ack 3"]
    for n in (1, 2, 3):
        assert events.index(f"deliver b{n}") < events.index(f"ack {n}")
    assert route.in_flight == 0


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_deeper_route_admits_further_ahead_and_still_delivers_and_acks_in_order(depth: int):
    events: list[str] = []
    in_flight: list[int] = []
    route: PipelinedRoute[int, int]

    async def prepare_later(n: int) -> int:
        await asyncio.sleep(0.002 * (5 - n))  # later batches are aggregated faster
        return n

    def prepare(n: int) -> Awaitable[int]:
        events.append(f"admit {n}")
        in_flight.append(route.in_flight)
        return prepare_later(n)

    async def deliver(prepared: int) -> None:
        events.append(f"deliver {prepared}")
        await asyncio.sleep(0.01)

    route = PipelinedRoute(prepare, deliver, lambda n: events.append(f"ack {n}"), depth=depth)

    async def run() -> None:
        for n in (1, 2, 3, 4):
            await route.submit(n)
        await route.drain()

    asyncio.run(run())
    # Batch 1 + depth is admitted only once batch 1 is acknowledged, never before.
    assert max(in_flight) == depth
    if depth < 4:
        assert events.index("ack 1") < events.index(f"admit {1 + depth}")
    if depth > 1:
        assert events.index(f"admit {depth}") < events.index("ack 1")
    assert [e for e in events if e.startswith("deliver")] == [f"deliver {n}" for n in (1, 2, 3, 4)]
    assert [e for e in events if e.startswith("ack")] == [f"ack {n}" for n in (1, 2, 3, 4)]
    for n in (1, 2, 3, 4):
        assert events.index(f"deliver {n}") < events.index(f"ack {n}")
    assert route.in_flight == 0
    with pytest.raises(ValueError, match="depth"):
        PipelinedRoute(prepare, deliver, lambda n: None, depth=0)


def test_a_failed_delivery_is_never_acknowledged() -> None:
    done: list[int] = []
    failures: list[BaseException] = []

    async def deliver(prepared: int) -> None:
        if prepared == 2:
            raise RuntimeError("broker gone")

    async def on_failure(exc: BaseException) -> None:
        failures.append(exc)

    async def prepare(n: int) -> int:
        return n

    route: PipelinedRoute[int, int] = PipelinedRoute(prepare, deliver, done.append, on_failure)

    async def run() -> None:
        for n in (1, 2):
            await route.submit(n)
        await route.drain()

    asyncio.run(run())
    assert done == [1] and len(failures) == 1


def test_the_route_reports_how_long_each_batch_took_to_decide_and_to_deliver() -> None:
    heard: list[tuple[str, float]] = []

    async def prepare(n: int) -> int:
        await asyncio.sleep(0.02 if n == 1 else 0)
        return n

    async def deliver(prepared: int) -> None:
        await asyncio.sleep(0.03 if prepared == 2 else 0)

    route: PipelinedRoute[int, int] = PipelinedRoute(
        prepare, deliver, lambda n: None, observe=lambda stage, s: heard.append((stage, s))
    )

    async def run() -> None:
        for n in (1, 2):
            await route.submit(n)
        await route.drain()

    asyncio.run(run())
    deciding = sorted(s for stage, s in heard if stage == "deciding")
    delivery = sorted(s for stage, s in heard if stage == "delivery")
    assert len(deciding) == len(delivery) == 2 and len(heard) == 4
    assert deciding[0] < 0.02 <= deciding[1]  # batch 1 decided slowly, batch 2 at once
    assert delivery[0] < 0.03 <= delivery[1]  # batch 2 delivered slowly


def test_the_fetch_wait_is_how_long_the_oldest_record_was_on_the_broker() -> None:
    import time

    from stream.worker.app import _fetch_wait_s, _records

    now = time.time()
    records = [
        SimpleNamespace(topic="tx", partition=0, offset=o, value=b"{}", timestamp=ts)
        for o, ts in ((0, (now - 0.250) * 1000), (1, (now - 0.050) * 1000))
    ]
    fetched = FetchedBatch("tx", {TX: records}, {TX: (0, 2)}, 3)
    assert _fetch_wait_s(fetched, _records(fetched)) == pytest.approx(0.250, abs=0.05)
    ahead = [
        SimpleNamespace(topic="tx", partition=0, offset=0, value=b"{}", timestamp=(now + 60) * 1000)
    ]
    skewed = FetchedBatch("tx", {TX: ahead}, {TX: (0, 1)}, 3)
    assert _fetch_wait_s(skewed, _records(skewed)) == 0.0  # a producer clock ahead of ours


def test_the_worker_s_fetches_wait_at_most_its_fetch_max_wait() -> None:
    """Faust builds aiokafka's consumer with a fixed 1,500 ms wait; the worker's consumer thread
    replaces it with FRAUD_FETCH_MAX_WAIT_MS (a fetch holding only quiet partitions otherwise
    keeps a worker that runs behind from fetching transactions for up to 1.5 s)."""
    import inspect

    from fraud.settings import Settings
    from stream.worker.app import create_app, faust_app_options
    from stream.worker.batches import BatchConsumerThread

    async def built(wait: int | None) -> int:
        app = BatchApp("fetch-wait-test", **faust_app_options(Settings()), fetch_max_wait_ms=wait)
        thread = app.consumer._thread  # type: ignore[attr-defined]
        assert isinstance(thread, BatchConsumerThread)
        consumer = thread._create_worker_consumer(app.transport)  # built, never started
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()  # marks it closed (nothing was started)

    assert Settings.model_fields["fetch_max_wait_ms"].default == 100
    assert asyncio.run(built(Settings(fetch_max_wait_ms=40).fetch_max_wait_ms)) == 40
    assert asyncio.run(built(None)) == 1500  # Faust's own, when the app sets none
    # The worker's app is given the setting.
    assert "fetch_max_wait_ms=settings.fetch_max_wait_ms" in inspect.getsource(create_app)
