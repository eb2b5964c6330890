"""The faust-streaming internals stream/worker/batches.py relies on, pinned.

A failure here means Faust (or aiokafka) changed under the batch consumer: re-read the named
function in the new version against stream/worker/batches.py, then refresh the file hashes with
`python -m tests.unit.stream.test_faust_pins --refresh`.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import faust
from faust.app.base import App
from faust.transport import consumer as consumer_module
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

FAUST_DIR = Path(faust.__file__).parent
PINNED = Path(__file__).with_name("faust_pins.txt")
FILES = (
    "transport/consumer.py",
    "transport/drivers/aiokafka.py",
    "transport/conductor.py",
    "app/base.py",
    "tables/recovery.py",
    "sensors/monitor.py",
)


def _params(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_versions() -> None:
    assert version("faust-streaming").startswith("0.15."), version("faust-streaming")
    assert version("aiokafka").startswith("0.14."), version("aiokafka")


def test_the_files_read_are_unchanged() -> None:
    pinned = dict(line.split()[::-1] for line in PINNED.read_text().splitlines() if line)
    for name in FILES:
        digest = hashlib.sha256((FAUST_DIR / name).read_bytes()).hexdigest()
        assert pinned.get(name) == digest, f"faust/{name} changed: review stream/worker/batches.py"


def test_consumer_methods_and_signatures() -> None:
    assert _params(Consumer._drain_messages) == ["self", "fetcher"]
    assert _params(Consumer._wait_next_records) == ["self", "timeout"]
    assert _params(Consumer.perform_seek) == ["self"]
    assert _params(Consumer.on_partitions_revoked) == ["self", "revoked"]
    assert _params(Consumer.on_partitions_assigned) == ["self", "assigned", "generation_id"]
    assert _params(Consumer.wait_empty) == ["self"]
    assert _params(Consumer.commit_and_end_transactions) == ["self"]
    assert _params(Consumer.maybe_wait_for_commit_to_finish) == ["self"]
    assert _params(Consumer._add_gap) == ["self", "tp", "offset_from", "offset_to"]
    assert _params(Consumer.commit) == ["self", "topics", "start_new_transaction"]
    assert _params(Consumer.stop_flow) == ["self"]
    assert _params(driver.Consumer._to_message) == ["self", "tp", "record"]
    assert driver.Transport.Consumer is driver.Consumer
    assert _params(App._new_transport) == ["self"]
    assert "CONSUMER_FETCHING" in vars(consumer_module)


def test_consumer_state() -> None:
    source = inspect.getsource(Consumer.__init__)
    for line in (
        "self._acked = defaultdict(list)",
        "self._acked_index = defaultdict(set)",
        "self._read_offset = defaultdict(lambda: None)",
        "self._committed_offset = defaultdict(lambda: None)",
        "self._commit_every = self.app.conf.broker_commit_every",
        "self._waiting_for_ack = None",
    ):
        assert line in source, line
    assert "_n_acked" in Consumer.__annotations__
    assert "self._commit_fut" in inspect.getsource(Consumer.commit)


def test_revoke_drops_acknowledgements_before_the_app_callback() -> None:
    """Why the batch consumer commits before calling super().on_partitions_revoked."""
    source = inspect.getsource(Consumer.on_partitions_revoked)
    assert source.index("self._acked.pop(tp, None)") < source.index("self._on_partitions_revoked")


def test_the_batch_fetch_returns_records_and_active_partitions() -> None:
    assert "return records, active_partitions" in inspect.getsource(Consumer._wait_next_records)
    assert "await self.perform_seek()" in inspect.getsource(Consumer.getmany)


def test_faust_commits_the_first_unbroken_run_of_acknowledged_offsets() -> None:
    tp = TP("t", 0)

    def state(acked: list[int], committed: int | None) -> SimpleNamespace:
        from intervaltree import IntervalTree

        return SimpleNamespace(
            _acked=defaultdict(list, {tp: list(acked)}),
            _acked_index=defaultdict(set, {tp: set(acked)}),
            _gap=defaultdict(IntervalTree),
            _committed_offset=defaultdict(lambda: None, {tp: committed}),
        )

    assert Consumer._new_offset(state([*range(100, 600), *range(1100, 1600)], 100), tp) == 600
    assert Consumer._new_offset(state(list(range(105, 200)), 100), tp) is None  # a head gap
    assert Consumer._new_offset(state(list(range(0, 500)), None), tp) == 500


def test_commits_only_the_assignment_and_records_what_it_committed() -> None:
    source = inspect.getsource(Consumer._commit_offsets)
    assert "if tp in assignment" in source
    assert "self._committed_offset.update(committable_offsets)" in source


def test_the_app_stops_the_flow_before_waiting_for_streams() -> None:
    source = inspect.getsource(App._on_partitions_revoked)
    assert source.index("consumer.stop_flow") < source.index("_consumer_wait_empty")
    source = inspect.getsource(App._stop_consumer)
    assert source.index("_stop_fetcher") < source.index("_consumer_wait_empty")


def test_monitor_fields() -> None:
    from faust.sensors.monitor import Monitor

    assert "stream_inbound_time" in Monitor.__annotations__
    assert _params(Monitor.track_tp_end_offset) == ["self", "tp", "offset"]


if __name__ == "__main__" and "--refresh" in sys.argv:
    PINNED.write_text(
        "".join(
            f"{hashlib.sha256((FAUST_DIR / name).read_bytes()).hexdigest()}  {name}\n"
            for name in FILES
        )
    )
    print(PINNED.read_text())


def test_the_consumer_s_metadata_ages_out_in_ten_seconds() -> None:
    """aiokafka retries a failed offset reset on the leader its metadata names, without asking
    for new metadata: a leader that moved (a broker failover) stalls the partition until the
    metadata ages out. The worker sets that age to 10 s, and Faust must pass it on."""
    from fraud.settings import Settings
    from stream.worker.app import faust_app_options

    creating = inspect.getsource(driver.AIOKafkaConsumerThread._create_worker_consumer)
    assert "metadata_max_age_ms=conf.consumer_metadata_max_age_ms" in creating
    app = faust.App("pins-metadata", **faust_app_options(Settings()))
    assert app.conf.consumer_metadata_max_age_ms == 10_000


def test_the_fetch_wait_the_consumer_thread_replaces() -> None:
    """BatchConsumerThread sets the aiokafka consumer's _fetch_max_wait_ms after Faust built it
    with 1,500 ms, before start() hands it to the Fetcher; the Fetcher leaves out of a fetch
    the partitions whose records are still buffered (why a long wait stalls a busy worker)."""
    import aiokafka
    from aiokafka.consumer.fetcher import Fetcher

    creating = inspect.getsource(driver.AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_max_wait_ms=1500" in creating
    assert _params(driver.Consumer._new_consumer_thread) == ["self"]
    assert "AIOKafkaConsumerThread(self, loop=self.loop, beacon=self.beacon)" in inspect.getsource(
        driver.Consumer._new_consumer_thread
    )
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in inspect.getsource(
        aiokafka.AIOKafkaConsumer.__init__
    )
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(
        aiokafka.AIOKafkaConsumer.start
    )
    actions = inspect.getsource(Fetcher._get_actions_per_node)
    assert "if tp in self._records:" in actions and "backoff_by_nodes" in actions
    assert "elif node_id in self._in_flight:" in actions  # one fetch in flight per broker
    assert "self._fetch_max_wait_ms," in actions  # the wait each FetchRequest carries
