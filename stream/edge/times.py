"""Event time as the edge trusts it: no single event may move the stream's clock.

Producers stamp `timestamp` themselves, so a buggy or hostile one can date an event in year 9999
(which would push every window's cutoff and wipe a terminal's history) or in year 0. An event is
dead-lettered (`event_time`) when it is:

- ahead of the worker's own clock, or of the record's broker timestamp, by more than
  `max_lead` (producers that stamp real time are held to it; simulated traffic, months behind the
  wall clock, is not affected);
- ahead of its partition's stream by more than `max_lead`: the stream's clock is the newest
  event time accepted on the partition, or, when most of a batch moved on together (a new
  simulated run, a quiet partition resuming), the batch's median;
- before `min_time` (impossibly old).

Pure: the caller passes the clock and keeps one `EventTimeGuard` per worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median_low

US = 1_000_000


@dataclass(frozen=True)
class Stamped:
    partition: tuple[str, int]
    event_time_us: int
    broker_time_us: int | None


@dataclass
class EventTimeGuard:
    max_lead_us: int = 86_400 * US
    min_time_us: int = 946_684_800 * US  # 2000-01-01T00:00:00Z
    watermarks: dict[tuple[str, int], int] = field(default_factory=dict)

    def check(self, batch: Sequence[Stamped], wall_us: int) -> list[str | None]:
        """Per event: None when its time is plausible, else why not. Accepted events move their
        partition's watermark."""
        verdicts: list[str | None] = []
        for item in batch:
            verdicts.append(self._absolute(item, wall_us))
        stream_time = self._stream_times(batch, verdicts)
        for index, item in enumerate(batch):
            if verdicts[index] is not None:
                continue
            reference = stream_time[item.partition]
            if item.event_time_us > reference + self.max_lead_us:
                verdicts[index] = (
                    f"event time is {(item.event_time_us - reference) / US / 3600:.1f} h ahead "
                    "of its partition's stream"
                )
                continue
            current = self.watermarks.get(item.partition)
            if current is None or item.event_time_us > current:
                self.watermarks[item.partition] = item.event_time_us
        return verdicts

    def _absolute(self, item: Stamped, wall_us: int) -> str | None:
        if item.event_time_us < self.min_time_us:
            return "event time is before 2000-01-01"
        limit = wall_us
        if item.broker_time_us is not None and item.broker_time_us > 0:
            limit = min(limit, item.broker_time_us)
        if item.event_time_us > limit + self.max_lead_us:
            return (
                f"event time is {(item.event_time_us - limit) / US / 3600:.1f} h ahead of the "
                "clock (broker timestamp or the worker's)"
            )
        return None

    def _stream_times(
        self, batch: Sequence[Stamped], verdicts: list[str | None]
    ) -> dict[tuple[str, int], int]:
        """Per partition of the batch: the later of its watermark and the batch's median."""
        times: dict[tuple[str, int], list[int]] = {}
        for item, verdict in zip(batch, verdicts, strict=True):
            if verdict is None:
                times.setdefault(item.partition, []).append(item.event_time_us)
        reference = {}
        for partition, values in times.items():
            middle = median_low(values)
            current = self.watermarks.get(partition)
            reference[partition] = middle if current is None else max(current, middle)
        return reference
