"""The Faust ceiling: a consume-only agent with the worker's old per-event consumption pattern.

    python -m bench.faust_agent --expect 100000 --result agent.json   # settings from FRAUD_*

A plain `faust.App` configured as the worker's app was before it took whole fetched batches
(same broker settings, consumer group from FRAUD_CONSUMER_GROUP, raw serializers, commit every
second), with one agent on the transactions topic doing nothing but what Faust's per-event
path needs: `stream.noack_take(batch_size, within=batch_within_s)`, `orjson.loads` of every
event, and every event acknowledged after its batch. Whatever rate it reaches is what Faust's
per-event machinery allows before any work of ours.

It counts as the worker is counted (`bench.results.consume_only_result`): from the end of its
first batch to the end of its last, so start-up and the group join are left out. The meter is
written to --result (atomically) at most once a second and when --expect events are done;
then the agent stops itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import orjson

WRITE_EVERY_S = 1.0


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class AgentMeter:
    """Events done, and the instant and process CPU at the end of the first and last batch."""

    expect: int
    events: int = 0
    batches: int = 0
    first_batch_events: int = 0
    first_batch_at: float | None = None  # epoch seconds
    last_batch_at: float | None = None
    cpu_s_at_first: float | None = None
    cpu_s_at_last: float | None = None
    complete: bool = False

    def batch_done(self, size: int, now: float, cpu_s: float) -> bool:
        """Count a finished batch; True once `expect` events are done."""
        self.events += size
        self.batches += 1
        if self.first_batch_at is None:
            self.first_batch_at, self.first_batch_events, self.cpu_s_at_first = now, size, cpu_s
        self.last_batch_at, self.cpu_s_at_last = now, cpu_s
        self.complete = self.events >= self.expect
        return self.complete

    def write(self, path: Path) -> None:
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(orjson.dumps(asdict(self)))
        partial.replace(path)


def create_agent_app(settings: Any, meter: AgentMeter, result: Path) -> Any:
    """The consume-only app on `settings` (a fraud.settings.Settings)."""
    import faust

    from stream.worker import faust_app_options

    app = faust.App(settings.consumer_group, **faust_app_options(settings))
    topic = app.topic(settings.topics.transactions, key_serializer="raw", value_serializer="raw")
    written_at = 0.0

    @app.agent(topic, name="consume-only")
    async def consume(stream: Any) -> None:
        nonlocal written_at
        batches = cast(faust.Stream, stream).noack_take(
            settings.batch_size, within=settings.batch_within_s
        )
        async for events in batches:
            for event in events:
                orjson.loads(event.value)
            for event in events:
                await stream.ack(event)
            if meter.complete:  # stopping: the result is written
                continue
            done = meter.batch_done(len(events), time.time(), _cpu_s())
            if done or time.monotonic() - written_at >= WRITE_EVERY_S:
                meter.write(result)
                written_at = time.monotonic()
            if done:
                loop = asyncio.get_running_loop()
                loop.call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect", type=int, required=True, help="Events to consume, then stop.")
    parser.add_argument("--result", type=Path, required=True, help="Where the meter is written.")
    args = parser.parse_args(argv)
    from faust.worker import Worker

    from fraud.settings import Settings

    settings = Settings()
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    meter = AgentMeter(args.expect)
    app = create_agent_app(settings, meter, args.result)
    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
