"""The simulated bank: customers, their cards and devices, and the terminals they shop at.

    bank = Bank.build(customers=5000, seed=1)

The same (customers, seed) always gives the same bank, so the history files and the live
traffic of `fraud produce` describe the same customers, cards and terminals. Everything is
held as numpy arrays indexed by integer ids (customer i is "cust-<i+1>", and so on).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import pyarrow as pa

from simulator import catalog as cat

FAVOURITE_SHOPS = 15  # point-of-sale terminals a customer uses regularly
NEARBY_SHOPS = 60  # the neighbourhood those favourites are drawn from
FAVOURITE_SITES = 8  # online merchants a customer uses regularly
FAVOURITE_ATMS = 2
SECOND_CARD_SHARE = 0.3  # customers with two cards (drawn independently of demographics)
SECOND_CARD_USE = 0.25  # share of a two-card customer's spending on the second card
MEAN_DAILY_TRANSACTIONS = 2.2
# Zipf-like habit: the favourite ranked k is used about 1/(k+1)^0.9 as often as the first.
_RANK_WEIGHTS = 1.0 / np.arange(1, FAVOURITE_SHOPS + 1) ** 0.9
SHOP_RANK_CDF = np.cumsum(_RANK_WEIGHTS) / _RANK_WEIGHTS.sum()
_SITE_WEIGHTS = 1.0 / np.arange(1, FAVOURITE_SITES + 1) ** 0.9
SITE_RANK_CDF = np.cumsum(_SITE_WEIGHTS) / _SITE_WEIGHTS.sum()


def derived_rng(seed: int, *parts: int | str) -> np.random.Generator:
    """An independent random stream for (seed, parts): adding a stream never shifts another."""
    keys = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *keys]))


def mix64(values: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of values xor a seed-derived key: stable, random-looking 64-bit tokens."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) ^ np.uint64(zlib.crc32(f"tokens-{seed}".encode()) << 20)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass(eq=False)
class Bank:
    """Customers, cards, devices and terminals as parallel arrays (see module docstring)."""

    seed: int
    # customers
    birth_year: np.ndarray
    gender: np.ndarray  # index into catalog.GENDERS
    segment: np.ndarray  # index into catalog.SEGMENTS
    age_group: np.ndarray  # 0 young, 1 middle, 2 older: selects the hour-of-day habit
    home_city: np.ndarray
    home_lat: np.ndarray
    home_lon: np.ndarray
    daily_rate: np.ndarray  # mean transactions per day (independent of demographics)
    amount_scale: np.ndarray  # multiplies every category's typical amount
    channel_cdf: np.ndarray  # (customers, 3): cumulative share of pos, ecom, atm
    category_pref: np.ndarray  # (customers, categories): relative liking
    nearby_shops: np.ndarray  # (customers, NEARBY_SHOPS) terminal ids, nearest first
    favourite_shops: np.ndarray  # (customers, FAVOURITE_SHOPS) by habit rank
    favourite_sites: np.ndarray  # (customers, FAVOURITE_SITES) online merchant terminal ids
    favourite_atms: np.ndarray  # (customers, FAVOURITE_ATMS)
    device_count: np.ndarray  # 1 or 2 devices; device ids are 2*customer + k
    first_card: np.ndarray
    card_count: np.ndarray
    # cards
    card_customer: np.ndarray
    # terminals (sorted by city then kind; online merchants last)
    terminal_channel: np.ndarray
    terminal_mcc: np.ndarray  # index into catalog.CATEGORIES
    terminal_city: np.ndarray  # -1 for online merchants
    terminal_lat: np.ndarray  # NaN for online merchants
    terminal_lon: np.ndarray
    terminal_country: np.ndarray  # index into catalog.COUNTRIES
    city_shops: np.ndarray  # (cities, 2): [first, end) of each city's point-of-sale terminals
    city_atms: np.ndarray  # (cities, 2)
    sites_by_mcc: dict[int, np.ndarray]  # online merchants of each category

    @property
    def n_customers(self) -> int:
        return len(self.birth_year)

    @property
    def n_cards(self) -> int:
        return len(self.card_customer)

    @property
    def n_terminals(self) -> int:
        return len(self.terminal_channel)

    def ages(self, year: int) -> np.ndarray:
        return year - self.birth_year

    @classmethod
    def build(cls, customers: int, seed: int) -> Bank:
        """Draw a bank of `customers` customers; same arguments, same bank."""
        if customers < 1:
            raise ValueError(f"customers must be at least 1, got {customers}")
        return _build(customers, seed)

    # ---- string ids, shared by history files and live events --------------------------

    @functools.cached_property
    def customer_ids(self) -> pa.Array:
        return _names("cust", self.n_customers)

    @functools.cached_property
    def card_ids(self) -> pa.Array:
        return _names("card", self.n_cards)

    @functools.cached_property
    def terminal_ids(self) -> pa.Array:
        return _names("term", self.n_terminals)

    def device_ids(self, devices: np.ndarray) -> list[str | None]:
        """Device tokens; genuine and fraudsters' devices look alike. -1 means no device."""
        tokens = mix64(np.maximum(devices, 0), self.seed)
        return [device_token(t) if d >= 0 else None for d, t in zip(devices, tokens, strict=True)]


def device_token(token: np.uint64 | int) -> str:
    """'dev-' and 16 hex digits in groups of four: 'dev-3f9a-0c1e-77b2-d4e8'.

    The hyphens keep digit runs to four at most: unbroken, the hex of one token in a few
    thousand holds a 13-19 digit run, which the worker's edge would take for a card number
    whenever it passes the Luhn check (see stream.edge.pan)."""
    digits = f"{int(token):016x}"
    return f"dev-{digits[:4]}-{digits[4:8]}-{digits[8:12]}-{digits[12:]}"


def _names(prefix: str, count: int) -> pa.Array:
    width = max(5, len(str(count)))
    return pa.array([f"{prefix}-{i:0{width}d}" for i in range(1, count + 1)], pa.string())


def _build(n: int, seed: int) -> Bank:
    rng = derived_rng(seed, "bank")
    start_year = 2026
    # Ages 18-90, mean about 48.
    age = (18 + rng.beta(1.6, 2.2, n) * 72).astype(np.int64)
    birth_year = start_year - age
    gender = rng.integers(0, 2, n)
    segment = np.zeros(n, dtype=np.int64)  # mass
    segment[(age >= 40) & (rng.random(n) < 0.22)] = 1  # affluent
    segment[(age < 40) & (age >= 28) & (rng.random(n) < 0.10)] = 1
    segment[(age <= 25) & (rng.random(n) < 0.65)] = 2  # student
    segment[(age >= 65) & (rng.random(n) < 0.85)] = 3  # senior
    age_group = np.where(age < 30, 0, np.where(age >= 60, 2, 1))

    city_weights = np.array([c.weight for c in cat.DOMESTIC_CITIES])
    home_city = rng.choice(cat.N_DOMESTIC, n, p=city_weights / city_weights.sum())
    home_lat, home_lon = _scatter(rng, home_city)

    daily_rate = lognormal_with_mean(rng, MEAN_DAILY_TRANSACTIONS, 0.5, n)
    segment_scale = np.array([1.0, 1.9, 0.55, 0.85])[segment]
    amount_scale = segment_scale * rng.lognormal(0.0, 0.3, n)

    # Younger customers shop online more and withdraw cash less.
    online = np.clip(0.36 - 0.0045 * (age - 18) + rng.normal(0, 0.05, n), 0.04, 0.6)
    cash = np.clip(0.03 + 0.0012 * (age - 18) + rng.normal(0, 0.01, n), 0.01, 0.15)
    channel_cdf = np.stack([1.0 - online - cash, 1.0 - cash, np.ones(n)], axis=1)

    youth = np.clip((45.0 - age) / 27.0, -1.0, 1.0)
    pref = cat.MCC_WEIGHT * np.exp(np.outer(youth, cat.MCC_YOUTH_TILT))
    boosts = {2: ("5814", "5815", "4111"), 3: ("5912", "5411"), 1: ("5812", "7011", "4722")}
    for seg, codes in boosts.items():
        pref[np.ix_(segment == seg, cat.mcc_index(*codes))] *= 1.6
    pref *= rng.gamma(2.0, 0.5, pref.shape)

    terminals = _terminals(rng, n)
    nearby, favourites = _shops_near_home(rng, home_city, home_lat, home_lon, pref, terminals)
    atms = _atms_near_home(home_city, home_lat, home_lon, terminals)
    sites = _favourite_sites(rng, pref, terminals)

    card_count = 1 + (rng.random(n) < SECOND_CARD_SHARE)
    first_card = np.concatenate([[0], np.cumsum(card_count)[:-1]])
    card_customer = np.repeat(np.arange(n), card_count)

    return Bank(
        seed=seed,
        birth_year=birth_year,
        gender=gender,
        segment=segment,
        age_group=age_group,
        home_city=home_city,
        home_lat=np.round(home_lat, 4),
        home_lon=np.round(home_lon, 4),
        daily_rate=daily_rate,
        amount_scale=amount_scale,
        channel_cdf=channel_cdf,
        category_pref=pref,
        nearby_shops=nearby,
        favourite_shops=favourites,
        favourite_sites=sites,
        favourite_atms=atms,
        device_count=1 + (rng.random(n) < 0.4),
        first_card=first_card,
        card_count=card_count,
        card_customer=card_customer,
        **terminals,
    )


def lognormal_with_mean(
    rng: np.random.Generator, mean: float | np.ndarray, sigma: float, size: int
) -> np.ndarray:
    """Lognormal draws whose mean (not median) is `mean`."""
    return rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, size)


def _scatter(rng: np.random.Generator, city: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points spread around their city's centre."""
    lat0 = np.array([c.lat for c in cat.CITIES])[city]
    lon0 = np.array([c.lon for c in cat.CITIES])[city]
    radius = np.array([c.radius_deg for c in cat.CITIES])[city]
    lat = lat0 + rng.normal(0, 1, len(city)) * radius
    lon = lon0 + rng.normal(0, 1, len(city)) * radius / np.cos(np.radians(lat0))
    return lat, lon


class _Terminals(TypedDict):
    terminal_channel: np.ndarray
    terminal_mcc: np.ndarray
    terminal_city: np.ndarray
    terminal_lat: np.ndarray
    terminal_lon: np.ndarray
    terminal_country: np.ndarray
    city_shops: np.ndarray
    city_atms: np.ndarray
    sites_by_mcc: dict[int, np.ndarray]


def _terminals(rng: np.random.Generator, n_customers: int) -> _Terminals:
    """Shops and ATMs in every city (scaled to the bank's size), then online merchants."""
    pos_mccs = np.flatnonzero(cat.MCC_CHANNEL == cat.POS)
    ecom_mccs = np.flatnonzero(cat.MCC_CHANNEL == cat.ECOM)
    atm_mcc = int(np.flatnonzero(cat.MCC_CHANNEL == cat.ATM)[0])
    country_of = {code: i for i, code in enumerate(cat.COUNTRIES)}
    shops_total, atms_total = max(300, n_customers // 4), max(40, n_customers // 40)
    channel: list[int] = []
    mcc: list[int] = []
    city: list[int] = []
    country: list[int] = []
    city_shops = np.zeros((len(cat.CITIES), 2), dtype=np.int64)
    city_atms = np.zeros((len(cat.CITIES), 2), dtype=np.int64)
    domestic_weight = sum(c.weight for c in cat.DOMESTIC_CITIES)
    for index, place in enumerate(cat.CITIES):
        if index < cat.N_DOMESTIC:
            n_shops = max(NEARBY_SHOPS, round(shops_total * place.weight / domestic_weight))
            n_atms = max(5, round(atms_total * place.weight / domestic_weight))
        else:
            n_shops, n_atms = max(40, n_customers // 150), max(6, n_customers // 1500)
        weights = cat.MCC_WEIGHT[pos_mccs].copy()
        if index >= cat.N_DOMESTIC:  # travellers mostly see hotels and restaurants abroad
            weights[pos_mccs == cat.mcc_index("7011")[0]] *= 8
        first = len(channel)
        city_shops[index] = (first, first + n_shops)
        city_atms[index] = (first + n_shops, first + n_shops + n_atms)
        channel += [cat.POS] * n_shops + [cat.ATM] * n_atms
        mcc += list(rng.choice(pos_mccs, n_shops, p=weights / weights.sum())) + [atm_mcc] * n_atms
        city += [index] * (n_shops + n_atms)
        country += [country_of[place.country]] * (n_shops + n_atms)
    n_sites = max(150, n_customers // 25)
    site_weights = cat.MCC_WEIGHT[ecom_mccs] + 0.5  # every online category gets merchants
    site_mcc = rng.choice(ecom_mccs, n_sites, p=site_weights / site_weights.sum())
    site_mcc[: len(ecom_mccs)] = ecom_mccs  # at least one merchant per category
    abroad = rng.random(n_sites) < 0.3
    site_country = np.where(
        abroad,
        np.array([country_of[c] for c in cat.ECOM_FOREIGN_COUNTRIES])[
            rng.integers(0, len(cat.ECOM_FOREIGN_COUNTRIES), n_sites)
        ],
        country_of[cat.HOME_COUNTRY],
    )
    city_arr = np.array(city, dtype=np.int64)
    lat, lon = _scatter(rng, city_arr)
    n_sites_nan = np.full(n_sites, np.nan)
    terminal_mcc = np.concatenate([np.array(mcc, dtype=np.int64), site_mcc])
    first_site = len(channel)
    return _Terminals(
        terminal_channel=np.concatenate([channel, np.full(n_sites, cat.ECOM)]).astype(np.int64),
        terminal_mcc=terminal_mcc,
        terminal_city=np.concatenate([city_arr, np.full(n_sites, -1)]),
        terminal_lat=np.concatenate([np.round(lat, 5), n_sites_nan]),
        terminal_lon=np.concatenate([np.round(lon, 5), n_sites_nan]),
        terminal_country=np.concatenate([country, site_country]).astype(np.int64),
        city_shops=city_shops,
        city_atms=city_atms,
        sites_by_mcc={
            int(m): first_site + np.flatnonzero(site_mcc == m) for m in np.unique(site_mcc)
        },
    )


def _shops_near_home(
    rng: np.random.Generator,
    home_city: np.ndarray,
    home_lat: np.ndarray,
    home_lon: np.ndarray,
    pref: np.ndarray,
    terminals: _Terminals,
) -> tuple[np.ndarray, np.ndarray]:
    """The nearest shops of each customer, and favourites among them picked by taste and distance."""
    city_shops = terminals["city_shops"]
    t_lat = terminals["terminal_lat"]
    t_lon = terminals["terminal_lon"]
    t_mcc = terminals["terminal_mcc"]
    n = len(home_city)
    nearby = np.zeros((n, NEARBY_SHOPS), dtype=np.int64)
    favourites = np.zeros((n, FAVOURITE_SHOPS), dtype=np.int64)
    for city in range(cat.N_DOMESTIC):
        members = np.flatnonzero(home_city == city)
        shops = np.arange(*city_shops[city])
        for block in np.array_split(members, max(1, len(members) // 1000)):
            if len(block) == 0:
                continue
            dist = haversine_grid(home_lat[block], home_lon[block], t_lat[shops], t_lon[shops])
            nearest = np.argsort(dist, axis=1, kind="stable")[:, :NEARBY_SHOPS]
            near_dist = np.take_along_axis(dist, nearest, axis=1)
            near_ids = shops[nearest]
            score = np.log(pref[block[:, None], t_mcc[near_ids]]) - near_dist / 2.0
            score += rng.gumbel(size=score.shape)  # Gumbel top-k = weighted sampling
            top = np.argsort(-score, axis=1, kind="stable")[:, :FAVOURITE_SHOPS]
            nearby[block] = near_ids
            favourites[block] = np.take_along_axis(near_ids, top, axis=1)
    return nearby, favourites


def _atms_near_home(
    home_city: np.ndarray, home_lat: np.ndarray, home_lon: np.ndarray, terminals: _Terminals
) -> np.ndarray:
    city_atms = terminals["city_atms"]
    t_lat = terminals["terminal_lat"]
    t_lon = terminals["terminal_lon"]
    result = np.zeros((len(home_city), FAVOURITE_ATMS), dtype=np.int64)
    for city in range(cat.N_DOMESTIC):
        members = np.flatnonzero(home_city == city)
        atms = np.arange(*city_atms[city])
        for block in np.array_split(members, max(1, len(members) // 2000)):
            if len(block) == 0:
                continue
            dist = haversine_grid(home_lat[block], home_lon[block], t_lat[atms], t_lon[atms])
            result[block] = atms[np.argsort(dist, axis=1, kind="stable")[:, :FAVOURITE_ATMS]]
    return result


def _favourite_sites(
    rng: np.random.Generator, pref: np.ndarray, terminals: _Terminals
) -> np.ndarray:
    """Online merchants each customer uses, by taste and merchant popularity."""
    channel = terminals["terminal_channel"]
    t_mcc = terminals["terminal_mcc"]
    sites = np.flatnonzero(channel == cat.ECOM)
    popularity = np.log(1.0 / np.arange(1, len(sites) + 1) ** 0.7)
    popularity = popularity[rng.permutation(len(sites))]
    result = np.zeros((len(pref), FAVOURITE_SITES), dtype=np.int64)
    for block in np.array_split(np.arange(len(pref)), max(1, len(pref) // 2000)):
        score = np.log(pref[block][:, t_mcc[sites]]) + popularity
        score += rng.gumbel(size=score.shape)
        top = np.argpartition(-score, FAVOURITE_SITES, axis=1)[:, :FAVOURITE_SITES]
        order = np.argsort(-np.take_along_axis(score, top, axis=1), axis=1, kind="stable")
        result[block] = sites[np.take_along_axis(top, order, axis=1)]
    return result


def haversine_grid(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """(len(lat1), len(lat2)) distances in km."""
    return cat.haversine_km(lat1[:, None], lon1[:, None], lat2[None, :], lon2[None, :])
