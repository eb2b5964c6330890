"""Live traffic for the simulated bank: the history's behaviour, continued on a simulated clock.

    bank = Bank.build(customers=5000, seed=1)
    traffic = LiveTraffic(bank, seed=1, scenario="atm_cashout", scenario_at=30.0)
    events, truth = traffic.next_batch(100)

Whole simulated days are generated with the same engine as the history (own random streams,
so it is not a replay of the files) and handed out in time order, as many per call as asked.
Each event's `timestamp` is its own simulated time. The clock starts at `start` (default
LIVE_START, the day after the default history's last, so live traffic continues that timeline)
and runs as fast as events are asked for: at 300 events/s a day of the 5,000-customer bank
(~11,000 transactions) passes in under a minute of wall time. In event time a card's
transactions are spaced as in the history, so the features computed over event-time windows
(counts per hour and day, time since the previous transaction) mean what they meant in
training. The same seed and start give the same events (their ids apart: those carry a run id).

The simulated clock is not tied to the wall clock: it starts in the wall clock's past and, after
long fast runs, passes it. Consumers of these events compare event times with event times.
The wall clock matters for two things only: `scenario` switches one more scenario on once
`scenario_at` seconds of wall-clock time have passed since the first batch (drift: e.g.
atm_cashout, which the history does not contain), and the default run id.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from typing import Any

from fraud.times import iso_utc
from simulator.bank import Bank
from simulator.defaults import LIVE_START
from simulator.engine import Engine
from simulator.rows import Rows, live_events
from simulator.scenarios import DAY, DEFAULT_SCENARIOS, SCENARIOS

Event = dict[str, Any]


def iso_timestamp(now: float) -> str:
    """Epoch seconds -> '2026-01-01T12:00:00.123Z' (UTC, milliseconds)."""
    return iso_utc(dt.datetime.fromtimestamp(now, tz=dt.UTC), "milliseconds")


def utc_moment(start: dt.date | dt.datetime) -> dt.datetime:
    """A date (its UTC midnight) or an aware datetime, as an aware UTC datetime."""
    if isinstance(start, dt.datetime):
        if start.tzinfo is None:
            raise ValueError(f"start must be timezone-aware (or a date), got {start.isoformat()}")
        return start.astimezone(dt.UTC)
    return dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)


class LiveTraffic:
    """An endless stream of live transactions, deterministic given seed, start and call sizes
    (and, with `scenario`, the moment it is switched on)."""

    def __init__(
        self,
        bank: Bank,
        seed: int,
        scenario: str | None = None,
        scenario_at: float | None = None,
        scenarios: Sequence[str] = DEFAULT_SCENARIOS,
        run_id: str | None = None,
        start: dt.date | dt.datetime = LIVE_START,
    ) -> None:
        """`scenario` starts `scenario_at` seconds of wall-clock time (default 0) after the
        first batch; `run_id` goes into transaction ids (default: derived from the first
        batch's wall-clock time) so that ids stay unique across runs; `start` is where the
        simulated clock starts (a date means its UTC midnight)."""
        if scenario is not None and scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        if scenario is not None and scenario in scenarios:
            raise ValueError(f"scenario {scenario!r} is already part of the live traffic")
        if scenario is None and scenario_at is not None:
            raise ValueError("scenario_at needs a scenario")
        self.bank = bank
        self.start = utc_moment(start)
        self._engine = Engine(bank, seed, scenarios, stream="live")
        self._scenario = scenario
        self._scenario_at = scenario_at or 0.0
        self._run_id = run_id
        self._started: float | None = None
        self._queue = Rows.empty()
        self._cursor = 0
        # Whole seconds, like the engine's rows; the first day is generated from its midnight
        # and cut at `start`, so a start inside a day gives that day's later events.
        self._not_before = math.ceil(self.start.timestamp())
        self._day_end = self._not_before // DAY * DAY
        self._sequence = 0
        self._latest: int | None = None

    @property
    def scenario_active(self) -> bool:
        """Whether the injected scenario has been switched on yet."""
        return self._scenario is not None and self._scenario in self._engine.scenarios

    @property
    def simulated_time(self) -> dt.datetime:
        """The simulated time of the latest event handed out (`start` before the first)."""
        if self._latest is None:
            return self.start
        return dt.datetime.fromtimestamp(self._latest, tz=dt.UTC)

    def next_batch(
        self, n: int, now: float | dt.datetime | None = None
    ) -> tuple[list[Event], list[Event]]:
        """The next `n` transactions, each stamped with its simulated time, and their ground
        truth {transaction_id, is_fraud, fraud_scenario} in the same order.

        `now` (epoch seconds or aware datetime; default: the wall clock) is the caller's
        wall-clock time: it only times the scenario switch and names the default run id."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if now is None:
            now_s = time.time()
        else:
            now_s = now.timestamp() if isinstance(now, dt.datetime) else float(now)
        if self._started is None:
            self._started = now_s
            self._run_id = self._run_id or format(int(now_s * 1000), "x")
        if self._scenario and not self.scenario_active:
            if now_s - self._started >= self._scenario_at:
                self._switch_on(self._scenario)
        rows = self._take(n)
        if len(rows):
            self._latest = int(rows.time[-1])
        first = self._sequence
        self._sequence += n
        ids = [f"tx-{self._run_id}-{i:09d}" for i in range(first, first + n)]
        return live_events(rows, self.bank, ids)

    def _take(self, n: int) -> Rows:
        parts = []
        while n > 0:
            if self._cursor >= len(self._queue):
                self._queue = self._next_day()
                self._cursor = 0
                continue
            stop = min(len(self._queue), self._cursor + n)
            parts.append(self._queue.take(slice(self._cursor, stop)))
            n -= stop - self._cursor
            self._cursor = stop
        return Rows.concat(parts) if parts else Rows.empty()

    def _next_day(self) -> Rows:
        day_start = self._day_end
        rows = self._engine.day(day_start)
        self._day_end += DAY
        if day_start < self._not_before:  # the first day, when `start` falls inside it
            rows = rows.split(self._not_before)[1]
        return rows

    def _switch_on(self, name: str) -> None:
        """Add the scenario's incidents from the current simulated moment to the day's end."""
        remaining = self._queue.take(slice(self._cursor, None))
        # With nothing queued the window is empty: the next day generated includes it.
        sim_now = int(remaining.time[0]) if len(remaining) else self._day_end
        extra = self._engine.add_scenario(name, sim_now, self._day_end)
        self._queue = Rows.concat([remaining, extra]).sorted()
        self._cursor = 0
