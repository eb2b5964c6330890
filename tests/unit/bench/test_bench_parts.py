"""Pure parts of the benchmark: options, names, CPU accounting, profiles, the HTTP baseline app."""

from __future__ import annotations

import cProfile
import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from bench.context import BenchOptions, parse_env, parse_rates
from bench.kafka import BenchTopics, records_between
from bench.memory import key_kind
from bench.phase import warm_history
from bench.profile import _minus, area_of, summarize_profile, write_profile
from bench.worker import (
    CLOCK_TICKS,
    CpuMeter,
    cpu_seconds_from_stat,
    cpu_seconds_of,
    machine_busy_seconds_from_stat,
    tree_cpu_seconds,
)
from fraud.errors import ConfigError
from fraud.settings import Settings
from simulator.bank import Bank
from simulator.live import LiveTraffic


def test_rates_parse_with_thousands_suffix_and_reject_junk():
    assert parse_rates("1000, 2k,5000") == (1_000.0, 2_000.0, 5_000.0)
    with pytest.raises(ConfigError, match="'fast' is not a number"):
        parse_rates("1000,fast")
    with pytest.raises(ConfigError, match="must be positive"):
        parse_rates("0")
    with pytest.raises(ConfigError, match="at least one rate"):
        parse_rates(" , ")


def test_env_items_parse_and_reject_missing_equals():
    assert parse_env(["OMP_NUM_THREADS=1", "A_B="]) == {"OMP_NUM_THREADS": "1", "A_B": ""}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_env(["OMP_NUM_THREADS"])


def test_options_name_every_bad_value():
    with pytest.raises(ConfigError) as error:
        BenchOptions(events=10, http_features="redis", http_clients=0, warm_days=-1).validate()
    message = str(error.value)
    assert "--events must be at least 1000" in message
    assert "--warm-days must be between 0 and 60" in message
    assert "--http-features must be one of memory, none" in message
    assert "--http-clients" in message
    BenchOptions().validate()  # the defaults are valid


def test_warm_history_is_the_banks_days_before_the_live_traffic():
    bank = Bank.build(customers=200, seed=3)
    traffic = LiveTraffic(bank, seed=3, run_id="r")
    events = warm_history(traffic, 4, 2.0, "r")
    live, _truths = traffic.next_batch(50, now=0.0)
    stamps = [event["timestamp"] for event in events]
    assert stamps == sorted(stamps) and stamps[-1] < live[0]["timestamp"]
    days = (traffic.start - datetime.fromisoformat(stamps[0])).total_seconds() / 86_400
    assert 1.9 < days <= 2.0
    assert {event["card_id"] for event in live} <= {event["card_id"] for event in events}
    assert all(event["transaction_id"].startswith("tx-warm-r-") for event in events)


def test_the_results_record_no_secret():
    settings = Settings(
        REDIS_URL="rediss://scorer:r-secret@127.0.0.1:6380/0",
        kafka_security_protocol="SASL_SSL",
        kafka_username="admin",
        kafka_password="k-secret",
    )
    record = json.dumps(BenchOptions().record(settings), default=str)
    assert "r-secret" not in record and "k-secret" not in record
    assert "rediss://scorer:***@127.0.0.1:6380/0" in record and "SASL_SSL as admin" in record


def test_topics_are_unique_per_run_and_trial_and_map_to_worker_env():
    topics = BenchTopics.unique("run1", "s")
    assert len(set(topics.names())) == 6
    assert all(name.startswith("bench-run1-s-") for name in topics.names())
    assert topics.env()["FRAUD_TOPIC_DEAD_LETTER"] == "bench-run1-s-dead-letter"
    again = topics.with_outputs("p", "run1")
    assert again.transactions == topics.transactions
    assert again.decisions != topics.decisions
    assert records_between({0: 5, 1: 0}, {0: 8, 1: 4, 2: 1}) == 8


def test_cpu_seconds_from_proc_stat_with_a_name_holding_spaces_and_parens():
    fields = ["S", *["0"] * 10, "250", "50", *["0"] * 30]  # utime, stime = fields 14, 15
    line = "4242 (python (x) y) " + " ".join(fields)
    assert cpu_seconds_from_stat(line, ticks_per_s=100) == 3.0


def test_a_workers_cpu_counts_its_live_descendants(tmp_path: Path) -> None:
    """The worker (10), its feature store process (11) and what that started (12); an
    unrelated process (13) and entries that are not processes are left out."""

    def stat(pid: int, parent: int, utime: int) -> str:
        return f"{pid} (py (x)) S {parent} " + " ".join(["0"] * 9 + [str(utime), "0"] + ["0"] * 30)

    for pid, parent, utime in ((10, 1, 100), (11, 10, 250), (12, 11, 50), (13, 1, 999)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(stat(pid, parent, utime))
    (tmp_path / "self").mkdir()
    assert cpu_seconds_from_stat(stat(10, 1, 100), ticks_per_s=100) == 1.0
    assert tree_cpu_seconds(10, tmp_path) * CLOCK_TICKS == pytest.approx(400)
    with pytest.raises(OSError):
        tree_cpu_seconds(99, tmp_path)


def test_machine_busy_seconds_leave_out_idle_and_iowait():
    stat = "cpu  100 10 40 800 50 5 5 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    assert machine_busy_seconds_from_stat(stat, ticks_per_s=100) == 1.6


def test_cpu_meter_reads_cpu_and_outputs_between_first_and_last_progress():
    readings = iter([(10.0, 100.0), (11.0, 103.0), (12.0, 106.0)])
    machine: list[float] = []

    def read_worker() -> float:
        worker, busy = next(readings)
        machine.append(busy)
        return worker

    meter = CpuMeter(read_worker, lambda: machine[-1])
    meter.observe(0)  # no output yet: no sample
    assert meter.first is None and meter.reading() is None
    meter.observe(500)
    time.sleep(0.05)
    meter.observe(500)  # no progress: no sample
    meter.observe(1_000)
    reading = meter.reading()
    assert reading is not None
    assert (reading.worker_cpu_s, reading.others_cpu_s, reading.outputs) == (1.0, 2.0, 500)
    assert reading.wall_s > 0
    assert reading.worker_share == pytest.approx(1.0 / reading.wall_s, rel=1e-2)


def test_cpu_of_several_workers_is_summed_and_unknown_when_one_is_gone():
    class Process:
        def __init__(self, value: float | None) -> None:
            self.value = value

        def cpu_seconds(self) -> float | None:
            return self.value

    both = [Process(1.5), Process(2.0)]
    assert cpu_seconds_of(both)() == 3.5  # type: ignore[arg-type]
    assert cpu_seconds_of([Process(1.5), Process(None)])() is None  # type: ignore[arg-type]


def test_area_of_profile_entries():
    assert area_of("~", "<method 'poll' of 'select.epoll' objects>") == "(waiting: poll/lock/sleep)"
    assert area_of("~", "<method 'flush' of 'cimpl.Producer' objects>") == "confluent_kafka (C)"
    site = "/x/.venv/lib/python3.11/site-packages/sklearn/ensemble/_gb.py"
    assert area_of(site, "predict") == "sklearn"
    assert area_of("/repo/stream/worker/handler.py", "handle") == "stream/worker/handler.py"
    assert area_of("/usr/lib/python3.11/asyncio/base_events.py", "_run_once") == "stdlib asyncio"


def test_profile_difference_keeps_only_what_happened_between_snapshots():
    key, caller = ("f.py", 1, "f"), ("g.py", 2, "g")
    before = {key: (2, 2, 0.5, 1.0, {caller: (2, 2, 0.5, 1.0)})}
    after = {
        key: (5, 5, 2.0, 4.0, {caller: (5, 5, 2.0, 4.0)}),
        ("h.py", 3, "h"): (1, 1, 0.1, 0.1, {}),
    }
    delta = _minus(after, before)
    assert delta[key][:4] == (3, 3, 1.5, 3.0)
    assert delta[key][4] == {caller: (3, 3, 1.5, 3.0)}
    assert delta[("h.py", 3, "h")][1] == 1
    assert _minus(before, before) == {}


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_profile_written_between_snapshots_and_summarised(tmp_path: Path):
    profile = cProfile.Profile()
    profile.enable()
    _spin(0.05)  # before the start snapshot: left out
    profile.disable()
    profile.snapshot_stats()
    start = [dict(profile.stats)]
    profile.enable()
    _spin(0.05)
    profile.disable()
    profile.snapshot_stats()
    out = tmp_path / "worker.prof"
    write_profile(out, ["MainThread"], start, [dict(profile.stats)])
    summary = summarize_profile(out, top=5)
    spin = next(f for f in summary["top_functions"] if "_spin" in f["function"])
    assert spin["calls"] == 1
    assert 0.04 < spin["cumulative_s"] < 0.5
    assert summary["threads"][0]["thread"] == "MainThread"
    assert summary["hot_path"] == []  # none of the worker's functions ran here
    assert sum(a["share"] for a in summary["self_time_by_area"]) == pytest.approx(1, abs=0.01)


class _Model:
    """What create_http_app uses of a ScoringModel."""

    version = "7"
    feature_names = ("amount",)

    def __init__(self) -> None:
        from stream.scoring import Thresholds

        self.thresholds = Thresholds(review=0.5, decline=0.9)

    def matrix(self, rows: list[dict]) -> np.ndarray:
        return np.array([[row["amount"]] for row in rows], dtype=float)

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return np.clip(matrix[:, 0] / 1_000, 0, 1)


@pytest.mark.parametrize("with_history", [True, False])
def test_http_baseline_scores_one_transaction_per_request(with_history: bool):
    from bench.baselines import create_http_app
    from simulator.bank import Bank
    from simulator.live import LiveTraffic
    from stream.features import InMemoryFeatureStore

    store = InMemoryFeatureStore() if with_history else None
    client = create_http_app(_Model(), store).test_client()  # type: ignore[arg-type]
    events, _truth = LiveTraffic(Bank.build(customers=20, seed=3), seed=3).next_batch(
        3, time.time()
    )
    events[0]["amount"] = 950.0
    answers = [client.post("/score", json=event) for event in events]
    assert [a.status_code for a in answers] == [200, 200, 200]
    first = answers[0].get_json()
    assert first["transaction_id"] == events[0]["transaction_id"]
    assert first["score"] == pytest.approx(0.95)
    assert first["decision"] == "decline"
    assert first["model_version"] == "7"
    assert client.get("/health").get_json() == {"ready": True, "model_version": "7"}


def test_memory_counts_keys_by_their_kind_past_the_shard_tag() -> None:
    prefix = "fraud:features:v5:"
    kinds = [
        key_kind(prefix + key, prefix)
        for key in ("{c3}:card:card_1", "{c15}:tx:tx-{1}", "{t7}:term:t:1", "{t0}:tlabel:t")
    ]
    assert kinds == ["card", "tx", "term", "tlabel"]
