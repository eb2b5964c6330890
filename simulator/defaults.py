"""The default simulated bank and its timeline, shared by `fraud simulate`, `fraud produce`,
the history writer and the live traffic.

The default history covers DEFAULT_DAYS days from DEFAULT_START; live traffic continues that
timeline from LIVE_START, the day after the history's last.
"""

from __future__ import annotations

import datetime as dt

DEFAULT_CUSTOMERS = 5000
DEFAULT_SEED = 1
DEFAULT_START = dt.date(2026, 1, 1)
DEFAULT_DAYS = 60
LIVE_START = DEFAULT_START + dt.timedelta(days=DEFAULT_DAYS)
