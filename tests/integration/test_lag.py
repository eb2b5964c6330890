"""`fraud lag` against the real broker: Kafka's own tool agrees, and each status can be driven.

Statuses are driven twice: in compressed time by a plain confluent-kafka consumer that commits
offsets in a controlled way (a window of 4 commits, polls a few tenths of a second apart), and
on a real scoring worker that an operator slows, stops and rewinds.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from typer.testing import CliRunner

from fraud.settings import KafkaConnection
from stream.kafka_io import make_consumer, make_producer
from stream.monitoring import GroupLag, LagMonitor, LagRules, PartitionLag, Status
from tests.support.processes import Proc
from tests.support.stack import ROOT, Stack, kafka_version
from tests.support.worker import BackgroundTraffic, group_assignment, wait_until

pytestmark = pytest.mark.integration

CONSUMER_GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def produce(producer: Producer, topic: str, per_partition: dict[int, int]) -> None:
    for partition, count in per_partition.items():
        for i in range(count):
            producer.produce(topic, f"m{i}".encode(), partition=partition)
    assert producer.flush(10) == 0


def commit(consumer, topic: str, offsets: dict[int, int]) -> None:  # type: ignore[no-untyped-def]
    consumer.commit(
        offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
    )


def kafka_tools() -> Path:
    """The folder of Kafka's jars, which hold its command-line tools; skips the test without them
    (a Docker-based stack runs the broker from an image and may not have fetched them)."""
    libs = ROOT / ".state" / "kafka" / f"libs-{kafka_version()}"
    if shutil.which("java") is None or not (libs / ".complete").exists():
        pytest.skip(
            f"Kafka's tools need java and the jars in {libs} (`make services` fetches them)"
        )
    return libs


def kafka_consumer_groups(bootstrap: str, *args: str) -> str:
    """Run Kafka's consumer-group tool (`kafka-consumer-groups`) from the broker's jars."""
    libs = kafka_tools()
    return subprocess.run(
        [
            "java",
            "-cp",
            f"{libs}/*",
            CONSUMER_GROUP_COMMAND,
            "--bootstrap-server",
            bootstrap,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def kafka_tool_describe(bootstrap: str, group: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(committed, log end, lag) per partition, as Kafka's consumer-group tool reports them."""
    out = kafka_consumer_groups(bootstrap, "--describe", "--group", group)
    rows = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[0] == group:
            topic, partition, current, end, lag = fields[1:6]
            rows[(topic, int(partition))] = (int(current), int(end), int(lag))
    return rows


def test_message_lag_matches_kafkas_consumer_group_tool(
    stack: Stack, topic_factory: Callable[..., str], unique_name: Callable[[str], str]
):
    topic = topic_factory("lag-compare", partitions=4)
    producer = make_producer(stack.kafka)
    group = unique_name("lag-compare")
    produce(producer, topic, {0: 40, 1: 25, 2: 10, 3: 0})
    # Read part of each partition for real, commit, then stop: the group is stable from here on.
    consumer = make_consumer(stack.kafka, group)
    for partition, count in {0: 12, 1: 25, 2: 3}.items():
        consumer.assign([TopicPartition(topic, partition, 0)])
        read = consumer.consume(count, timeout=10)
        assert len(read) == count
        commit(consumer, topic, {partition: read[-1].offset() + 1})
    commit(consumer, topic, {3: 0})  # an empty partition, committed at its start
    consumer.close()

    ours = LagMonitor(stack.kafka, group, lookback_s=60)
    try:
        result = ours.poll()
    finally:
        ours.close()
    theirs = kafka_tool_describe(stack.bootstrap, group)

    assert theirs, "Kafka's tool reported no partitions for the group"
    mine = {
        (p.topic, p.partition): (p.committed_offset, p.log_end_offset, p.lag)
        for p in result.partitions
    }
    assert mine == theirs
    assert result.total_lag == (40 - 12) + (25 - 25) + (10 - 3) + 0
    assert result.state == "Empty"


def test_statuses_follow_the_commits(stack: Stack, topic_factory: Callable[..., str], unique_name):
    """Partition 0 falls behind (WARN), 1 commits without moving (STALL), 2 is reset back
    (REWIND), 3 keeps up (OK); then every commit stops and the lagging partitions go STOP."""
    topic = topic_factory("lag-status", partitions=4)
    producer = make_producer(stack.kafka)
    group = unique_name("lag-status")
    rules = LagRules(window=4, min_stop_s=1.0)
    monitor = LagMonitor(stack.kafka, group, rules=rules, lookback_s=60)
    committer = make_consumer(stack.kafka, group)
    reader = make_consumer(stack.kafka, unique_name("lag-status-reader"))
    reader.assign([TopicPartition(topic, 0, 0)])
    slow_consumed = 0
    try:
        for step in range(6):
            produce(producer, topic, {0: 10, 1: 10, 2: 10, 3: 10})
            if step:  # the table needs a log-end sample between production and each commit
                monitor.poll()
            # Partition 0 is really consumed, 3 messages per step while 10 arrive.
            read = reader.consume(3, timeout=5)
            assert len(read) == 3
            slow_consumed += len(read)
            rewound = 5 if step == 5 else 10 * (step + 1) - 4
            commit(
                committer,
                topic,
                {0: slow_consumed, 1: 5, 2: rewound, 3: 10 * (step + 1)},
            )
            time.sleep(0.3)
        produce(producer, topic, {0: 1})
        result = monitor.poll()
        status = {p.partition: p.status for p in result.partitions}
        assert status == {0: Status.WARN, 1: Status.STALL, 2: Status.REWIND, 3: Status.OK}, (
            result.as_dict()
        )
        assert result.status is Status.STALL

        # Every commit stops; once the last commit is older than the window spans, STOP.
        commits = monitor.windows[(topic, 0)].commits
        span = commits[-1].timestamp - commits[0].timestamp
        time.sleep(max(span, rules.min_stop_s) + 0.5 - (time.time() - commits[-1].timestamp))
        result = monitor.poll()
        status = {p.partition: p.status for p in result.partitions}
        assert status == {0: Status.STOP, 1: Status.STOP, 2: Status.STOP, 3: Status.OK}
        assert result.status is Status.STOP
    finally:
        monitor.close()
        committer.close()
        reader.close()


def test_cli_reports_json_for_a_group(
    stack: Stack, topic_factory: Callable[..., str], unique_name, monkeypatch
):
    from fraud.cli.main import _register_commands, app

    topic = topic_factory("lag-cli", partitions=2)
    producer = make_producer(stack.kafka)
    group = unique_name("lag-cli")
    produce(producer, topic, {0: 7, 1: 3})
    consumer = make_consumer(stack.kafka, group)
    commit(consumer, topic, {0: 2, 1: 3})
    consumer.close()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", stack.bootstrap)
    _register_commands()

    result = CliRunner().invoke(app, ["lag", "--group", group, "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["group"] == group
    assert report["total_lag"] == 5
    assert [(p["partition"], p["lag"]) for p in report["partitions"]] == [(0, 5), (1, 0)]
    assert report["status"] == "OK"  # a single commit a moment ago is not yet a stop


@contextmanager
def throttled(proc: Proc, running_s: float, paused_s: float) -> Iterator[None]:
    """Starve a process of CPU: SIGSTOP / SIGCONT in a cycle, running `running_s` of every
    `running_s + paused_s` seconds; running again on exit."""
    done = threading.Event()

    def cycle() -> None:
        while not done.is_set():
            proc.popen.send_signal(signal.SIGSTOP)
            done.wait(paused_s)
            proc.popen.send_signal(signal.SIGCONT)
            done.wait(running_s)

    thread = threading.Thread(target=cycle, name="throttle", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        proc.popen.send_signal(signal.SIGCONT)


@pytest.mark.slow
def test_statuses_of_a_real_worker_slowed_stopped_and_rewound(worker_env):
    """The scoring worker keeps up (OK); starved of CPU it falls behind while still committing
    (WARN); frozen it stops committing (STOP); killed, and its offsets reset to the start with
    Kafka's own tool, the group has gone backwards (REWIND)."""
    kafka_tools()  # the rewind step needs Kafka's own tool
    worker_env.extra["FRAUD_SESSION_TIMEOUT_S"] = "6"  # a killed member leaves the group in 6 s
    bootstrap, group = worker_env.stack.bootstrap, worker_env.group
    topic = worker_env.topics["transactions"]
    monitor = LagMonitor(
        KafkaConnection(bootstrap), group, rules=LagRules(window=4, min_stop_s=3.0), lookback_s=60
    )
    history: list[dict] = []

    def reaches(
        expected: Status, timeout_s: float, extra: Callable[[GroupLag], bool] = lambda r: True
    ) -> GroupLag:
        def check() -> GroupLag | None:
            result = monitor.poll()
            history.append(result.as_dict())
            return result if result.status is expected and extra(result) else None

        try:
            return wait_until(check, timeout_s, f"group status {expected.name}", pause_s=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last polls: {history[-3:]}") from None

    def on_transactions(result: GroupLag) -> list[PartitionLag]:
        return [p for p in result.partitions if p.topic == topic]

    try:
        with worker_env.worker() as worker, BackgroundTraffic(worker_env, rate=200):
            wait_until(
                lambda: list(group_assignment(bootstrap, group, topic).values()) == [[0, 1, 2, 3]],
                60,
                "the worker holding the four partitions",
            )
            # Keeping up: every partition has a full window of commits and the group is OK.
            reaches(
                Status.OK,
                90,
                lambda r: all(p.commits_in_window >= 4 for p in on_transactions(r)),
            )

            # Slowed to a twentieth of the time: it still commits, but the lag grows.
            with throttled(worker, running_s=0.1, paused_s=1.9):
                slowed = reaches(Status.WARN, 120)
            assert slowed.members == 1
            warned = [p for p in on_transactions(slowed) if p.status is Status.WARN]
            assert warned and all(p.lag and p.lag_seconds for p in warned)

            # Frozen: no commit for longer than the window spans while the lag grows.
            worker.popen.send_signal(signal.SIGSTOP)
            reaches(
                Status.STOP,
                60,
                lambda r: {p.status for p in on_transactions(r)} == {Status.STOP},
            )

            # Killed; once it has left the group, an operator replays the topic from the start.
            worker.popen.send_signal(signal.SIGKILL)
            worker.popen.wait(10)
            wait_until(lambda: monitor.poll().members == 0, 60, "the group emptied")
            kafka_consumer_groups(
                bootstrap,
                *("--group", group, "--topic", topic),
                *("--reset-offsets", "--to-earliest", "--execute"),
            )
            rewound = reaches(Status.REWIND, 30)
            assert all(p.committed_offset == 0 for p in on_transactions(rewound))
            assert {p.status for p in on_transactions(rewound)} == {Status.REWIND}
    finally:
        monitor.close()
