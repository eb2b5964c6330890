"""Day-by-day generation shared by the history writer and the live traffic.

    engine = Engine(bank, seed=1, scenarios=DEFAULT_SCENARIOS)
    rows = engine.day(day_start)     # every transaction of that UTC day, sorted by time

Each (stream, day, scenario) has its own random stream, so the genuine traffic does not
change when scenarios are switched on or off. Rows an incident schedules after the day are
held back and released on their own day.
"""

from __future__ import annotations

from collections.abc import Sequence

from simulator import genuine as gen
from simulator.bank import Bank, derived_rng
from simulator.rows import Rows
from simulator.scenarios import DAY, SCENARIOS

_PARTIAL = "partial"


class Engine:
    """Genuine behaviour plus the chosen fraud scenarios, one UTC day at a time."""

    def __init__(
        self, bank: Bank, seed: int, scenarios: Sequence[str], stream: str = "history"
    ) -> None:
        unknown = [name for name in scenarios if name not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
        self.bank = bank
        self.seed = seed
        self.stream = stream
        self.scenarios = list(scenarios)
        self.trips = gen.Trips.nobody(bank.n_customers)
        self._pending = Rows.empty()

    def day(self, day_start: int) -> Rows:
        """All rows with time in [day_start, day_start + 1 day), sorted by time."""
        if day_start % DAY:
            raise ValueError(f"day_start must be a UTC midnight, got {day_start}")
        day_number = day_start // DAY
        rng = derived_rng(self.seed, self.stream, "genuine", day_number)
        parts = [gen.genuine_day(self.bank, day_start, self.trips, rng), self._pending]
        self._pending = Rows.empty()
        for name in self.scenarios:
            rng = derived_rng(self.seed, self.stream, name, day_number)
            parts.append(SCENARIOS[name](self.bank, day_start, day_start + DAY, rng))
        return self._release(Rows.concat(parts), day_start, day_start + DAY)

    def add_scenario(self, name: str, t0: int, day_end: int) -> Rows:
        """Switch `name` on from `t0` (inside the day ending at `day_end`); returns its rows
        due before `day_end`, sorted; later rows come out of `day` on their own day."""
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        rng = derived_rng(self.seed, self.stream, name, _PARTIAL, t0)
        rows = SCENARIOS[name](self.bank, t0, day_end, rng)
        if name not in self.scenarios:
            self.scenarios.append(name)
        return self._release(rows, t0, day_end)

    def _release(self, rows: Rows, t0: int, t1: int) -> Rows:
        # An incident never reaches back before the window it started in.
        rows.time[rows.time < t0] = t0
        due, later = rows.split(t1)
        self._pending = Rows.concat([self._pending, later]) if len(later) else self._pending
        return due.sorted()
