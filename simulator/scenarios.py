"""Fraud scenarios. Each one starts incidents inside a time window and returns their rows.

An incident's rows may reach past the window (a skimmed card is abused days later); the
engine holds such rows back until their day. Victim cards are drawn uniformly over cards
(or, for a skimming terminal, over the customers who shop there), never by age or gender.
Some scenarios also add the genuine transaction that sets them up (the visit to the
skimming terminal, the purchase at home just before an impossible trip): those rows are
labelled genuine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from simulator import bank as bk
from simulator import catalog as cat
from simulator import genuine as gen
from simulator.bank import Bank
from simulator.rows import GENUINE, SCENARIO_NAMES, Rows, scenario_code

DAY = 86400
# Incidents per card per day (compromised_terminal: skimming terminals per card per day,
# each with 4-12 victims). Together about 0.6% of transactions are fraudulent.
RATES = {
    "card_testing": 0.00030,
    "account_takeover": 0.00035,
    "compromised_terminal": 0.00007,
    "high_amount": 0.00080,
    "impossible_travel": 0.00060,
    "mimicry": 0.00060,
    "atm_cashout": 0.00035,
}
DEFAULT_SCENARIOS = SCENARIO_NAMES[:6]  # atm_cashout is kept back for drift experiments
# Cities more than 1,000 km from every domestic city: reaching them within an hour is impossible.
IMPOSSIBLE_TRAVEL_MIN_KM = 1000.0
MAX_TRAVEL_GAP_S = 3600

Scenario = Callable[[Bank, int, int, np.random.Generator], Rows]


def _far_cities() -> np.ndarray:
    far = []
    for index, city in enumerate(cat.FOREIGN_CITIES, start=cat.N_DOMESTIC):
        nearest = min(
            float(cat.haversine_km(city.lat, city.lon, home.lat, home.lon))
            for home in cat.DOMESTIC_CITIES
        )
        if nearest > IMPOSSIBLE_TRAVEL_MIN_KM + 100:  # margin for shops away from the centre
            far.append(index)
    return np.array(far)


FAR_CITIES = _far_cities()
FOREIGN = np.arange(cat.N_DOMESTIC, len(cat.CITIES))


def incident_count(rng: np.random.Generator, bank: Bank, name: str, t0: int, t1: int) -> int:
    return int(rng.poisson(RATES[name] * bank.n_cards * (t1 - t0) / DAY))


def start_times(
    rng: np.random.Generator, n: int, t0: int, t1: int, hour_cdf: np.ndarray | None = None
) -> np.ndarray:
    """Incident starts in [t0, t1): by an hour-of-day rhythm when the window holds whole days."""
    days = (t1 - t0) // DAY
    if hour_cdf is None or days < 1:
        return t0 + rng.integers(0, max(1, t1 - t0), n)
    hours = gen.sample_hours(rng, np.broadcast_to(hour_cdf, (n, 24)))
    return t0 + rng.integers(0, days, n) * DAY + hours * 3600 + rng.integers(0, 3600, n)


def _spread(rng: np.random.Generator, sizes: np.ndarray, mean_gap_s: float) -> np.ndarray:
    """Seconds since its incident's first row for each row (first row 0, exponential gaps)."""
    gaps = rng.exponential(mean_gap_s, int(sizes.sum()))
    first = (np.cumsum(sizes) - sizes).astype(np.int64)
    gaps[first] = 0.0
    total = np.cumsum(gaps)
    return (total - np.repeat(total[first], sizes)).astype(np.int64)


def _fraud(name: str, count: int) -> np.ndarray:
    return np.full(count, scenario_code(name), dtype=np.int64)


def _sites(bank: Bank, mccs: np.ndarray) -> np.ndarray:
    return np.concatenate([bank.sites_by_mcc.get(int(m), np.zeros(0, np.int64)) for m in mccs])


def card_testing(bank: Bank, t0: int, t1: int, rng: np.random.Generator) -> Rows:
    """Bursts of 3-15 tiny online payments (0.50-5.00) tens of seconds apart, from an unknown device."""
    n = incident_count(rng, bank, "card_testing", t0, t1)
    card = rng.integers(0, bank.n_cards, n)
    sizes = 3 + np.minimum(rng.poisson(5, n), 12)
    incident = np.repeat(np.arange(n), sizes)
    time = np.repeat(start_times(rng, n, t0, t1), sizes) + _spread(rng, sizes, 45)
    pool = _sites(bank, cat.CARD_TESTING_MCCS)
    merchants = pool[rng.integers(0, len(pool), (2, n))]
    rows = len(incident)
    terminal = np.where(rng.random(rows) < 0.5, merchants[0, incident], merchants[1, incident])
    amount = np.round(rng.uniform(0.5, 5.0, rows), 2)
    amount[rng.random(rows) < 0.2] = 1.0
    device = gen.fresh_devices(rng, n)[incident]
    return Rows(time, card[incident], terminal, amount, device, _fraud("card_testing", rows))


def account_takeover(bank: Bank, t0: int, t1: int, rng: np.random.Generator) -> Rows:
    """2-6 large online purchases over a few hours from an unknown device, at (mostly foreign)
    merchants in resellable categories the customer rarely buys."""
    n = incident_count(rng, bank, "account_takeover", t0, t1)
    card = rng.integers(0, bank.n_cards, n)
    customer = bank.card_customer[card]
    sizes = 2 + rng.integers(0, 5, n)
    incident = np.repeat(np.arange(n), sizes)
    rows = len(incident)
    starts = start_times(rng, n, t0, t1, cat.HOUR_CDF[1, cat.ECOM])
    time = np.repeat(starts, sizes) + _spread(rng, sizes, 40 * 60)
    risky = cat.RISKY_ECOM_MCCS
    least_liked = risky[np.argmin(bank.category_pref[customer][:, risky], axis=1)]
    mcc = np.where(
        rng.random(rows) < 0.6, least_liked[incident], risky[rng.integers(0, len(risky), rows)]
    )
    terminal = np.empty(rows, dtype=np.int64)
    home = cat.COUNTRIES.index(cat.HOME_COUNTRY)
    for code in risky:
        rows_here = np.flatnonzero(mcc == code)
        sites = bank.sites_by_mcc[int(code)]
        abroad = sites[bank.terminal_country[sites] != home]
        choice = sites[rng.integers(0, len(sites), len(rows_here))]
        if len(abroad):
            go_abroad = rng.random(len(rows_here)) < 0.8
            choice[go_abroad] = abroad[rng.integers(0, len(abroad), int(go_abroad.sum()))]
        terminal[rows_here] = choice
    amount = bank.amount_scale[customer][incident] * bk.lognormal_with_mean(rng, 350.0, 0.5, rows)
    amount = np.round(np.clip(amount, 20.0, 20000.0), 2)
    device = gen.fresh_devices(rng, n)[incident]
    return Rows(time, card[incident], terminal, amount, device, _fraud("account_takeover", rows))


def compromised_terminal(bank: Bank, t0: int, t1: int, rng: np.random.Generator) -> Rows:
    """A skimmer sits in a local shop for 2-7 days; 4-12 people living nearby pay there, and
    1-10 days later their cloned cards are used in another city or abroad."""
    parts = [Rows.empty()]
    for start in start_times(
        rng, incident_count(rng, bank, "compromised_terminal", t0, t1), t0, t1
    ):
        # Victims are drawn among the people living near the shop, so who is hit depends on
        # where they live (independent of demographics), not on age-related tastes.
        first_customer = rng.integers(0, bank.n_customers)
        skimmer = bank.nearby_shops[first_customer, rng.integers(0, bk.NEARBY_SHOPS)]
        neighbours = np.flatnonzero((bank.nearby_shops == skimmer).any(axis=1))
        k = min(len(neighbours), int(rng.integers(4, 13)))
        victims = rng.choice(neighbours, k, replace=False)
        card = gen.pick_card(bank, victims, rng)
        skim_time = start + rng.integers(0, int(rng.integers(2, 8)) * DAY, k)
        night = (skim_time % DAY) < 7 * 3600
        skim_time[night] += 9 * 3600  # shops are shut at night
        skim_terminal = np.full(k, skimmer)
        parts.append(
            Rows(
                skim_time,
                card,
                skim_terminal,
                gen.typical_amount(bank, victims, skim_terminal, rng),
                np.full(k, -1),
                np.full(k, GENUINE),
            )
        )
        sizes = 1 + rng.integers(0, 4, k)
        victim = np.repeat(np.arange(k), sizes)
        rows = len(victim)
        delay = rng.integers(1 * DAY, 10 * DAY, k)
        time = np.repeat(skim_time + delay, sizes) + _spread(rng, sizes, 30 * 60)
        other_city = (bank.home_city[victims] + rng.integers(1, cat.N_DOMESTIC, k)) % cat.N_DOMESTIC
        city = np.where(rng.random(k) < 0.5, other_city, rng.choice(FOREIGN, k))[victim]
        use_atm = rng.random(rows) < 0.3
        terminal = np.where(
            use_atm,
            gen.random_terminal(rng, bank.city_atms, city),
            gen.random_terminal(rng, bank.city_shops, city),
        )
        amount = np.where(
            use_atm,
            20.0 * rng.integers(5, 21, rows),
            np.round(bk.lognormal_with_mean(rng, 200.0, 0.6, rows), 2),
        )
        parts.append(
            Rows(
                time,
                card[victim],
                terminal,
                np.maximum(amount, 1.0),
                np.full(rows, -1),
                _fraud("compromised_terminal", rows),
            )
        )
    return Rows.concat(parts)


def high_amount(bank: Bank, t0: int, t1: int, rng: np.random.Generator) -> Rows:
    """One or two purchases far above anything the card usually spends, in a shop or online."""
    n = incident_count(rng, bank, "high_amount", t0, t1)
    card = rng.integers(0, bank.n_cards, n)
    sizes = 1 + (rng.random(n) < 0.2)
    incident = np.repeat(np.arange(n), sizes)
    rows = len(incident)
    time = np.repeat(start_times(rng, n, t0, t1, cat.HOUR_CDF[1, cat.POS]), sizes)
    time += _spread(rng, sizes, 20 * 60)
    shops = np.flatnonzero(
        np.isin(bank.terminal_mcc, cat.HIGH_VALUE_POS_MCCS)
        & (bank.terminal_channel == cat.POS)
        & (bank.terminal_city < cat.N_DOMESTIC)
    )
    sites = _sites(bank, cat.mcc_index("5045", "4722", "4511"))
    online = (rng.random(n) < 0.5)[incident]
    terminal = np.where(
        online,
        sites[rng.integers(0, len(sites), rows)],
        shops[rng.integers(0, len(shops), rows)],
    )
    scale = bank.amount_scale[bank.card_customer[card]][incident]
    amount = np.clip(scale * bk.lognormal_with_mean(rng, 2000.0, 0.5, rows), 600.0, 25000.0)
    device = np.where(online, gen.fresh_devices(rng, n)[incident], -1)
    return Rows(
        time, card[incident], terminal, np.round(amount, 2), device, _fraud("high_amount", rows)
    )


def impossible_travel(bank: Bank, t0: int, t1: int, rng: np.random.Generator) -> Rows:
    """A purchase at home, then within 5-60 minutes the card is used in person > 1,000 km away."""
    n = incident_count(rng, bank, "impossible_travel", t0, t1)
    card = rng.integers(0, bank.n_cards, n)
    customer = bank.card_customer[card]
    anchor_time = start_times(rng, n, t0, t1, cat.HOUR_CDF[1, cat.POS])
    anchor_shop = gen.favourite_shop(bank, customer, rng)
    anchor = Rows(
        anchor_time,
        card,
        anchor_shop,
        gen.typical_amount(bank, customer, anchor_shop, rng),
        np.full(n, -1),
        np.full(n, GENUINE),
    )
    sizes = 1 + rng.integers(0, 3, n)
    incident = np.repeat(np.arange(n), sizes)
    rows = len(incident)
    first_gap = rng.integers(5 * 60, MAX_TRAVEL_GAP_S, n)
    time = np.repeat(anchor_time + first_gap, sizes) + _spread(rng, sizes, 20 * 60)
    city = FAR_CITIES[rng.integers(0, len(FAR_CITIES), n)][incident]
    use_atm = rng.random(rows) < 0.25
    terminal = np.where(
        use_atm,
        gen.random_terminal(rng, bank.city_atms, city),
        gen.random_terminal(rng, bank.city_shops, city),
    )
    amount = np.where(
        use_atm,
        20.0 * rng.integers(5, 21, rows),
        np.round(bk.lognormal_with_mean(rng, 250.0, 0.7, rows), 2),
    )
    fraud = Rows(
        time,
        card[incident],
        terminal,
        np.maximum(amount, 1.0),
        np.full(rows, -1),
        _fraud("impossible_travel", rows),
    )
    return Rows.concat([anchor, fraud])


def mimicry(bank: Bank, t0: int, t1: int, rng: np.random.Generator) -> Rows:
    """2-6 purchases over 1-4 days that copy the card's habits: its channels, hours, categories,
    shops in its neighbourhood it would like, its own sites, amounts a little above usual."""
    n = incident_count(rng, bank, "mimicry", t0, t1)
    card = rng.integers(0, bank.n_cards, n)
    sizes = 2 + rng.integers(0, 5, n)
    incident = np.repeat(np.arange(n), sizes)
    rows = len(incident)
    customer = bank.card_customer[card][incident]
    cdf = bank.channel_cdf[customer]
    u = rng.random(rows)
    online = (u >= cdf[:, 0]) & (u < cdf[:, 1])  # cash withdrawals become shop purchases
    channel = np.where(online, cat.ECOM, cat.POS)
    first_day = start_times(rng, n, t0, t1) // DAY * DAY
    day = rng.integers(0, np.repeat(1 + rng.integers(0, 4, n), sizes))
    hour = gen.sample_hours(rng, cat.HOUR_CDF[bank.age_group[customer], channel])
    time = np.repeat(first_day, sizes) + day * DAY + hour * 3600 + rng.integers(0, 3600, rows)
    # A shop in the neighbourhood picked by the customer's tastes, or one of their regulars.
    nearby = bank.nearby_shops[customer, : bk.NEARBY_SHOPS // 2]
    taste = np.log(bank.category_pref[customer[:, None], bank.terminal_mcc[nearby]])
    liked = nearby[np.arange(rows), np.argmax(taste + rng.gumbel(size=taste.shape), axis=1)]
    shop = np.where(rng.random(rows) < 0.6, liked, gen.favourite_shop(bank, customer, rng))
    terminal = np.where(online, gen.favourite_site(bank, customer, rng), shop)
    spoofed = (rng.random(n) < 0.5)[incident]
    device = np.where(
        spoofed, gen.own_device(bank, customer, rng), gen.fresh_devices(rng, n)[incident]
    )
    device = np.where(online, device, -1)
    factor = bk.lognormal_with_mean(rng, 1.3, 0.3, rows)
    amount = gen.typical_amount(bank, customer, terminal, rng, factor)
    return Rows(time, card[incident], terminal, amount, device, _fraud("mimicry", rows))


def atm_cashout(bank: Bank, t0: int, t1: int, rng: np.random.Generator) -> Rows:
    """Stolen card data on cloned cards: 3-8 maximal ATM withdrawals minutes apart, at night
    and mostly abroad."""
    n = incident_count(rng, bank, "atm_cashout", t0, t1)
    card = rng.integers(0, bank.n_cards, n)
    sizes = 3 + rng.integers(0, 6, n)
    incident = np.repeat(np.arange(n), sizes)
    rows = len(incident)
    time = np.repeat(start_times(rng, n, t0, t1, cat.NIGHT_HOURS_CDF), sizes)
    time += _spread(rng, sizes, 4 * 60)
    domestic = rng.integers(0, cat.N_DOMESTIC, n)
    city = np.where(rng.random(n) < 0.7, rng.choice(FOREIGN, n), domestic)[incident]
    terminal = gen.random_terminal(rng, bank.city_atms, city)
    amount = 20.0 * rng.integers(10, 26, rows)
    return Rows(
        time, card[incident], terminal, amount, np.full(rows, -1), _fraud("atm_cashout", rows)
    )


SCENARIOS: dict[str, Scenario] = {
    "card_testing": card_testing,
    "account_takeover": account_takeover,
    "compromised_terminal": compromised_terminal,
    "high_amount": high_amount,
    "impossible_travel": impossible_travel,
    "mimicry": mimicry,
    "atm_cashout": atm_cashout,
}
assert tuple(SCENARIOS) == SCENARIO_NAMES


def parse_scenarios(text: str | None) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b'); None or '' -> the default six. Unknown names raise ValueError."""
    if not text:
        return DEFAULT_SCENARIOS
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise ValueError(
            f"unknown scenario {', '.join(unknown) or repr(text)}; known: {', '.join(SCENARIOS)}"
        )
    return names
