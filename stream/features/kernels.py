"""Compiled feature kernels: the math of every stateful feature, shared by stream and training.

Plain loops over numpy arrays, compiled by numba (cached on disk, compiled on first call, never
at import), and run without the GIL (`nogil`): in the worker, the store lane's kernels run beside
the event loop's scoring instead of taking turns with it. Callers go through the wrappers in
stream/features/definition.py; see its docstring for the conventions (microsecond time,
half-open windows, lookback limits, NaN for missing).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

US_PER_SECOND = 1_000_000
HOUR_US = 3600 * US_PER_SECOND
DAY_US = 24 * HOUR_US
CARD_WINDOW_US = (HOUR_US, DAY_US, 7 * DAY_US, 30 * DAY_US)
TERMINAL_WINDOW_US = (DAY_US, 7 * DAY_US, 28 * DAY_US)
CARD_LOOKBACK_US = CARD_WINDOW_US[-1]
DAY_WINDOW = CARD_WINDOW_US.index(DAY_US)  # distinct terminals/countries look back one day
TERMINAL_LOOKBACK_US = TERMINAL_WINDOW_US[-1]
# Bounds the state of a runaway card; its windows then cover its latest MAX_CARD_HISTORY events.
MAX_CARD_HISTORY = 1000
NIGHT_END_HOUR = 6  # 00:00-05:59 UTC counts as night
# Card habits: the last RECENT_US are compared with the card's earlier days (its baseline, at
# least BASELINE_MIN_US of them), and the novelty counts look at the card's latest
# NOVELTY_SCAN events of that period (a bound on the work a flooded card can cause).
RECENT_US = 4 * DAY_US
BASELINE_MIN_US = 7 * DAY_US
NOVELTY_SCAN = 64
EARTH_RADIUS_KM = 6371.0088


@njit(cache=True, nogil=True)
def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    if math.isnan(lat1) or math.isnan(lon1) or math.isnan(lat2) or math.isnan(lon2):
        return math.nan
    phi1 = math.radians(lat1)
    phi2 = math.radians(lat2)
    half_dphi = (phi2 - phi1) / 2.0
    half_dlambda = math.radians(lon2 - lon1) / 2.0
    a = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@njit(cache=True, nogil=True)
def event_kernel(ts, amount, channel, merchant_group, term_lat, term_lon, cust_lat, cust_lon, out):  # type: ignore[no-untyped-def]
    for i in range(ts.size):
        hour = (ts[i] // HOUR_US) % 24
        weekday = (ts[i] // DAY_US + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
        out[i, 0] = amount[i]
        out[i, 1] = hour
        out[i, 2] = 1.0 if hour < NIGHT_END_HOUR else 0.0
        out[i, 3] = 1.0 if weekday >= 5 else 0.0
        out[i, 4] = channel[i]
        out[i, 5] = merchant_group[i]
        out[i, 6] = haversine_km(cust_lat[i], cust_lon[i], term_lat[i], term_lon[i])


@njit(cache=True, nogil=True)
def count_distinct_nonzero(values):  # type: ignore[no-untyped-def]
    ordered = np.sort(values)
    distinct = 0
    previous = 0
    for value in ordered:
        if value != 0 and (distinct == 0 or value != previous):
            distinct += 1
            previous = value
    return distinct


@njit(cache=True, nogil=True)
def card_kernel(ts, amount, terminal, country, device, lat, lon, group_start, positions, out):  # type: ignore[no-untyped-def]
    n_windows = len(CARD_WINDOW_US)
    # Per band (events older than the previous window, inside this one), then cumulated.
    counts = np.zeros(n_windows)
    sums = np.zeros(n_windows)
    maxima = np.zeros(n_windows)
    for p in range(positions.size):
        k = positions[p]
        start = group_start[k]
        t = ts[k]
        end = earlier_end(ts, start, k)  # events strictly earlier in time are [start, end)
        low = max(start, end - MAX_CARD_HISTORY)
        counts[:] = 0.0
        sums[:] = 0.0
        maxima[:] = -np.inf
        seen_terminal = seen_country = seen_device = False
        day_start = end
        band = 0
        j = end - 1
        while j >= low:
            age = t - ts[j]
            while band < n_windows and age > CARD_WINDOW_US[band]:
                band += 1
            if band == n_windows:
                break
            counts[band] += 1.0
            sums[band] += amount[j]
            maxima[band] = max(maxima[band], amount[j])
            if band <= DAY_WINDOW:
                day_start = j
            seen_terminal = seen_terminal or terminal[j] == terminal[k]
            seen_country = seen_country or country[j] == country[k]
            seen_device = seen_device or device[j] == device[k]
            j -= 1
        for w in range(n_windows):
            if w > 0:
                counts[w] += counts[w - 1]
                sums[w] += sums[w - 1]
                maxima[w] = max(maxima[w], maxima[w - 1])
            out[p, 4 * w] = counts[w]
            out[p, 4 * w + 1] = sums[w]
            out[p, 4 * w + 2] = sums[w] / counts[w] if counts[w] > 0 else np.nan
            out[p, 4 * w + 3] = maxima[w] if counts[w] > 0 else np.nan
        col = 4 * n_windows
        last = n_windows - 1
        out[p, col] = amount[k] / out[p, 4 * last + 2] if counts[last] > 0 else np.nan
        out[p, col + 1] = out[p, col + 2] = out[p, col + 3] = np.nan
        if j < end - 1:  # a previous transaction inside the lookback
            seconds = (t - ts[end - 1]) / US_PER_SECOND
            distance = haversine_km(lat[end - 1], lon[end - 1], lat[k], lon[k])
            out[p, col + 1] = seconds
            out[p, col + 2] = distance
            out[p, col + 3] = distance / (seconds / 3600.0)
        out[p, col + 4] = count_distinct_nonzero(terminal[day_start:end])
        out[p, col + 5] = count_distinct_nonzero(country[day_start:end])
        out[p, col + 6] = 0.0 if seen_terminal else 1.0
        out[p, col + 7] = np.nan if country[k] == 0 else (0.0 if seen_country else 1.0)
        out[p, col + 8] = np.nan if device[k] == 0 else (0.0 if seen_device else 1.0)


@njit(cache=True, nogil=True)
def earlier_end(ts, start, k):  # type: ignore[no-untyped-def]
    """End of event k's predecessors in its group: [start, end) are the events strictly earlier
    in time than event k (its group sorted by time; ties with k are not earlier)."""
    end = k
    while end > start and ts[end - 1] >= ts[k]:
        end -= 1
    return end


@njit(cache=True, nogil=True)
def lower_bound(values, low, high, x):  # type: ignore[no-untyped-def]
    """First index in [low, high) of sorted `values` whose value is >= x (high if none)."""
    while low < high:
        middle = (low + high) >> 1
        if values[middle] < x:
            low = middle + 1
        else:
            high = middle
    return low


@njit(cache=True, nogil=True)
def terminal_kernel(  # type: ignore[no-untyped-def]
    ts,
    group_start,
    positions,
    stored_counts,
    label_delay,
    fraud_ts,
    fraud_known_at,
    fraud_low,
    fraud_high,
    out,
):
    n_windows = len(TERMINAL_WINDOW_US)
    frauds = np.zeros(n_windows)
    for p in range(positions.size):
        k = positions[p]
        start = group_start[k]
        t = ts[k]
        end = earlier_end(ts, start, k)
        horizon = t - label_delay  # the after-delay windows end here (exclusive)
        horizon_end = lower_bound(ts, start, end, horizon)
        for w in range(n_windows):
            width = TERMINAL_WINDOW_US[w]
            out[p, w] = stored_counts[p, w] + end - lower_bound(ts, start, end, t - width)
            delayed = horizon_end - lower_bound(ts, start, horizon_end, horizon - width)
            out[p, n_windows + w] = stored_counts[p, n_windows + w] + delayed
        frauds[:] = 0.0
        i = lower_bound(fraud_ts, fraud_low[p], fraud_high[p], horizon - TERMINAL_LOOKBACK_US)
        while i < fraud_high[p] and fraud_ts[i] < horizon:
            if fraud_known_at[i] <= t:
                age = horizon - fraud_ts[i]  # > 0; inside window w when age <= its width
                for w in range(n_windows):
                    if age <= TERMINAL_WINDOW_US[w]:
                        frauds[w] += 1.0
            i += 1
        for w in range(n_windows):
            count = out[p, n_windows + w]
            out[p, 2 * n_windows + w] = frauds[w] / count if count > 0 else np.nan


@njit(cache=True, nogil=True)
def _first_in_window(keys, low, index):  # type: ignore[no-untyped-def]
    """Whether keys[index] (non-zero) occurs nowhere in keys[low:index]."""
    for i in range(low, index):
        if keys[i] == keys[index]:
            return False
    return True


@njit(cache=True, nogil=True)
def card_habit_kernel(  # type: ignore[no-untyped-def]
    ts, amount, terminal, device, channel, merchant_group, group_start, positions, out
):
    """How usual each event is for its card, against the card's own 30-day lookback.

    Columns, in CARD_HABIT_FEATURES order (stream/features/definition.py): the amount's
    percentile among the lookback's amounts (ties count half); the amount over the card's mean
    amount in the same merchant category group; the shares of the lookback in the same merchant
    category group, within an hour of the same hour of day (UTC), on the same channel; the
    card's typical day (transactions per day in its baseline: the lookback before the last
    RECENT_US, observed from its oldest event there, NaN when that spans less than
    BASELINE_MIN_US); the last 24 h's count over the typical day; the last RECENT_US's count and
    amount over as many typical days; the card's transactions at this terminal, the seconds since
    the latest one, the seconds since the card first used this device (NaN without a device or
    when new); and the distinct terminals and devices whose first use in the lookback falls in
    the last RECENT_US (among its latest NOVELTY_SCAN events).
    """
    for p in range(positions.size):
        k = positions[p]
        start = group_start[k]
        t = ts[k]
        end = earlier_end(ts, start, k)
        low = max(start, end - MAX_CARD_HISTORY)
        hour = (t // HOUR_US) % 24
        count = 0
        below = 0.0
        same_group = 0
        group_amount = 0.0
        same_hour = 0
        same_channel = 0
        day_count = 0
        recent_count = 0
        recent_amount = 0.0
        baseline_count = 0
        baseline_amount = 0.0
        oldest_age = 0
        terminal_uses = 0
        terminal_last = -1
        device_first = -1
        j = end - 1
        while j >= low:
            age = t - ts[j]
            if age > CARD_LOOKBACK_US:
                break
            count += 1
            oldest_age = age
            if amount[j] < amount[k]:
                below += 1.0
            elif amount[j] == amount[k]:
                below += 0.5
            if merchant_group[j] == merchant_group[k]:
                same_group += 1
                group_amount += amount[j]
            distance = abs((ts[j] // HOUR_US) % 24 - hour)
            if min(distance, 24 - distance) <= 1:
                same_hour += 1
            if channel[j] == channel[k]:
                same_channel += 1
            if age <= DAY_US:
                day_count += 1
            if age <= RECENT_US:
                recent_count += 1
                recent_amount += amount[j]
            else:
                baseline_count += 1
                baseline_amount += amount[j]
            if terminal[j] == terminal[k]:
                terminal_uses += 1
                if terminal_last < 0:
                    terminal_last = ts[j]
            if device[k] != 0 and device[j] == device[k]:
                device_first = ts[j]
            j -= 1
        window_low = j + 1
        new_terminals = 0
        new_devices = 0
        scan_low = max(window_low, end - NOVELTY_SCAN)
        i = end - 1
        while i >= scan_low and t - ts[i] <= RECENT_US:
            if _first_in_window(terminal, window_low, i):
                new_terminals += 1
            if device[i] != 0 and _first_in_window(device, window_low, i):
                new_devices += 1
            i -= 1

        out[p, :] = np.nan
        if count > 0:
            out[p, 0] = below / count
            out[p, 2] = same_group / count
            out[p, 3] = same_hour / count
            out[p, 4] = same_channel / count
        if same_group > 0:
            out[p, 1] = amount[k] / (group_amount / same_group)
        baseline_days = (oldest_age - RECENT_US) / DAY_US
        if baseline_count > 0 and oldest_age - RECENT_US >= BASELINE_MIN_US:
            typical_count = baseline_count / baseline_days
            recent_days = RECENT_US / DAY_US
            out[p, 5] = typical_count
            out[p, 6] = day_count / typical_count
            out[p, 7] = recent_count / (typical_count * recent_days)
            out[p, 8] = recent_amount / (baseline_amount / baseline_days * recent_days)
        out[p, 9] = terminal_uses
        if terminal_last >= 0:
            out[p, 10] = (t - terminal_last) / US_PER_SECOND
        if device_first >= 0:
            out[p, 11] = (t - device_first) / US_PER_SECOND
        out[p, 12] = new_terminals
        out[p, 13] = new_devices
