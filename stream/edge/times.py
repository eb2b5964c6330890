"""Event time as the edge trusts it: no single event may move the stream's clock.

Producers stamp `timestamp` themselves, so a buggy or hostile one can date an event in year 9999
(which would push every window's cutoff and wipe a terminal's history) or in year 0. An event is
dead-lettered (`event_time`) when it is:

- ahead of the worker's own clock, or of the record's broker timestamp, by more than
  `max_lead` (producers that stamp real time are held to it; simulated traffic, months behind the
  wall clock, is not affected);
- ahead of its partition's stream by more than `max_lead`: the stream's clock is the newest
  event time accepted on the partition before this batch, or, when the events around it moved
  on together (a new simulated run, a quiet partition resuming, a backlog spanning days), the
  median of its neighbours: the partition's events in the batch within `NEIGHBOURS` places of
  it, in offset order. So one event, or a few in a row, cannot move the clock, and a batch
  whose events span more than twice `max_lead` (a new owner's backlog of a sparse partition, or
  of compressed simulated time) is judged piece by piece rather than against its middle;
- before `min_time` (impossibly old).

Pure: the caller passes the clock and keeps one `EventTimeGuard` per worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median_low

US = 1_000_000
# An event ahead of its partition's clock is judged by the median of the partition's events
# within this many places of it in the batch (a window of 2 * NEIGHBOURS + 1).
NEIGHBOURS = 15


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
        partition's watermark (for the next batch)."""
        verdicts: list[str | None] = [self._absolute(item, wall_us) for item in batch]
        by_partition: dict[tuple[str, int], list[int]] = {}
        for index, verdict in enumerate(verdicts):
            if verdict is None:
                by_partition.setdefault(batch[index].partition, []).append(index)
        for partition, indices in by_partition.items():
            times = [batch[index].event_time_us for index in indices]
            before = self.watermarks.get(partition)
            newest = before
            for position, index in enumerate(indices):
                event_time = times[position]
                if before is None or event_time > before + self.max_lead_us:
                    reference = self._neighbours_median(times, position)
                    if before is not None:
                        reference = max(before, reference)
                    if event_time > reference + self.max_lead_us:
                        verdicts[index] = (
                            f"event time is {(event_time - reference) / US / 3600:.1f} h ahead "
                            "of its partition's stream"
                        )
                        continue
                if newest is None or event_time > newest:
                    newest = event_time
            if newest is not None:
                self.watermarks[partition] = newest
        return verdicts

    @staticmethod
    def _neighbours_median(times: list[int], position: int) -> int:
        """The median of the event times within NEIGHBOURS places of `position` (itself
        included): only computed for an event ahead of its partition's clock (rare once a
        partition is flowing)."""
        return median_low(times[max(0, position - NEIGHBOURS) : position + NEIGHBOURS + 1])

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
