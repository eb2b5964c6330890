"""The scoring worker on the real broker and Redis, with a champion from a real training run."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from schemas import validator
from simulator.bank import Bank
from simulator.live import LiveTraffic
from simulator.produce import produce_live

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _produce(worker_env, rate: float, seconds: float, malformed: float = 0.0, seed: int = 5):
    traffic = LiveTraffic(Bank.build(400, seed), seed)
    return produce_live(
        worker_env.stack.kafka,
        traffic,
        rate=rate,
        duration_s=seconds,
        topic=worker_env.topics["transactions"],
        truth_topic=worker_env.topics["truth"],
        malformed_rate=malformed,
    )


@pytest.mark.parametrize("store_process", [False, True], ids=["store-lane", "store-process"])
def test_every_transaction_gets_one_decision_and_every_bad_event_a_dead_letter(
    worker_env, consume_all, store_process
):
    if not store_process:  # the store in the worker's own lane thread, as before the default
        worker_env.extra.update({"FRAUD_STORE_PROCESS": "0", "FRAUD_PIPELINE_DEPTH": "2"})
    with worker_env.worker() as worker:
        if store_process:  # the feature store runs in the worker's child process
            child = _store_child(worker.popen.pid)
        report = _produce(worker_env, rate=400, seconds=5, malformed=0.05)
        truth = consume_all(worker_env.topics["truth"], count=report.valid)
        # Events whose card_id is a raw card number are tokenised at the edge and decided;
        # the other malformed kinds are dead-lettered.
        tokenised = report.malformed["card_number"]
        malformed = sum(report.malformed.values()) - tokenised
        decisions = consume_all(
            worker_env.topics["decisions"], count=report.valid + tokenised, timeout_s=90
        )
        dead = consume_all(worker_env.topics["dead_letter"], count=malformed)
        alerts = consume_all(worker_env.topics["alerts"], idle_s=3)
        metrics = httpx.get(worker.url("/metrics")).text
        if store_process:  # the same child served every batch (none ran in the worker)
            assert _store_child(worker.popen.pid) == child

    assert malformed > 0 and tokenised > 0 and report.valid == len(truth)
    truth_ids = {t["transaction_id"] for t in truth}
    decided_ids = {d["transaction_id"] for d in decisions}
    assert len(decisions) == len(decided_ids) == report.valid + tokenised
    assert truth_ids <= decided_ids
    assert all(
        d["card_id"].startswith("tok_") for d in decisions if d["transaction_id"] not in truth_ids
    )
    assert len(dead) == malformed
    assert {d["reason"] for d in dead} <= {"invalid_json", "schema"}
    flagged = {d["transaction_id"] for d in decisions if d["decision"] in ("review", "decline")}
    assert {a["transaction_id"] for a in alerts} == flagged
    for record in decisions:
        validator("decision")(record)
        assert record["model"]["version"] == worker_env.champion.version
        assert record["degraded"] is False
    for record in alerts:
        validator("alert")(record)
        assert 1 <= len(record["reason_codes"]) <= 3
    for record in dead:
        validator("dead_letter")(record)
    assert f'fraud_transactions_total{{outcome="decided"}} {float(len(decisions))}' in metrics
    assert f'fraud_transactions_total{{outcome="dead_lettered"}} {float(len(dead))}' in metrics
    assert f"fraud_pan_tokenized_total {float(tokenised)}" in metrics


def _store_child(pid: int) -> int:
    """The pid of the worker's feature store process (a multiprocessing child)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            if entry.name.isdigit() and int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                if b"spawn_main" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        except OSError:
            continue
    assert len(found) == 1, found
    return found[0]


def test_predict_and_health(worker_env):
    traffic = LiveTraffic(Bank.build(400, 5), 5)
    events, _ = traffic.next_batch(3, now=1_780_000_000.0)
    with worker_env.worker() as worker:
        health = httpx.get(worker.url("/health")).json()
        assert health["ready"] is True and health["model"]["version"] == worker_env.champion.version
        response = httpx.post(worker.url("/predict"), content=orjson.dumps(events[0]))
        assert response.status_code == 200
        decision = response.json()
        validator("decision")(decision)
        assert decision["transaction_id"] == events[0]["transaction_id"]

        bad = dict(events[1], amount=-1)
        response = httpx.post(worker.url("/predict"), content=orjson.dumps(bad))
        assert response.status_code == 400
        assert (
            response.json()["field"] == "amount" and "exclusiveMinimum" in response.json()["error"]
        )
        assert httpx.post(worker.url("/predict"), content=b"{not json").status_code == 400

        # Read-only: asking twice about the same card changes nothing it sees.
        probe = dict(events[2], transaction_id="tx-probe")
        first = httpx.post(worker.url("/predict"), content=orjson.dumps(probe)).json()
        again = httpx.post(
            worker.url("/predict"), content=orjson.dumps(dict(probe, transaction_id="tx-probe-2"))
        ).json()
        assert first["features"] == again["features"]
        # Bounded: a body over the record limit is refused before it is read whole.
        huge = b'{"x": "' + b"a" * (70 * 1024) + b'"}'
        assert httpx.post(worker.url("/predict"), content=huge).status_code == 413
        # Faust's own debug pages are off.
        for path in ("/router/", "/table/", "/graph/", "/stats/"):
            assert httpx.get(worker.url(path)).status_code == 404, path
