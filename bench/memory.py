"""Redis memory of the feature state: `python -m bench.memory [--customers N --days D]`.

Warms the worker's Redis store (REDIS_URL; a private key prefix, deleted afterwards) with D
simulated days of live traffic of an N-customer bank, then asks Redis `MEMORY USAGE` of every
key the store wrote and prints the bytes per key kind (card histories, terminal sets,
transaction records, label hashes), per card and per terminal, and the used_memory growth.
A warmed store holds about a month per card: the 30-day card window and the transaction
records kept for label delay + 28 days + 1. Not a test: figures depend on the Redis version.
"""

from __future__ import annotations

import argparse
import re
import time
import uuid
from collections import defaultdict
from datetime import timedelta

from fraud.settings import Settings
from simulator import Bank, LiveTraffic
from stream.features import RedisFeatureStore
from stream.redis_io import connect_redis

BATCH = 500
_SHARD_TAG = re.compile(r"^\{[^}]*\}:")


def key_kind(key: str, prefix: str) -> str:
    """'card', 'term', 'tx', 'tlabel' ...: the first part of a key after the store's prefix
    and the shard's hash tag (`<prefix>{c3}:card:<card>` -> 'card')."""
    return _SHARD_TAG.sub("", key[len(prefix) :], count=1).split(":", 1)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)

    settings = Settings()
    client = connect_redis(settings, socket_timeout=30)
    prefix = f"memory-{uuid.uuid4().hex[:8]}"
    store = RedisFeatureStore(client, prefix, label_delay=timedelta(days=settings.label_delay_days))
    traffic = LiveTraffic(Bank.build(args.customers, args.seed), args.seed)
    before = int(client.info("memory")["used_memory"])
    began, events, first_day = time.perf_counter(), 0, None
    cards: set[str] = set()
    terminals: set[str] = set()
    try:
        while True:
            batch, _truth = traffic.next_batch(BATCH)
            first_day = first_day or batch[0]["timestamp"][:10]
            store.process_batch(batch)
            events += len(batch)
            cards.update(e["card_id"] for e in batch)
            terminals.update(e["terminal_id"] for e in batch)
            elapsed_days = (
                time.mktime(time.strptime(batch[-1]["timestamp"][:10], "%Y-%m-%d"))
                - time.mktime(time.strptime(first_day, "%Y-%m-%d"))
            ) / 86400
            if elapsed_days >= args.days:
                break
        warmed_s = time.perf_counter() - began
        after = int(client.info("memory")["used_memory"])
        sizes: dict[str, list[int]] = defaultdict(list)
        for key in client.scan_iter(match=f"{store.key_prefix}*", count=1000):
            name = key.decode()
            sizes[key_kind(name, store.key_prefix)].append(int(client.memory_usage(name) or 0))
    finally:
        store.clear()
    print(
        f"{events:,} events over {args.days:.0f} simulated days ({warmed_s:.0f} s): "
        f"{len(cards):,} cards, {len(terminals):,} terminals"
    )
    for kind, values in sorted(sizes.items()):
        print(
            f"  {kind:8s} {len(values):>9,} keys  {sum(values) / 2**20:8.1f} MiB  "
            f"{sum(values) / len(values):8.0f} B/key"
        )
    card_bytes = sum(sizes.get("card", [])) + sum(sizes.get("tx", []))
    terminal_bytes = sum(sizes.get("term", [])) + sum(sizes.get("tlabel", []))
    print(
        f"per card (history + its transaction records): {card_bytes / len(cards):,.0f} B; "
        f"per terminal (transaction set + labels): {terminal_bytes / len(terminals):,.0f} B; "
        f"used_memory grew {(after - before) / 2**20:,.1f} MiB"
    )


if __name__ == "__main__":
    main()
