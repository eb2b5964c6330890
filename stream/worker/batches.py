"""Whole fetched batches for the transactions topic, inside the Faust app.

Faust hands an agent one event at a time, and its per-event machinery (a message object, a
conductor callback, a stream queue, an acknowledgement lock) costs more than all of the
scorer's own per-event work. Here only the fetch loop changes: for the topics routed to a
`BatchRoute`, each result of the consumer's batch fetch (`Consumer._wait_next_records`: per
partition lists of aiokafka records) goes to the route as one `FetchedBatch`. Faust keeps
everything else: group membership and rebalances, generation ids, the commit timer, recovery
seeks, web views, timers, and the per-event path of every other topic (the feedback agent).

Offsets stay Faust's: when a route reports a batch done (its outputs are on the broker),
`ack_batch` marks the batch's offset span acknowledged in Faust's own bookkeeping, and Faust's
commit (timer, stop, revoke) commits the first unbroken run of acknowledged offsets. A batch
that is never acknowledged holds back the commit of every later one: at least once.

On revoke and stop, in-flight batches are finished and committed while the partitions are
still ours, before Faust drops its per-partition state (it discards acknowledgements of revoked
partitions before waiting for its streams).

Faust internals relied on (faust-streaming 0.15.3, aiokafka 0.14); tests/unit/stream/
test_faust_pins.py fails loudly when any of them changes:
  transport/consumer.py   Consumer._drain_messages (replaced), _wait_next_records,
      perform_seek, on_partitions_revoked/assigned, wait_empty, commit_and_end_transactions,
      commit, maybe_wait_for_commit_to_finish, _commit_fut, _new_offset, _add_gap, and the
      state _acked, _acked_index, _read_offset, _committed_offset, _n_acked, _commit_every,
      _waiting_for_ack, _buffered_partitions
  transport/drivers/aiokafka.py   Consumer (subclassed), Consumer._to_message, Transport,
      AIOKafkaConsumerThread._create_worker_consumer (its fetch_max_wait_ms=1500 replaced)
  app/base.py   App._new_transport (overridden), App.consumer_generation_id
  sensors/monitor.py   Monitor.stream_inbound_time, track_tp_end_offset
  aiokafka   AIOKafkaConsumer._fetch_max_wait_ms (read by start() for its Fetcher)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from time import monotonic, time
from typing import Any, Protocol, cast

import aiokafka
import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service
from mode.utils.futures import notify

log = logging.getLogger(__name__)


@dataclass
class FetchedBatch:
    """One fetch's records of one routed topic.

    `spans[tp] = (start, stop)`: the offsets the batch accounts for, `stop` the last offset + 1.
    `start` may lie below the first record: offsets between the previous batch (or the
    committed offset) and this one hold no records (transaction markers, compaction), and
    acknowledging them lets the commit move past them."""

    topic: str
    records: dict[TP, list[Any]]
    spans: dict[TP, tuple[int, int]]
    generation_id: int
    fetched_at: float = field(default_factory=time)  # epoch seconds, as Kafka timestamps

    def __len__(self) -> int:
        return sum(len(records) for records in self.records.values())

    def __iter__(self) -> Iterator[Any]:
        for records in self.records.values():
            yield from records


class BatchRoute(Protocol):
    """Takes whole batches. `submit` may return before a batch is done (pipelining) but must
    call `ack_batch(batch)` once its outputs are delivered; `drain` returns once every
    submitted batch is done (acknowledged or failed)."""

    async def submit(self, batch: FetchedBatch) -> None: ...

    async def drain(self) -> None: ...


class BatchConsumer(faust_aiokafka.Consumer):
    """The aiokafka-driver consumer whose fetch loop hands routed topics over batch by batch."""

    # A revoke waits this long for in-flight batches; after that their offsets stay
    # uncommitted and the next owner reads them again (duplicated, never lost).
    revoke_drain_timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_next: dict[TP, int] = {}  # where each partition's next batch starts

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def batch_routes(self) -> Mapping[str, BatchRoute]:
        return cast(Mapping[str, BatchRoute], getattr(self.app, "batch_routes", {}))

    def ack_batch(self, batch: FetchedBatch) -> int:
        """Mark a delivered batch's offsets acknowledged; Faust's next commit commits them."""
        if batch.generation_id != self.app.consumer_generation_id:
            # Rebalanced since the fetch: the partitions were re-read from the committed
            # offset (perhaps by another worker); committing this span could be stale.
            log.warning(
                "batch fetched in generation %s finished in generation %s: not acknowledged",
                batch.generation_id,
                self.app.consumer_generation_id,
            )
            return 0
        count = 0
        for tp, (start, stop) in batch.spans.items():
            committed = self._committed_offset[tp]
            if committed is not None and start < committed:
                start = committed
            if start >= stop:
                continue
            index = self._acked_index[tp]
            offsets = range(start, stop)
            new = list(offsets) if index.isdisjoint(offsets) else sorted(set(offsets) - index)
            self._acked[tp].extend(new)
            index.update(new)
            count += len(new)
        self._n_acked += count
        notify(self._waiting_for_ack)
        return count

    async def _drain_routes(self, why: str) -> None:
        routes = list(self.batch_routes.values())
        if not routes:
            return
        started = monotonic()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(route.drain() for route in routes)),
                timeout=self.revoke_drain_timeout,
            )
        except TimeoutError:
            log.error(
                "%s: in-flight batches not done after %.0f s; their offsets stay uncommitted "
                "(read again by the next owner)",
                why,
                self.revoke_drain_timeout,
            )
        log.debug("%s: in-flight batches drained in %.3f s", why, monotonic() - started)

    async def commit_now(self) -> None:
        """Commit every acknowledged offset now. `Consumer.commit()` does not when another
        commit (the timer's) is in flight: it waits for that one, computed before our last
        acknowledgements, and returns False."""
        for _ in range(10):
            await self.maybe_wait_for_commit_to_finish()
            if self._commit_fut is None:
                await self.commit()
                return
        log.warning("could not get a commit slot; acknowledged offsets may be read again")

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Finish and commit in-flight batches while the partitions are still ours."""
        if revoked and self.batch_routes:
            self.stop_flow()
            await self._drain_routes("revoke")
            await self.commit_now()
        self._batch_next.clear()
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._batch_next.clear()
        await super().on_partitions_assigned(assigned, generation_id)

    async def perform_seek(self) -> None:
        """Positions go back to the committed offsets, and batch spans restart from there.

        The fetch loop seeks whenever it finds the flow stopped, which includes a revoke's
        drain; the broker's committed offsets read then can be older than a commit in flight at
        that moment, and an older `_committed_offset` would make Faust see a gap before the
        acknowledged offsets and commit nothing. Committed offsets only move forward."""
        self._batch_next.clear()
        before = {tp: o for tp, o in self._committed_offset.items() if o is not None}
        await super().perform_seek()
        for tp, old in before.items():
            new = self._committed_offset.get(tp)
            if new is None or new < old:
                self._committed_offset[tp] = old

    async def wait_empty(self) -> None:
        """On stop and revoke: finish in-flight batches and commit them first."""
        await self._drain_routes("wait_empty")
        await self.commit_now()
        await super().wait_empty()

    async def commit_and_end_transactions(self) -> None:
        await self._drain_routes("stop")
        await self.commit_now()
        await super().commit_and_end_transactions()

    async def _drain_messages(self, fetcher: Any) -> None:  # the fetch loop: I/O
        routes = self.batch_routes
        if not routes:
            return await super()._drain_messages(fetcher)
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        app = self.app
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await self.sleep(0)
                if self.should_stop:
                    break
                records, active = await self._wait_next_records(1.0)
                generation_id = app.consumer_generation_id
                if records is None or self.should_stop:
                    self.diag.unset_flag(CONSUMER_FETCHING)
                    continue
                if not self.flow_active:
                    # As Consumer.getmany: what was fetched while the flow stopped is dropped
                    # and the positions go back to the committed offsets.
                    try:
                        await self.perform_seek()
                    except Exception as exc:  # noqa: BLE001 - Faust logs and carries on too
                        self.log.warning("exception performing seek when flow not active %r", exc)
                    self.diag.unset_flag(CONSUMER_FETCHING)
                    continue
                routed: dict[str, dict[TP, list[Any]]] = {}
                others: dict[TP, list[Any]] = {}
                for tp, batch in records.items():
                    if (
                        active is not None
                        and tp not in active
                        and tp not in self._buffered_partitions
                    ):
                        continue
                    if tp.topic in routes:
                        routed.setdefault(tp.topic, {})[tp] = batch
                    else:
                        others[tp] = batch
                for topic, by_tp in routed.items():
                    if not self.flow_active or app.consumer_generation_id != generation_id:
                        break
                    fetched = self._fetched(topic, by_tp, generation_id)
                    if fetched is not None:
                        await routes[topic].submit(fetched)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                if others:
                    await self._one_by_one(others, generation_id)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _fetched(
        self, topic: str, by_tp: dict[TP, list[Any]], generation_id: int
    ) -> FetchedBatch | None:
        """The routed records of one fetch as a batch (records already read are dropped)."""
        records: dict[TP, list[Any]] = {}
        spans: dict[TP, tuple[int, int]] = {}
        now = monotonic()
        monitor = self.app.monitor
        for tp, batch in by_tp.items():
            read = self._read_offset[tp]
            if read is not None and batch[0].offset < read:
                batch = [record for record in batch if record.offset >= read]
                if not batch:
                    continue
            first, last = batch[0].offset, batch[-1].offset
            start = self._batch_next.get(tp)
            if start is None:
                start = self._committed_offset[tp]
            if start is None or start > first:
                start = first
            spans[tp] = (start, last + 1)
            self._batch_next[tp] = last + 1
            records[tp] = batch
            self._read_offset[tp] = last
            monitor.track_tp_end_offset(tp, self.highwater(tp))
            monitor.stream_inbound_time[tp] = now
        return FetchedBatch(topic, records, spans, generation_id) if records else None

    async def _one_by_one(self, others: dict[TP, list[Any]], generation_id: int) -> None:
        """Every other topic through Faust's per-message path, as Consumer._drain_messages."""
        app = self.app
        for tp, record in self.scheduler.iterate(others):
            if not self.flow_active or app.consumer_generation_id != generation_id:
                break
            app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            message = self._to_message(tp, record)
            read = self._read_offset[tp]
            if read is None or message.offset >= read:
                gap = message.offset - (read or 0)
                if gap > 1 and read and app.topics.acks_enabled_for(message.topic):
                    await self._add_gap(tp, read + 1, message.offset)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
                self._read_offset[tp] = message.offset


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, with the app's `fetch_max_wait_ms` in place of Faust's
    fixed 1,500 ms.

    aiokafka keeps one fetch in flight per broker and leaves out of it the partitions whose
    fetched records are still waiting to be taken (while any of them was fetched less than
    0.1 s ago, it sends that broker no fetch at all). A worker running behind can thus send a
    fetch that holds only quiet partitions (the feedback topic, a partition with no traffic);
    the broker keeps it until the maximum wait, and no transaction is fetched meanwhile. At 1,500 ms that stalled a worker at 2,000 tx/s for seconds at a time
    (a backlog, big slow batches, and the next such fetch): README, Benchmarks."""

    def _create_worker_consumer(
        self, transport: faust_aiokafka.Transport
    ) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_max_wait_ms", None)
        if wait is not None:
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
            consumer._fetch_max_wait_ms = int(wait)
        return consumer


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A `faust.App` whose consumer hands whole batches of chosen topics to a route."""

    batch_routes: MutableMapping[str, BatchRoute]

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None, **kwargs: Any) -> None:
        self.batch_routes = {}
        # The broker's longest hold of a fetch with nothing new (BatchConsumerThread); None:
        # Faust's 1,500 ms.
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)

    def batch_topic(self, topic: faust.TopicT, route: BatchRoute) -> None:
        """Subscribe to `topic` (through the conductor, as an agent does) and send its records
        to `route` in whole fetched batches. No agent may consume a routed topic."""
        for name in topic.topics:
            self.batch_routes[name] = route
        self.topics.add(topic)

    @property
    def batch_consumer(self) -> BatchConsumer:
        return cast(BatchConsumer, self.consumer)
