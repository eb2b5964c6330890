"""Genuine behaviour: one day of every customer's ordinary spending, vectorised.

Each customer draws a Poisson number of purchases around their own daily rate (higher on
Friday and Saturday), picks a channel by their online/cash habits (younger customers buy
online more), an hour by the channel's daily rhythm (shifted by age group), a favourite
shop near home, site or ATM, and an amount around the category's typical price times the
customer's spending scale. A few customers travel abroad for some days and then shop there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator import bank as bk
from simulator import catalog as cat
from simulator.bank import Bank
from simulator.rows import GENUINE, Rows

TRIP_START_PROBABILITY = 1 / 450  # per customer and day
DAY_TRIP_SHARE = 0.03  # customers who spend a given day in another domestic city
NEW_SITE_SHARE = 0.1  # online purchases at a merchant outside the favourites
NEW_DEVICE_SHARE = 0.03  # online purchases from an unknown device (new phone, work laptop)
AMOUNT_SIGMA = 0.6
_FOREIGN_WEIGHTS = np.array([c.weight for c in cat.FOREIGN_CITIES])
_FOREIGN_WEIGHTS = _FOREIGN_WEIGHTS / _FOREIGN_WEIGHTS.sum()


@dataclass
class Trips:
    """Who is abroad: city index (-1 at home) and the day number they come back."""

    city: np.ndarray
    until_day: np.ndarray

    @classmethod
    def nobody(cls, customers: int) -> Trips:
        return cls(np.full(customers, -1), np.zeros(customers, dtype=np.int64))

    def advance(self, rng: np.random.Generator, day_number: int) -> None:
        """End finished trips and start new ones today."""
        self.city[self.until_day <= day_number] = -1
        starting = (self.city < 0) & (rng.random(len(self.city)) < TRIP_START_PROBABILITY)
        count = int(starting.sum())
        self.city[starting] = cat.N_DOMESTIC + rng.choice(
            len(cat.FOREIGN_CITIES), count, p=_FOREIGN_WEIGHTS
        )
        self.until_day[starting] = day_number + rng.integers(2, 11, count)


def genuine_day(
    bank: Bank, day_start: int, trips: Trips, rng: np.random.Generator, activity: float = 1.0
) -> Rows:
    """Every customer's genuine purchases during the UTC day starting at `day_start` (epoch s)."""
    day_number = day_start // 86400
    weekday = int((day_number + 3) % 7)  # 1970-01-01 was a Thursday
    trips.advance(rng, day_number)
    counts = rng.poisson(bank.daily_rate * cat.WEEKDAY_ACTIVITY[weekday] * activity)
    customer = np.repeat(np.arange(bank.n_customers), counts)
    m = len(customer)

    card = pick_card(bank, customer, rng)
    channel = _pick_channel(bank, customer, weekday, rng)
    hour = sample_hours(rng, cat.HOUR_CDF[bank.age_group[customer], channel])
    time = day_start + hour * 3600 + rng.integers(0, 3600, m)

    terminal = np.empty(m, dtype=np.int64)
    shop = channel == cat.POS
    terminal[shop] = favourite_shop(bank, customer[shop], rng)
    day_trip = rng.random(bank.n_customers) < DAY_TRIP_SHARE
    other_city = (
        bank.home_city + rng.integers(1, cat.N_DOMESTIC, bank.n_customers)
    ) % cat.N_DOMESTIC
    elsewhere = shop & day_trip[customer]
    terminal[elsewhere] = random_terminal(rng, bank.city_shops, other_city[customer[elsewhere]])
    online = channel == cat.ECOM
    terminal[online] = favourite_site(bank, customer[online], rng)
    new_site = online & (rng.random(m) < NEW_SITE_SHARE)
    sites = np.flatnonzero(bank.terminal_channel == cat.ECOM)
    terminal[new_site] = sites[rng.integers(0, len(sites), int(new_site.sum()))]
    cash = channel == cat.ATM
    terminal[cash] = bank.favourite_atms[
        customer[cash], rng.integers(0, bk.FAVOURITE_ATMS, int(cash.sum()))
    ]

    travelling = trips.city[customer]
    abroad_shop = shop & (travelling >= 0)
    terminal[abroad_shop] = random_terminal(rng, bank.city_shops, travelling[abroad_shop])
    abroad_cash = cash & (travelling >= 0)
    terminal[abroad_cash] = random_terminal(rng, bank.city_atms, travelling[abroad_cash])

    device = np.full(m, -1, dtype=np.int64)
    device[online] = own_device(bank, customer[online], rng)
    unknown = online & (rng.random(m) < NEW_DEVICE_SHARE)
    device[unknown] = fresh_devices(rng, int(unknown.sum()))

    amount = typical_amount(bank, customer, terminal, rng)
    return Rows(time, card, terminal, amount, device, np.full(m, GENUINE, dtype=np.int64))


def pick_card(bank: Bank, customer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The card used: the first one, or now and then the second for two-card customers."""
    second = (bank.card_count[customer] == 2) & (rng.random(len(customer)) < bk.SECOND_CARD_USE)
    return bank.first_card[customer] + second


def _pick_channel(
    bank: Bank, customer: np.ndarray, weekday: int, rng: np.random.Generator
) -> np.ndarray:
    cdf = bank.channel_cdf[customer]
    pos_share, online_share = cdf[:, 0], cdf[:, 1] - cdf[:, 0]
    online_share = online_share * cat.WEEKDAY_ONLINE_BOOST[weekday]
    u = rng.random(len(customer)) * (cdf[:, 2] - cdf[:, 1] + pos_share + online_share)
    return (u >= pos_share).astype(np.int64) + (u >= pos_share + online_share)


def sample_hours(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """One hour per row from per-row (or shared, 1-D) cumulative hour weights."""
    u = rng.random(cdf.shape[0] if cdf.ndim == 2 else 1)
    if cdf.ndim == 1:
        return np.minimum(np.searchsorted(cdf, u, side="right"), 23)
    return np.minimum((u[:, None] >= cdf).sum(axis=1), 23)


def favourite_shop(bank: Bank, customer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rank = np.searchsorted(bk.SHOP_RANK_CDF, rng.random(len(customer)), side="right")
    return bank.favourite_shops[customer, np.minimum(rank, bk.FAVOURITE_SHOPS - 1)]


def favourite_site(bank: Bank, customer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rank = np.searchsorted(bk.SITE_RANK_CDF, rng.random(len(customer)), side="right")
    return bank.favourite_sites[customer, np.minimum(rank, bk.FAVOURITE_SITES - 1)]


def random_terminal(rng: np.random.Generator, ranges: np.ndarray, city: np.ndarray) -> np.ndarray:
    """A uniformly chosen terminal of each city, from `bank.city_shops` or `bank.city_atms`."""
    first, end = ranges[city, 0], ranges[city, 1]
    return first + (rng.random(len(city)) * (end - first)).astype(np.int64)


def own_device(bank: Bank, customer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 2 * customer + (rng.random(len(customer)) * bank.device_count[customer]).astype(np.int64)


def fresh_devices(rng: np.random.Generator, count: int) -> np.ndarray:
    """Devices no customer owns (ids above every customer's): unknown phones and browsers."""
    return rng.integers(1 << 40, 1 << 62, count)


def typical_amount(
    bank: Bank,
    customer: np.ndarray,
    terminal: np.ndarray,
    rng: np.random.Generator,
    factor: float | np.ndarray = 1.0,
) -> np.ndarray:
    """An amount around the category's usual price times the customer's scale (ATM: multiples of 20)."""
    mean = cat.MCC_MEAN_AMOUNT[bank.terminal_mcc[terminal]] * bank.amount_scale[customer] * factor
    amount = bk.lognormal_with_mean(rng, mean, AMOUNT_SIGMA, len(customer))
    cash = bank.terminal_channel[terminal] == cat.ATM
    amount[cash] = np.maximum(20.0, np.round(amount[cash] / 20.0) * 20.0)
    return np.maximum(0.5, np.round(amount, 2))
