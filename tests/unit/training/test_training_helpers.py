"""Small synthetic data for the training tests (no simulator, no feature replay needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.data import FeatureSpec

SPEC = FeatureSpec(
    names=("amount", "amount_to_card_mean", "card_tx_count_1h", "channel_code"),
    categorical=("channel_code",),
    protected=("age", "gender"),
)


def synthetic_labelled(days: int = 40, per_day: int = 600, seed: int = 0) -> pd.DataFrame:
    """Context columns + SPEC features; fraud driven by the amount ratio and velocity."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    start = pd.Timestamp("2024-03-01", tz="UTC")
    seconds = np.sort(rng.uniform(0, days * 86400, n))
    timestamps = (start + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us, UTC]")
    ratio = rng.lognormal(0, 0.6, n)
    velocity = rng.poisson(1.0, n).astype(float)
    channel = rng.integers(0, 3, n).astype(float)
    logit = -7.5 + 1.6 * np.log(ratio) * 2 + 0.8 * velocity + 0.9 * (channel == 1)
    is_fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    scenarios = np.where(is_fraud == 1, np.where(velocity > 2, "card_testing", "high_amount"), None)
    amount = np.round(ratio * rng.lognormal(3.5, 0.5, n), 2)
    customers = rng.integers(0, 400, n)
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i:07d}" for i in range(n)],
            "timestamp": timestamps,
            "card_id": [f"card{c:04d}" for c in customers],
            "customer_id": [f"cust{c:04d}" for c in customers],
            "is_fraud": is_fraud,
            "fraud_scenario": pd.array(scenarios, dtype="string"),
            "amount": amount,
            "amount_to_card_mean": ratio,
            "card_tx_count_1h": velocity,
            "channel_code": channel,
        }
    )


def synthetic_customers(count: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"cust{c:04d}" for c in range(count)],
            "birth_year": rng.integers(1940, 2004, count),
            "gender": rng.choice(["F", "M"], count),
        }
    )
