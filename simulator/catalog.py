"""Fixed facts of the simulated world: places, merchant categories and time-of-day habits.

Nothing here is random; `bank.Bank.build` draws a concrete bank from these facts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOME_COUNTRY = "FR"
CURRENCY = "EUR"
CHANNELS = ("pos", "ecom", "atm")
POS, ECOM, ATM = 0, 1, 2
SEGMENTS = ("mass", "affluent", "student", "senior")
GENDERS = ("F", "M")


@dataclass(frozen=True)
class City:
    name: str
    country: str
    lat: float
    lon: float
    weight: float  # share of domestic customers, or popularity as a travel destination
    radius_deg: float = 0.08  # spread of homes and shops around the centre (~9 km)


DOMESTIC_CITIES = (
    City("Paris", "FR", 48.8566, 2.3522, 0.34, 0.12),
    City("Lyon", "FR", 45.7640, 4.8357, 0.13),
    City("Marseille", "FR", 43.2965, 5.3698, 0.12),
    City("Toulouse", "FR", 43.6047, 1.4442, 0.09),
    City("Lille", "FR", 50.6292, 3.0573, 0.09),
    City("Bordeaux", "FR", 44.8378, -0.5792, 0.08),
    City("Nantes", "FR", 47.2184, -1.5536, 0.08),
    City("Strasbourg", "FR", 48.5734, 7.7521, 0.07),
)

# Weight = how often genuine customers travel there; far ones are rarer.
FOREIGN_CITIES = (
    City("Madrid", "ES", 40.4168, -3.7038, 0.12),
    City("Barcelona", "ES", 41.3874, 2.1686, 0.12),
    City("Rome", "IT", 41.9028, 12.4964, 0.10),
    City("Berlin", "DE", 52.5200, 13.4050, 0.09),
    City("London", "GB", 51.5072, -0.1276, 0.12),
    City("Lisbon", "PT", 38.7223, -9.1393, 0.08),
    City("Amsterdam", "NL", 52.3676, 4.9041, 0.08),
    City("Brussels", "BE", 50.8503, 4.3517, 0.08),
    City("New York", "US", 40.7128, -74.0060, 0.05),
    City("Marrakech", "MA", 31.6295, -7.9811, 0.05),
    City("Dubai", "AE", 25.2048, 55.2708, 0.03),
    City("Bangkok", "TH", 13.7563, 100.5018, 0.03),
    City("Lagos", "NG", 6.5244, 3.3792, 0.01),
    City("Sao Paulo", "BR", -23.5505, -46.6333, 0.02),
    City("Bucharest", "RO", 44.4268, 26.1025, 0.02),
)
CITIES = DOMESTIC_CITIES + FOREIGN_CITIES
N_DOMESTIC = len(DOMESTIC_CITIES)

# Countries online merchants are registered in (besides the home country).
ECOM_FOREIGN_COUNTRIES = ("IE", "LU", "NL", "DE", "GB", "US", "CN", "LT")
COUNTRIES = tuple(
    sorted({HOME_COUNTRY, *ECOM_FOREIGN_COUNTRIES, *(c.country for c in FOREIGN_CITIES)})
)


@dataclass(frozen=True)
class Category:
    mcc: str
    name: str
    channel: int  # POS, ECOM or ATM: where terminals of this category live
    mean_amount: float  # EUR, for a "mass" customer
    weight: float  # how common among merchants and purchases
    youth_tilt: float  # > 0: more popular with young customers, < 0: with older ones


CATEGORIES = (
    Category("5411", "grocery", POS, 38.0, 30.0, -0.2),
    Category("5499", "convenience food", POS, 14.0, 8.0, 0.3),
    Category("5812", "restaurants", POS, 34.0, 10.0, 0.1),
    Category("5814", "fast food", POS, 11.0, 8.0, 0.9),
    Category("5813", "bars", POS, 22.0, 4.0, 0.8),
    Category("5541", "fuel", POS, 55.0, 8.0, -0.1),
    Category("5912", "pharmacy", POS, 21.0, 6.0, -1.0),
    Category("5651", "clothing", POS, 65.0, 5.0, 0.3),
    Category("5311", "department store", POS, 75.0, 4.0, -0.4),
    Category("5732", "electronics", POS, 180.0, 1.5, 0.3),
    Category("5944", "jewellery", POS, 250.0, 0.4, -0.3),
    Category("4111", "commuter transport", POS, 9.0, 6.0, 0.6),
    Category("7832", "cinema", POS, 18.0, 1.5, 0.6),
    Category("5977", "cosmetics", POS, 30.0, 2.0, 0.1),
    Category("5200", "home supply", POS, 70.0, 2.5, -0.5),
    Category("7011", "hotels", POS, 160.0, 0.6, -0.1),
    Category("5999", "online retail", ECOM, 48.0, 10.0, 0.3),
    Category("5815", "digital goods", ECOM, 9.0, 8.0, 1.0),
    Category("5045", "computers online", ECOM, 220.0, 2.0, 0.4),
    Category("5691", "fashion online", ECOM, 60.0, 5.0, 0.5),
    Category("4121", "ride hailing", ECOM, 21.0, 4.0, 0.9),
    Category("5811", "food delivery", ECOM, 24.0, 5.0, 0.9),
    Category("4722", "travel agency", ECOM, 380.0, 1.0, -0.1),
    Category("4511", "airlines", ECOM, 260.0, 1.0, 0.0),
    Category("4900", "utilities", ECOM, 70.0, 2.0, -0.6),
    Category("5947", "gift cards", ECOM, 40.0, 0.5, 0.0),
    Category("4829", "money transfer", ECOM, 150.0, 0.4, 0.0),
    Category("6011", "cash withdrawal", ATM, 80.0, 1.0, 0.0),
)
MCC_CODES = tuple(c.mcc for c in CATEGORIES)
MCC_MEAN_AMOUNT = np.array([c.mean_amount for c in CATEGORIES])
MCC_CHANNEL = np.array([c.channel for c in CATEGORIES])
MCC_WEIGHT = np.array([c.weight for c in CATEGORIES])
MCC_YOUTH_TILT = np.array([c.youth_tilt for c in CATEGORIES])


def mcc_index(*codes: str) -> np.ndarray:
    """Positions of the given codes in CATEGORIES."""
    return np.array([MCC_CODES.index(code) for code in codes])


# Categories fraudsters like because goods resell easily or money moves out.
RISKY_ECOM_MCCS = mcc_index("5045", "5947", "4829", "4722")
HIGH_VALUE_POS_MCCS = mcc_index("5732", "5944", "5311")
CARD_TESTING_MCCS = mcc_index("5815", "5999", "5947")

# Relative activity per hour of day (index 0 = 00:00-00:59, UTC).
_POS_HOURS = [
    0.2, 0.1, 0.05, 0.05, 0.05, 0.2, 0.6, 1.5, 2.5, 3.0, 3.5, 4.5,
    6.0, 5.5, 4.0, 4.0, 4.5, 6.0, 7.0, 6.0, 4.0, 2.5, 1.5, 0.7,
]  # fmt: skip
_ECOM_HOURS = [
    1.5, 0.8, 0.5, 0.3, 0.3, 0.4, 0.8, 1.5, 2.5, 3.0, 3.5, 3.5,
    4.5, 4.0, 3.5, 3.5, 3.5, 4.0, 4.5, 5.5, 6.5, 6.5, 5.0, 3.0,
]  # fmt: skip
_ATM_HOURS = [
    0.3, 0.2, 0.1, 0.1, 0.1, 0.3, 1.0, 2.5, 4.0, 4.5, 5.0, 5.5,
    6.0, 5.5, 4.5, 4.5, 5.0, 5.5, 5.5, 4.5, 3.0, 2.0, 1.2, 0.6,
]  # fmt: skip
AGE_GROUPS = 3  # young (< 30), middle, older (>= 60)


def _hour_cdfs() -> np.ndarray:
    """CDF over 24 hours for each (age group, channel): the young shop an hour later, the old earlier."""
    shifts = (1, 0, -1)
    profiles = (_POS_HOURS, _ECOM_HOURS, _ATM_HOURS)
    table = np.empty((AGE_GROUPS, len(CHANNELS), 24))
    for group, shift in enumerate(shifts):
        for channel, profile in enumerate(profiles):
            weights = np.roll(np.asarray(profile, dtype=float), shift)
            table[group, channel] = np.cumsum(weights) / weights.sum()
    return table


HOUR_CDF = _hour_cdfs()
NIGHT_HOURS_CDF = np.cumsum([3, 4, 4, 3, 2, 1] + [0] * 18) / 17.0

# Monday..Sunday: more shopping on Friday/Saturday, shops mostly shut on Sunday, when people shop online.
WEEKDAY_ACTIVITY = np.array([0.97, 0.98, 1.0, 1.02, 1.1, 1.13, 0.8])
WEEKDAY_ONLINE_BOOST = np.array([1.0, 1.0, 1.0, 1.0, 0.95, 1.1, 1.45])

EARTH_RADIUS_KM = 6371.0


def haversine_km(
    lat1: np.ndarray | float,
    lon1: np.ndarray | float,
    lat2: np.ndarray | float,
    lon2: np.ndarray | float,
) -> np.ndarray:
    """Great-circle distance in km, element-wise."""
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    dphi = phi2 - phi1
    dlam = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlam / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))
