"""A synthetic bank: customers, cards, terminals, genuine behaviour and fraud scenarios.

Public API (everything else is internal):

    from simulator import Bank, LiveTraffic, write_history

    bank = Bank.build(customers=5000, seed=1)          # same arguments, same bank
    manifest = write_history(Path("data/history"), customers=5000, days=60, seed=1)
    traffic = LiveTraffic(bank, seed=1, scenario="atm_cashout", scenario_at=30.0)
    events, truth = traffic.next_batch(500)            # simulated time, from 2026-03-02

- `write_history` writes transactions.{parquet,csv}, customers.{parquet,csv} and
  manifest.json (the contract is in rows.HISTORY_SCHEMA / rows.CUSTOMER_SCHEMA).
- `LiveTraffic.next_batch(n, now=None)` returns n `transactions` events (dicts that validate
  against schemas "transaction") and their ground truth {transaction_id, is_fraud,
  fraud_scenario}, in the same order. Each event's timestamp is its simulated time: the clock
  starts at `LiveTraffic(..., start=)` (default `defaults.LIVE_START`, the day after the
  default history) and runs as fast as events are asked for. `now` (default: the wall clock)
  only times `scenario_at` and names the default run id.
- `simulator.defaults`: the default bank (customers, seed) and timeline (history start and
  days, live start) shared by the commands.
- `simulator.malformed.malform(event, kind, rng)` turns a valid event into a malformed one
  (kinds: invalid_json, missing_field, bad_value, card_number). Malformed events have no
  ground-truth record.
- `simulator.produce.produce_live(...)` publishes live traffic to Kafka (`fraud produce`).

Scenarios: card_testing, account_takeover, compromised_terminal, high_amount,
impossible_travel, mimicry (history defaults) and atm_cashout (held back for drift).
"""

from simulator.bank import Bank
from simulator.history import write_history
from simulator.live import LiveTraffic
from simulator.malformed import MALFORMED_KINDS, malform
from simulator.produce import ProduceReport, produce_live

__all__ = [
    "MALFORMED_KINDS",
    "Bank",
    "LiveTraffic",
    "ProduceReport",
    "malform",
    "produce_live",
    "write_history",
]
