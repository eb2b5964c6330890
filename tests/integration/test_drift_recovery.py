"""Drift recovery in compressed time: a scenario the champion never saw (atm_cashout) reaches the
live stream, the simulated analysts label what the worker decided, `fraud retrain` promotes a
challenger, the running worker swaps to it by itself, and on later traffic the new champion
declines clearly more of the new scenario than the old one did on the very same events.

Live events carry simulated time, so card features mean what they meant in training: the old
champion already reviews the scenario's withdrawals (quick, large, cash, at night: unusual for
the card, which its habit features see), but leaves some of them to review rather than
declining them. Measured (177 withdrawals in 4,000 later events, four runs): decline recall
0.887 -> 0.97-1.0, recall at the scenario's share of alerts 0.989 -> 0.983-1.0, review recall
1.0 -> 1.0 (before the card habit features and the refit: decline recall 0.46 -> 1.0, at the share
0.88 -> 1.0, review 0.96 -> 1.0)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest

import simulator.scenarios
from fraud.settings import Settings, TopicNames
from simulator.analyst import AnalystConfig, run_analyst
from simulator.bank import Bank
from simulator.live import LiveTraffic
from simulator.produce import produce_live
from stream.feedback import scan_topic
from tests.support.processes import fraud_command
from tests.support.stack import ROOT
from tests.support.worker import scrape, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 200.0  # events/s: the worker, the analysts and the producer share two cores
FIRST_S, LATER_S = 40.0, 20.0
LABEL_DELAY_S = 5.0  # >= the analysts' chargeback delay: labels older than it are final


def decided(worker: Any) -> float:
    return scrape(worker)['fraud_transactions_total{outcome="decided"}']


def sequence(transaction_id: str) -> int:
    """The position of a live event in its traffic (ids are tx-<run>-<sequence>)."""
    return int(transaction_id.rsplit("-", 1)[1])


def later_events(settings: Settings, first: int) -> pd.DataFrame:
    """Decisions of the traffic's events from position `first` on, with their logged features
    and ground truth (event times are simulated: they say nothing of when an event was sent)."""
    truth = {}
    for record in scan_topic(settings.kafka, settings.topics.truth):
        value = orjson.loads(record.value)
        truth[value["transaction_id"]] = value["fraud_scenario"] if value["is_fraud"] else None
    rows = []
    for record in scan_topic(settings.kafka, settings.topics.decisions):
        decision = orjson.loads(record.value)
        if sequence(decision["transaction_id"]) < first:
            continue
        rows.append(
            {
                "transaction_id": decision["transaction_id"],
                "version": decision["model"]["version"],
                "logged_score": decision["score"],
                "scenario": truth.get(decision["transaction_id"]),
                **decision["features"],
            }
        )
    return pd.DataFrame(rows).drop_duplicates("transaction_id")


def recall_figures(settings: Settings, version: str, events: pd.DataFrame) -> dict[str, float]:
    from stream.scoring import load_model_version

    model = load_model_version(settings, version=version)
    scores = model.predict_scores(events)
    atm = (events["scenario"] == "atm_cashout").to_numpy()
    # Recall when a model may alert as many events as the scenario has (R-precision). A fixed
    # budget below the scenario's share (here ~4%, its rate raised 30x) would cap both models.
    at_share = np.quantile(scores, 1 - atm.mean())
    return {
        "other_alert_rate": float((scores[~atm] >= model.thresholds.review).mean()),
        "recall_alert": float((scores[atm] >= model.thresholds.review).mean()),
        "recall_decline": float((scores[atm] >= model.thresholds.decline).mean()),
        "recall_at_share": float((scores[atm] >= at_share).mean()),
        "scores": scores,
    }


def missed(recall: float, events: int) -> int:
    """How many of `events` scenario events a recall leaves out."""
    return round((1 - recall) * events)


def test_retrain_recovers_recall_on_a_scenario_unseen_in_history(
    worker_env, private_champion, monkeypatch, tmp_path
) -> None:
    # Incidents of the new scenario ~30x as often as its default rate, so that a minute of a
    # 400-customer bank holds a few hundred of its withdrawals.
    monkeypatch.setitem(simulator.scenarios.RATES, "atm_cashout", 0.01)
    worker_env.champion = private_champion
    old = private_champion.version
    topics = worker_env.topics
    settings = private_champion.settings().model_copy(
        update={
            "kafka_bootstrap_servers": worker_env.stack.bootstrap,
            "topics": TopicNames(**topics),
        }
    )
    traffic = LiveTraffic(Bank.build(400, 5), 5, scenario="atm_cashout", scenario_at=0.0)

    def send(seconds: float) -> int:
        """Valid events sent (malformed none, so every event handed out)."""
        report = produce_live(
            worker_env.stack.kafka,
            traffic,
            RATE,
            seconds,
            topics["transactions"],
            topics["truth"],
        )
        assert report.delivery_errors == 0 and report.valid == report.sent
        return report.valid

    def fraud(timeout_s: float, *args: str) -> subprocess.CompletedProcess[str]:
        """A `fraud` command against this test's stack and private champion store (the
        worker's port is not bound by these commands)."""
        return subprocess.run(
            fraud_command(*args),
            cwd=ROOT,
            env={**os.environ, **worker_env.env(6066)},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    desk = AnalystConfig(
        review_delay_s=1.0, chargeback_delay_s=3.0, error_rate=0.02, daily_capacity=None
    )
    stop = threading.Event()
    analysts = threading.Thread(
        target=run_analyst, args=(settings, desk), kwargs={"stop": stop}, daemon=True
    )
    with worker_env.worker() as worker:
        analysts.start()
        try:
            time.sleep(2.0)  # the desk reads from the end of its topics: let it subscribe
            sent = send(FIRST_S)
            wait_until(lambda: decided(worker) >= sent, 120, "every first-phase event decided")
            time.sleep(LABEL_DELAY_S + 3.0)  # the last chargebacks fall due

            result = fraud(
                600,
                "retrain",
                *("--data", str(private_champion.history / "transactions.parquet")),
                # The champion's own hyper-parameters: the challenger differs by the feedback.
                *("--label-delay-seconds", str(LABEL_DELAY_S)),
                # The 400-customer bank is too small for the fairness audit to judge its
                # groups: this run widens the gate (see below).
                *("--fairness-min-events", "5", "--fairness-band", "0.1,10"),
                # Its recent labelled window holds ~50 frauds: average precision there moves
                # by a few hundredths between runs of the same traffic (0.9428 vs 0.9488 with
                # equal recall). The recent_window gate refuses only a challenger credibly
                # worse (the bootstrap's upper bound of the difference below 0), so no
                # tolerance is needed for such a draw.
                *("--model-card", str(tmp_path / "card.md")),
                *("--results-dir", str(tmp_path / "retrain")),
            )
            output = " ".join((result.stdout + result.stderr).split())
            assert result.returncode in (0, 1), output[-4000:]  # promoted, or a gate refused
            (report_path,) = (tmp_path / "retrain").glob("*.json")
            report = orjson.loads(report_path.read_bytes())
            refused = {gate["name"] for gate in report["gates"] if not gate["passed"]}
            # Every gate that can judge a bank this small passes: the recent labelled window,
            # the history's test window, the data. The fairness audit often cannot: its test
            # week holds a few dozen false alerts, and a model this precise leaves some age
            # band with none (a ratio of 0 with a degenerate interval) or too few to judge (it
            # fails closed). Only then is the promotion forced, with the reason on record, as
            # the session champion's is.
            assert refused <= {"fairness"}, output[-4000:]
            if refused:
                forced = fraud(
                    120,
                    "promote",
                    *("--version", report["version"], "--force"),
                    *("--reason", "drift test: a 400-customer bank is too small to audit"),
                )
                assert forced.returncode == 0, forced.stdout + forced.stderr
                # The card `fraud retrain` wrote describes the champion it left in place; the
                # new champion's card, retraining included, comes from `fraud model-card`.
                card = fraud(120, "model-card", "--out", str(tmp_path / "card.md"))
                assert card.returncode == 0, card.stdout + card.stderr
            else:
                assert "@champion -> v" in output
            from stream.scoring import open_store, version_at_alias

            new = str(
                version_at_alias(open_store(settings), settings.model_name, "champion").version
            )
            assert new == report["version"] != old
            assert "## Retraining from feedback" in (tmp_path / "card.md").read_text()
            wait_until(
                lambda: httpx.get(worker.url("/health")).json()["model"]["version"] == new,
                30,
                f"the worker swapping to v{new} by itself",
            )

            later = send(LATER_S)
            wait_until(lambda: decided(worker) >= sent + later, 120, "every later event decided")
        finally:
            stop.set()
            analysts.join(30)

    events = later_events(settings, first=sent)
    assert len(events) == later
    assert set(events["version"]) == {new}, "the later traffic was decided by the new champion"
    atm = int((events["scenario"] == "atm_cashout").sum())
    assert atm >= 30, f"only {atm} atm_cashout events in the later traffic"
    before = recall_figures(settings, old, events)
    after = recall_figures(settings, new, events)
    # Offline scoring of the logged features reproduces what the worker decided.
    assert np.allclose(after["scores"], events["logged_score"], atol=1e-6)
    figures = {
        name: (round(before[name], 3), round(after[name], 3))
        for name in ("recall_decline", "recall_at_share", "recall_alert", "other_alert_rate")
    }
    print(f"\natm_cashout events in later traffic: {atm}; (v{old}, v{new}): {figures}")
    # Declines clearly more of it: at most half of what the old champion left undeclined.
    assert after["recall_decline"] > before["recall_decline"], figures
    assert 1 - after["recall_decline"] <= (1 - before["recall_decline"]) / 2, figures
    # Ranks and reviews it no worse. The old champion already reviews all of it and ranks ~99%
    # of it within the scenario's share, so these two sit at their ceiling: one withdrawal of the
    # ~177 either way is a draw of the traffic, not a change (a CI run measured 0.989 -> 0.983 at
    # the share: 175 -> 174 of 177, with decline recall 0.887 -> 0.983). Missing two more is not.
    for name in ("recall_at_share", "recall_alert"):
        assert missed(after[name], atm) <= missed(before[name], atm) + 1, (name, figures)
    # Not bought with false alerts on the rest of the traffic.
    assert after["other_alert_rate"] <= before["other_alert_rate"] + 0.005, figures
