"""Lag math on hand-made sample sequences: log-end table, lag in seconds, commit-window status."""

from __future__ import annotations

import pytest

from stream.monitoring import (
    Commit,
    CommitWindow,
    EndOffsetTable,
    GroupLag,
    LagRules,
    PartitionLag,
    Status,
    evaluate_partition,
    group_status,
    lag_at,
    lag_seconds,
)

RULES = LagRules(window=5, min_stop_s=2.0)


def table_of(*samples: tuple[float, int], max_samples: int = 120) -> EndOffsetTable:
    table = EndOffsetTable(max_samples)
    for timestamp, offset in samples:
        table.add(timestamp, offset)
    return table


# -- log-end table -------------------------------------------------------------------------


def test_end_offset_is_interpolated_between_samples():
    table = table_of((100.0, 0), (110.0, 100), (120.0, 100), (130.0, 400))
    assert table.end_offset_at(105.0) == pytest.approx(50)
    assert table.end_offset_at(115.0) == pytest.approx(100)  # idle stretch stays flat
    assert table.end_offset_at(125.0) == pytest.approx(250)
    assert table.end_offset_at(200.0) == pytest.approx(400)  # after the last sample: last value
    assert table.end_offset_at(99.0) is None  # before the table: unknown


def test_time_of_offset_inverts_the_table():
    table = table_of((100.0, 0), (110.0, 100), (120.0, 100), (130.0, 400))
    assert table.time_of_offset(50) == pytest.approx(105.0)
    assert table.time_of_offset(100) == pytest.approx(110.0)  # first reached, not last seen
    assert table.time_of_offset(101) == pytest.approx(120.0 + 10 / 300)
    assert table.time_of_offset(400) == pytest.approx(130.0)
    assert table.time_of_offset(401) is None  # not written yet


def test_time_before_the_table_is_extrapolated_at_the_average_rate():
    # 10 messages/s on average over the table: offset 0 was reached 10 s before the first sample.
    table = table_of((100.0, 100), (120.0, 300))
    assert table.time_of_offset(0) == pytest.approx(90.0)
    idle = table_of((100.0, 50), (120.0, 50))
    assert idle.time_of_offset(10) == pytest.approx(100.0)  # no rate: first sample, a lower bound


def test_out_of_order_seed_samples_are_merged_and_later_samples_win():
    table = table_of((130.0, 300), (100.0, 0), (120.0, 350), (110.0, 100))
    assert table.times == [100.0, 110.0, 120.0, 130.0]
    # The seed at 120 s claimed 350, more than the later sample's 300: it is lowered to 300.
    assert table.offsets == [0, 100, 300, 300]


def test_log_end_going_backwards_restarts_the_table():
    table = table_of((100.0, 500), (110.0, 600), (120.0, 3))  # topic deleted and recreated
    assert table.times == [120.0]
    assert table.offsets == [3]


def test_full_table_drops_the_sample_that_matters_least():
    # Steady 10/s except one burst; the interior points of the steady line go first.
    samples = [(100.0 + i, 10 * i) for i in range(6)] + [(106.0, 500), (107.0, 510)]
    table = table_of(*samples, max_samples=5)
    assert len(table) == 5
    assert table.times[0] == 100.0 and table.times[-1] == 107.0  # the ends are kept
    assert (105.0, 50) in zip(table.times, table.offsets, strict=True)  # the knee is kept
    assert (106.0, 500) in zip(table.times, table.offsets, strict=True)
    assert table.end_offset_at(102.5) == pytest.approx(25)  # still exact on the steady line


def test_table_size_must_allow_interpolation():
    with pytest.raises(ValueError, match="max_samples"):
        EndOffsetTable(2)


# -- lag in seconds and lag at a commit --------------------------------------------------


def test_lag_seconds_is_the_age_of_the_oldest_unconsumed_message():
    table = table_of((100.0, 0), (110.0, 100), (120.0, 200))
    # Committed 49: message 49 was appended when the end went to 50, at t = 105.
    assert lag_seconds(table, committed=49, log_end=200, now=125.0) == pytest.approx(20.0)
    assert lag_seconds(table, committed=200, log_end=200, now=125.0) == 0.0
    assert lag_seconds(table, committed=None, log_end=200, now=125.0) is None


def test_lag_at_a_commit_uses_the_log_end_at_commit_time():
    table = table_of((100.0, 0), (110.0, 100))
    assert lag_at(table, offset=30, timestamp=105.0) == 20
    assert lag_at(table, offset=60, timestamp=105.0) == 0  # interpolation below the commit
    assert lag_at(table, offset=0, timestamp=50.0) is None


def test_commit_window_keeps_the_last_commits_and_ignores_replays():
    window = CommitWindow(3)
    for i in range(5):
        window.add(Commit(offset=10 * i, timestamp=100.0 + i))
    window.add(Commit(offset=40, timestamp=104.0))  # the same record read twice
    window.add(Commit(offset=0, timestamp=50.0))  # older than the window
    assert [c.offset for c in window.commits] == [20, 30, 40]
    table = table_of((100.0, 0), (110.0, 100))
    assert [c.lag for c in window.with_lags(table)] == [0, 0, 0]
    late = table_of((100.0, 0), (110.0, 1000))
    assert [c.lag for c in window.with_lags(late)] == [180, 270, 360]


# -- status ----------------------------------------------------------------------------------


def commits(*rows: tuple[int, float, int | None]) -> list[Commit]:
    return [Commit(offset, timestamp, lag) for offset, timestamp, lag in rows]


def test_no_lag_is_ok_whatever_the_window_says():
    stopped = commits((10, 100.0, 5), (10, 101.0, 5))
    assert evaluate_partition(stopped, current_lag=0, now=500.0, rules=RULES) is Status.OK


def test_steady_consumer_is_ok():
    window = commits((100, 100.0, 8), (110, 101.0, 6), (120, 102.0, 9), (130, 103.0, 7))
    assert evaluate_partition(window, current_lag=7, now=103.5, rules=RULES) is Status.OK


def test_lag_growing_across_the_window_is_warn():
    window = commits((100, 100.0, 5), (103, 101.0, 12), (106, 102.0, 19), (109, 103.0, 26))
    assert evaluate_partition(window, current_lag=30, now=103.5, rules=RULES) is Status.WARN


def test_lag_that_fell_once_or_stayed_flat_is_not_warn():
    dipped = commits((100, 100.0, 5), (103, 101.0, 12), (106, 102.0, 9), (109, 103.0, 26))
    assert evaluate_partition(dipped, current_lag=30, now=103.5, rules=RULES) is Status.OK
    flat = commits((100, 100.0, 5), (103, 101.0, 5), (106, 102.0, 5))
    assert evaluate_partition(flat, current_lag=5, now=102.5, rules=RULES) is Status.OK


def test_caught_up_once_in_the_window_is_ok():
    window = commits((100, 100.0, 0), (103, 101.0, 12), (106, 102.0, 19), (109, 103.0, 26))
    assert evaluate_partition(window, current_lag=30, now=103.5, rules=RULES) is Status.OK


def test_commits_that_do_not_move_while_lag_is_positive_are_stall():
    window = commits((100, 100.0, 5), (100, 101.0, 9), (100, 102.0, 14))
    assert evaluate_partition(window, current_lag=20, now=102.5, rules=RULES) is Status.STALL


def test_no_commit_for_longer_than_the_window_spans_is_stop():
    window = commits((100, 100.0, 5), (110, 103.0, 5), (120, 106.0, 5))  # spans 6 s
    assert evaluate_partition(window, current_lag=9, now=111.9, rules=RULES) is Status.OK
    assert evaluate_partition(window, current_lag=9, now=112.1, rules=RULES) is Status.STOP


def test_a_single_commit_is_not_stop_before_the_minimum():
    window = commits((100, 100.0, 5))
    assert evaluate_partition(window, current_lag=5, now=101.9, rules=RULES) is Status.OK
    assert evaluate_partition(window, current_lag=5, now=102.1, rules=RULES) is Status.STOP


def test_lag_without_any_commit_in_the_window_is_stop():
    assert evaluate_partition([], current_lag=3, now=100.0, rules=RULES) is Status.STOP


def test_committed_offset_going_backwards_is_rewind_even_after_catching_up():
    window = commits((100, 100.0, 0), (110, 101.0, 0), (40, 102.0, 70), (45, 103.0, 65))
    assert evaluate_partition(window, current_lag=65, now=103.5, rules=RULES) is Status.REWIND


def test_stop_outranks_rewind_and_group_takes_the_worst_partition():
    window = commits((100, 100.0, 0), (40, 101.0, 70))
    assert evaluate_partition(window, current_lag=70, now=200.0, rules=RULES) is Status.STOP
    assert group_status([Status.OK, Status.WARN, Status.STALL]) is Status.STALL
    assert group_status([]) is Status.OK


def test_group_totals():
    parts = (
        PartitionLag("t", 0, 10, 15, 5, 2.5, Status.OK, 3, 100.0),
        PartitionLag("t", 1, None, 7, None, None, Status.STOP, 0, None),
        PartitionLag("t", 2, 3, 20, 17, 9.0, Status.WARN, 3, 100.0),
    )
    group = GroupLag("g", "Stable", 1, 101.0, parts)
    assert (group.total_lag, group.max_lag_seconds, group.status) == (22, 9.0, Status.STOP)


def test_rules_reject_a_window_too_small_to_judge():
    with pytest.raises(ValueError, match="window"):
        LagRules(window=1)
