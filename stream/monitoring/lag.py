"""Consumer-lag math: pure functions over plain samples, no Kafka.

Two structures feed the numbers `fraud lag` reports for each partition:

- `EndOffsetTable`: a rolling table of (time, log-end offset) samples. It answers "when did the
  log end reach offset N?" by interpolating between samples, which turns a lag in messages into
  a lag in seconds, and "what was the log end at time T?", which gives each commit its lag.
- `CommitWindow`: the last N offset commits of a partition (offset, commit time, lag then).
  `evaluate_partition` grades the window Burrow-style: OK, WARN (lag growing across the window),
  REWIND (the committed offset went backwards), STALL (commits keep arriving but do not move
  while there is lag) and STOP (no commit for longer than the window spans).

Statuses are ordered by severity so that a group's status is its worst partition's, and so that
the Prometheus gauge carries a bounded, comparable value (`Status.value`).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import Any


class Status(IntEnum):
    """Partition / group status; the value is the Prometheus gauge value (higher is worse)."""

    OK = 0
    WARN = 1
    REWIND = 2
    STALL = 3
    STOP = 4


@dataclass(frozen=True)
class LagRules:
    """How the commit window is judged.

    `window`: commits kept per partition. `min_stop_s`: a partition is never STOP sooner than
    this after its last commit, so a window that has seen a single commit (span 0) does not flag
    a live consumer between two commits.
    """

    window: int = 10
    min_stop_s: float = 10.0

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window must hold at least 2 commits, got {self.window}")
        if self.min_stop_s < 0:
            raise ValueError(f"min_stop_s must be >= 0, got {self.min_stop_s}")


@dataclass(frozen=True)
class Commit:
    """One offset commit: the offset (next message to read), its time, and the lag then."""

    offset: int
    timestamp: float
    lag: int | None = None


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed_offset: int | None
    log_end_offset: int
    lag: int | None
    lag_seconds: float | None
    status: Status
    commits_in_window: int
    last_commit_at: float | None


@dataclass(frozen=True)
class GroupLag:
    group: str
    state: str
    members: int
    evaluated_at: float
    partitions: tuple[PartitionLag, ...]

    @property
    def status(self) -> Status:
        return group_status(p.status for p in self.partitions)

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)

    @property
    def max_lag_seconds(self) -> float:
        return max((p.lag_seconds or 0.0 for p in self.partitions), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (`fraud lag --json`)."""
        return {
            "group": self.group,
            "state": self.state,
            "members": self.members,
            "evaluated_at": self.evaluated_at,
            "status": self.status.name,
            "total_lag": self.total_lag,
            "max_lag_seconds": round(self.max_lag_seconds, 3),
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed_offset": p.committed_offset,
                    "log_end_offset": p.log_end_offset,
                    "lag": p.lag,
                    "lag_seconds": None if p.lag_seconds is None else round(p.lag_seconds, 3),
                    "status": p.status.name,
                    "commits_in_window": p.commits_in_window,
                    "last_commit_at": p.last_commit_at,
                }
                for p in self.partitions
            ],
        }


class EndOffsetTable:
    """Rolling (time, log-end offset) samples of one partition, oldest first.

    The table holds at most `max_samples`. When full it drops the interior sample whose loss
    changes the interpolated curve least, so flat stretches (an idle topic) collapse first and
    the table keeps spanning a long history at a fixed size.
    """

    def __init__(self, max_samples: int = 120) -> None:
        if max_samples < 3:
            raise ValueError(f"max_samples must be >= 3, got {max_samples}")
        self.max_samples = max_samples
        self.times: list[float] = []
        self.offsets: list[int] = []

    def __len__(self) -> int:
        return len(self.times)

    def add(self, timestamp: float, offset: int) -> None:
        """Record the log end at `timestamp`; samples may arrive out of order (seeding)."""
        if self.times and timestamp >= self.times[-1] and offset < self.offsets[-1]:
            # The log end went backwards: the topic was deleted and recreated. Start again.
            self.times.clear()
            self.offsets.clear()
        index = bisect.bisect_left(self.times, timestamp)
        if index < len(self.times) and self.times[index] == timestamp:
            self.offsets[index] = max(self.offsets[index], offset)
        else:
            self.times.insert(index, timestamp)
            self.offsets.insert(index, offset)
        # Keep the offsets non-decreasing in time. Where an earlier (seeded) sample disagrees
        # with a later one, the later sample wins: it was read from the broker more recently.
        for i in range(len(self.offsets) - 2, -1, -1):
            if self.offsets[i] > self.offsets[i + 1]:
                self.offsets[i] = self.offsets[i + 1]
        while len(self.times) > self.max_samples:
            self._drop_least_informative()

    def _drop_least_informative(self) -> None:
        best, best_error = 1, math.inf
        for i in range(1, len(self.times) - 1):
            t0, t1, t2 = self.times[i - 1], self.times[i], self.times[i + 1]
            o0, o1, o2 = self.offsets[i - 1], self.offsets[i], self.offsets[i + 1]
            predicted = o0 + (o2 - o0) * ((t1 - t0) / (t2 - t0)) if t2 > t0 else o1
            error = abs(o1 - predicted)
            if error < best_error:
                best, best_error = i, error
        del self.times[best]
        del self.offsets[best]

    def end_offset_at(self, timestamp: float) -> float | None:
        """The log end at `timestamp`, interpolated; None before the first sample."""
        if not self.times or timestamp < self.times[0]:
            return None
        index = bisect.bisect_right(self.times, timestamp)
        if index >= len(self.times):
            return float(self.offsets[-1])
        t0, t1 = self.times[index - 1], self.times[index]
        o0, o1 = self.offsets[index - 1], self.offsets[index]
        return o0 + (o1 - o0) * (timestamp - t0) / (t1 - t0)

    def time_of_offset(self, offset: int) -> float | None:
        """When the log end reached `offset`, interpolated between samples.

        Before the first sample the time is extrapolated at the table's average rate; with no
        rate to go by (an idle table) the first sample's time is a lower bound on the age.
        """
        if not self.times:
            return None
        if offset <= self.offsets[0]:
            span_t = self.times[-1] - self.times[0]
            span_o = self.offsets[-1] - self.offsets[0]
            if span_t <= 0 or span_o <= 0:
                return self.times[0]
            return self.times[0] - (self.offsets[0] - offset) * span_t / span_o
        index = bisect.bisect_left(self.offsets, offset)
        if index >= len(self.offsets):
            return None  # not written yet as of the last sample
        t0, t1 = self.times[index - 1], self.times[index]
        o0, o1 = self.offsets[index - 1], self.offsets[index]
        return t0 + (t1 - t0) * (offset - o0) / (o1 - o0)


def lag_seconds(
    table: EndOffsetTable, committed: int | None, log_end: int, now: float
) -> float | None:
    """Age of the oldest unconsumed message: now minus when the log end passed `committed`.

    The message at the committed offset was appended when the log end moved from `committed` to
    `committed + 1`, so that is the moment looked up. A group with no commit has no estimate.
    """
    if committed is None:
        return None
    if committed >= log_end:
        return 0.0
    appended_at = table.time_of_offset(committed + 1)
    if appended_at is None:
        return 0.0
    return max(0.0, now - appended_at)


def lag_at(table: EndOffsetTable, offset: int, timestamp: float) -> int | None:
    """The lag a commit of `offset` at `timestamp` had; None when the table does not reach back."""
    end = table.end_offset_at(timestamp)
    if end is None:
        return None
    return max(0, round(end) - offset)


class CommitWindow:
    """The last `size` commits of one partition, in commit-time order."""

    def __init__(self, size: int) -> None:
        self.commits: deque[Commit] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self.commits)

    def add(self, commit: Commit) -> None:
        if self.commits and commit.timestamp < self.commits[-1].timestamp:
            return  # a replayed or late record: the window only moves forward
        if self.commits and commit == self.commits[-1]:
            return
        self.commits.append(commit)

    def with_lags(self, table: EndOffsetTable) -> list[Commit]:
        """The commits, each with its lag filled in from the log-end table where it was unknown."""
        return [
            c
            if c.lag is not None
            else Commit(c.offset, c.timestamp, lag_at(table, c.offset, c.timestamp))
            for c in self.commits
        ]


def evaluate_partition(
    commits: Sequence[Commit], current_lag: int | None, now: float, rules: LagRules
) -> Status:
    """Grade one partition from its commit window and its lag now (Burrow's rules, adapted).

    Order matters: the most severe finding wins. Differences from Burrow: REWIND is reported
    even if the consumer had caught up earlier in the window (a reset after catching up is the
    usual way to rewind), and WARN needs the lag to have actually grown, not merely stayed put
    (a busy topic always shows some lag at commit time).
    """
    if not current_lag or current_lag <= 0:
        return Status.OK
    if not commits:
        return Status.STOP
    first, last = commits[0], commits[-1]
    if now - last.timestamp > max(last.timestamp - first.timestamp, rules.min_stop_s):
        return Status.STOP
    if any(later.offset < earlier.offset for earlier, later in pairwise(commits)):
        return Status.REWIND
    lags = [c.lag for c in commits if c.lag is not None]
    if any(lag == 0 for lag in lags):
        return Status.OK
    if len(commits) >= 2 and all(c.offset == first.offset for c in commits):
        return Status.STALL
    if len(lags) >= 2 and lags[-1] > lags[0] and all(b >= a for a, b in pairwise(lags)):
        return Status.WARN
    return Status.OK


def group_status(statuses: Iterable[Status]) -> Status:
    """A group is as bad as its worst partition."""
    return max(statuses, default=Status.OK)
