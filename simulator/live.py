"""Live traffic for the simulated bank: the history's behaviour, replayed as fast as asked.

    bank = Bank.build(customers=5000, seed=1)
    traffic = LiveTraffic(bank, seed=1, scenario="atm_cashout", scenario_at=30.0)
    events, truth = traffic.next_batch(100, time.time())

The traffic runs on a simulated clock: whole simulated days are generated with the same
engine as the history (own random streams, so it is not a replay of the files) and handed
out in order, as many per call as asked. Every event is stamped with the caller's `now`
(the wall-clock time of sending), so the live rate, not the simulated day, sets the pace.
`scenario` switches one more scenario on once `scenario_at` seconds of wall-clock time have
passed since the first batch (drift: e.g. atm_cashout, which the history does not contain).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from simulator.bank import Bank
from simulator.engine import Engine
from simulator.rows import Rows, live_events
from simulator.scenarios import DAY, DEFAULT_SCENARIOS, SCENARIOS

Event = dict[str, Any]


def iso_timestamp(now: float) -> str:
    """Epoch seconds -> '2026-01-01T12:00:00.123Z' (UTC, milliseconds)."""
    moment = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class LiveTraffic:
    """An endless, deterministic (given seed and call sequence) stream of live transactions."""

    def __init__(
        self,
        bank: Bank,
        seed: int,
        scenario: str | None = None,
        scenario_at: float | None = None,
        scenarios: Sequence[str] = DEFAULT_SCENARIOS,
        run_id: str | None = None,
    ) -> None:
        """`scenario` starts `scenario_at` seconds (default 0) after the first batch;
        `run_id` goes into transaction ids (default: derived from the first batch's time) so
        that ids stay unique across runs."""
        if scenario is not None and scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        if scenario is not None and scenario in scenarios:
            raise ValueError(f"scenario {scenario!r} is already part of the live traffic")
        if scenario is None and scenario_at is not None:
            raise ValueError("scenario_at needs a scenario")
        self.bank = bank
        self._engine = Engine(bank, seed, scenarios, stream="live")
        self._scenario = scenario
        self._scenario_at = scenario_at or 0.0
        self._run_id = run_id
        self._started: float | None = None
        self._queue = Rows.empty()
        self._cursor = 0
        self._day_end = 0
        self._sequence = 0

    @property
    def scenario_active(self) -> bool:
        """Whether the injected scenario has been switched on yet."""
        return self._scenario is not None and self._scenario in self._engine.scenarios

    def next_batch(self, n: int, now: float | dt.datetime) -> tuple[list[Event], list[Event]]:
        """The next `n` transactions stamped `now` (epoch seconds or aware datetime), and
        their ground truth {transaction_id, is_fraud, fraud_scenario} in the same order."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        now_s = now.timestamp() if isinstance(now, dt.datetime) else float(now)
        if self._started is None:
            self._started = now_s
            self._run_id = self._run_id or format(int(now_s * 1000), "x")
            self._day_end = int(now_s // DAY) * DAY  # the first simulated day starts there
        if self._scenario and not self.scenario_active:
            if now_s - self._started >= self._scenario_at:
                self._switch_on(self._scenario)
        rows = self._take(n)
        first = self._sequence
        self._sequence += n
        ids = [f"tx-{self._run_id}-{i:09d}" for i in range(first, first + n)]
        return live_events(rows, self.bank, iso_timestamp(now_s), ids)

    def _take(self, n: int) -> Rows:
        parts = []
        while n > 0:
            if self._cursor >= len(self._queue):
                self._queue = self._engine.day(self._day_end)
                self._cursor = 0
                self._day_end += DAY
                continue
            stop = min(len(self._queue), self._cursor + n)
            parts.append(self._queue.take(slice(self._cursor, stop)))
            n -= stop - self._cursor
            self._cursor = stop
        return Rows.concat(parts) if parts else Rows.empty()

    def _switch_on(self, name: str) -> None:
        """Add the scenario's incidents from the current simulated moment to the day's end."""
        remaining = self._queue.take(slice(self._cursor, None))
        sim_now = int(remaining.time[0]) if len(remaining) else self._day_end
        extra = self._engine.add_scenario(name, sim_now, self._day_end)
        self._queue = Rows.concat([remaining, extra]).sorted()
        self._cursor = 0
