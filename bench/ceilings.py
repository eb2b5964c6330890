"""The ceilings measured in the same run as the worker, each a `BaselineResult`.

- Faust consume-only (`bench/faust_agent.py`): the worker's old per-event consumption pattern
  and no other work, over the pre-loaded topic: what Faust's per-event path allows;
- the bare loop (`bench/baselines.py`): confluent-kafka consume -> produce, no work, over the
  pre-loaded topic: what the transport allows;
- HTTP (`bench/baselines.py`): the lab's one-request-per-transaction design with the same model.
A ceiling that fails is reported as an error of the run; the worker's figures stand.
"""

from __future__ import annotations

import time

import orjson

from bench import kafka
from bench.phase import Phase
from bench.results import (
    BARE_KAFKA_LOOP,
    HTTP_PER_REQUEST,
    BaselineResult,
    consume_only_result,
    latency_summary,
    per_1000,
    rate,
)
from bench.worker import WorkerProcess, free_port
from fraud.errors import FraudScorerError

HTTP_WARMUP_REQUESTS = 200
AGENT_START_TIMEOUT_S = 120.0


def faust_consume_only(phase: Phase, topics: kafka.BenchTopics) -> BaselineResult:
    """The consume-only agent in a consumer group of its own over the pre-loaded topic, until
    every event is acknowledged or --saturation-timeout after its first batch."""
    context, options = phase.context, phase.options
    result_path = context.run_dir / "faust-consume-only.json"
    port = free_port()
    env = context.worker_env(phase.champion.state_dir, topics, "f", port)
    command = ("bench.faust_agent", "--expect", str(options.events), "--result", str(result_path))
    log_path = context.run_dir / "faust-consume-only.log"
    with WorkerProcess(env, port, log_path, command=command) as agent:
        began = time.monotonic()
        while True:
            meter = orjson.loads(result_path.read_bytes()) if result_path.is_file() else {}
            if meter.get("complete"):
                break
            first = meter.get("first_batch_at")
            if first is not None and time.time() - first > options.saturation_timeout_s:
                break
            if first is None and time.monotonic() - began > AGENT_START_TIMEOUT_S:
                raise FraudScorerError(
                    f"the Faust consume-only agent consumed nothing in {AGENT_START_TIMEOUT_S:.0f} "
                    f"s:\n{agent.log_tail()}"
                )
            if agent.popen.poll() is not None and not result_path.is_file():
                raise FraudScorerError(
                    f"the Faust consume-only agent exited with {agent.popen.returncode}:\n"
                    + agent.log_tail()
                )
            time.sleep(0.25)
    return consume_only_result(
        meter,
        f"Faust agent: noack_take({context.settings.batch_size}, within="
        f"{context.settings.batch_within_s:g}), orjson.loads per event, every event acked "
        "after its batch, no other work, same topic",
    )


def bare_loop(phase: Phase, topics: kafka.BenchTopics) -> BaselineResult:
    from bench.baselines import bare_consume_produce

    sink = f"bench-{phase.context.run_id}-bare-out"
    phase.context.topics.create([sink])
    loop = bare_consume_produce(
        phase.context.connection, topics.transactions, sink, phase.options.events
    )
    return BaselineResult(
        name=BARE_KAFKA_LOOP,
        description="confluent-kafka consume + produce unchanged, no work, same topic",
        count=loop.count,
        seconds=round(loop.seconds, 3),
        per_s=round(rate(loop.count, loop.seconds), 1),
        cpu_s_per_1000=per_1000(loop.cpu_s, loop.count),
    )


def http_per_request(phase: Phase) -> BaselineResult:
    from bench.baselines import HttpServer, drive_http

    options, run_dir = phase.options, phase.context.run_dir
    events = kafka.generate_events(phase.traffic, options.http_requests + HTTP_WARMUP_REQUESTS)
    bodies = [orjson.dumps(event) for event in events]
    port = free_port()
    log_path = run_dir / "http-baseline.log"
    server = HttpServer(
        phase.champion.state_dir,
        port,
        options.http_clients,
        options.http_features,
        log_path,
        options.env,
    )
    try:
        server.wait_ready()
        http_run = drive_http(
            port, bodies, options.http_clients, options.http_seconds, HTTP_WARMUP_REQUESTS
        )
    finally:
        server.stop()
    if http_run.errors:
        raise FraudScorerError(
            f"HTTP baseline: {http_run.errors} of {http_run.count} requests failed; see {log_path}"
        )
    return BaselineResult(
        name=HTTP_PER_REQUEST,
        description=(
            f"Flask, 1 tx per request, gunicorn gthread 1 process, {options.http_clients} "
            f"keep-alive clients, features: {options.http_features}"
        ),
        count=http_run.count,
        seconds=round(http_run.seconds, 3),
        per_s=round(rate(http_run.count, http_run.seconds), 1),
        latency_ms=latency_summary(http_run.latencies_ms),
        details={"features": options.http_features, "clients": options.http_clients},
    )
