"""`fraud demo`: the whole loop on one machine, in one command.

    services (ops/services.sh up, unless they already answer) -> topics -> a champion
    (`fraud train` when the registry has none) -> a feature store of its own (a fresh Redis
    prefix, warmed with the last days of the history) -> `fraud worker`, `fraud console` (a
    store of its own, a `demo` analyst with a password made for this run), `fraud analyst` and
    `fraud produce` as subprocesses -> a live view -> a summary with where to look next
    (with `keep_console`, the console keeps serving after it until Ctrl-C).

Live traffic continues the history's simulated timeline (from the day after it), so each run
gets a store of its own: a second run on the first run's store would replay days the cards
already lived through.

It stops what it started: its subprocesses always (also on Ctrl-C), the services only when it
was the one that started them. Subprocess output goes to <state>/demo/*.log.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from fraud.errors import FraudScorerError, ModelNotFoundError, ServiceUnavailableError
from fraud.secrets import mask_url
from fraud.settings import PROJECT_ROOT, Settings

T = TypeVar("T")
MLFLOW_UI = "mlflow ui --backend-store-uri sqlite:///.state/mlflow/mlflow.db"


@dataclass(frozen=True)
class DemoOptions:
    rate: float = 500.0
    duration_s: float = 60.0
    customers: int = 5000
    days: int = 60
    seed: int = 1
    scenario: str | None = None
    scenario_at: float | None = None
    web_port: int = 6066
    # On the transactions' (simulated) clock, which runs a few thousand times faster than the
    # wall clock in a demo: reviews come back within seconds, chargebacks within a minute.
    review_delay_s: float = 4 * 3600.0
    chargeback_delay_s: float = 86400.0
    drain_s: float = 60.0  # after the traffic ends, wait this long at most for lag 0
    keep_services: bool = False
    warm_days: float = 30.0
    console_port: int = 8080
    keep_console: bool = False


@dataclass(frozen=True)
class ConsoleLogin:
    url: str
    analyst: str
    password: str

    def __str__(self) -> str:
        return f"{self.url}  (log in as {self.analyst} / {self.password})"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def services_running(settings: Settings) -> bool:
    """Kafka (first bootstrap address) and Redis both accept connections."""
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
    redis = urlparse(settings.redis_url)
    return _answers(host or "127.0.0.1", int(port)) and _answers(
        redis.hostname or "127.0.0.1", redis.port or 6379
    )


def fraud(*args: str) -> list[str]:
    return [sys.executable, "-m", "fraud.cli", *args]


@contextmanager
def background(name: str, args: Sequence[str], logs: Path, env: dict[str, str]) -> Iterator[Any]:
    """A subprocess with its output in logs/<name>.log; SIGINT, then SIGTERM, then SIGKILL at
    exit (each project command ends cleanly on the first)."""
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            list(args), cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=log, stderr=log
        )
    try:
        yield process
    finally:
        for sig, wait_s in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if process.poll() is not None:
                break
            process.send_signal(sig)
            try:
                process.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_healthy(
    process: Any, url: str, log: Path, timeout_s: float = 180.0, what: str = "the worker"
) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceUnavailableError(
                f"{what} exited with code {process.returncode}; its log ({log}):\n{_tail(log)}"
            )
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServiceUnavailableError(f"{what} was not healthy within {timeout_s:.0f} s; see {log}")


def start_console(
    stack: ExitStack, settings: Settings, options: DemoOptions, logs: Path, prefix: str
) -> ConsoleLogin:
    """`fraud console` on a store of its own that starts at the topics' ends (this run's alerts
    only), and a `demo` analyst whose password is made for this run (no default password)."""
    password = secrets.token_urlsafe(9)
    analysts = logs / "console-analysts"
    logs.mkdir(parents=True, exist_ok=True)
    added = subprocess.run(
        fraud("console", "add-analyst", "demo", "--password-stdin", "--file", str(analysts)),
        cwd=PROJECT_ROOT,
        input=password + "\n",
        text=True,
        capture_output=True,
    )
    if added.returncode != 0:
        raise FraudScorerError(f"could not add the demo analyst: {added.stderr.strip()}")
    env = {
        "FRAUD_CONSOLE_PORT": str(options.console_port),
        "FRAUD_CONSOLE_ANALYSTS_FILE": str(analysts),
        "FRAUD_CONSOLE_STORE": str(logs / f"console-{prefix}.db"),
    }
    process = stack.enter_context(background("console", fraud("console", "--from-end"), logs, env))
    url = f"http://{settings.console.host}:{options.console_port}"
    wait_healthy(process, f"{url}/health", logs / "console.log", what="the console")
    return ConsoleLogin(url, "demo", password)


def hold_console(console: Any, login: ConsoleLogin) -> None:
    """Keep what the demo started (the console with it) until Ctrl-C."""
    console.print(f"\n[bold]The analyst console stays up:[/] {login}\nCtrl-C to stop.")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("stopping")


def ensure_champion(settings: Settings, options: DemoOptions, console: Any) -> str:
    """The champion's version, training (and on first use simulating) one when there is none."""
    from stream.scoring import CHAMPION, open_store, version_at_alias

    found = version_at_alias(open_store(settings), settings.model_name, CHAMPION)
    if found is None:
        console.print(
            f"[bold]no champion in {mask_url(settings.tracking_uri)}: running `fraud train` "
            f"({options.customers:,} customers, {options.days} days of history if missing)[/]"
        )
        command = fraud(
            "train",
            *("--sim-customers", str(options.customers), "--sim-days", str(options.days)),
            *("--sim-seed", str(options.seed)),
        )
        result = subprocess.run(command, cwd=PROJECT_ROOT)
        if result.returncode != 0:
            raise FraudScorerError(f"`fraud train` failed with exit code {result.returncode}")
        found = version_at_alias(open_store(settings), settings.model_name, CHAMPION)
    if found is None:
        raise ModelNotFoundError(
            "`fraud train` registered a challenger but its gates failed, so there is no champion; "
            "read model_card.md, then `fraud promote --force --reason TEXT` if you accept it"
        )
    return str(found.version)


def start_at_the_end(settings: Settings) -> int:
    """Commit the scorer group's offsets on `transactions` at the topic's end, so that the
    demo's worker starts with this run's traffic; returns how many records that skips. (The
    group must have no running member: the demo starts its worker after this.)"""
    from confluent_kafka import TopicPartition

    from stream.kafka_io import make_consumer

    topic = settings.topics.transactions
    consumer = make_consumer(settings.kafka, settings.consumer_group)
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.topics[topic].partitions)]
        ends, skipped = [], 0
        for committed in _retrying(lambda: consumer.committed(partitions, timeout=10)):
            low, high = consumer.get_watermark_offsets(committed, timeout=10)
            skipped += high - (committed.offset if committed.offset >= 0 else low)
            ends.append(TopicPartition(topic, committed.partition, high))
        if skipped:
            _retrying(lambda: consumer.commit(offsets=ends, asynchronous=False))
        return skipped
    finally:
        consumer.close()


def _retrying(call: Callable[[], T], timeout_s: float = 60.0) -> T:
    """`call()`, again while Kafka answers with a retriable error: a fresh broker creates its
    offsets topic on the first group request and answers NOT_COORDINATOR until it is ready."""
    from confluent_kafka import KafkaError, KafkaException

    not_yet = {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0]
            retry = error.retriable() or error.code() in not_yet
            if not retry or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def warm_own_store(settings: Settings, options: DemoOptions, console: Any) -> str:
    """A fresh Redis prefix for this run, loaded with the last `warm_days` of the history."""
    from stream.features import warm_store
    from training.data import read_history

    prefix = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    history = settings.data_dir / "history" / "transactions.parquet"
    if not history.is_file():
        console.print(f"[yellow]no history at {history}: live cards start without a past[/]")
        return prefix
    with console.status(f"warming the feature store with {options.warm_days:g} days of history"):
        report = warm_store(
            settings.model_copy(update={"redis_prefix": prefix}),
            read_history(history),
            options.warm_days,
        )
    console.print(
        f"feature store (prefix {prefix}): {report.transactions:,} transactions and "
        f"{report.labels:,} fraud labels from the history in {report.seconds:.0f} s"
    )
    return prefix


def _clear_store(settings: Settings, prefix: str) -> None:
    import redis

    from stream.features import RedisFeatureStore
    from stream.redis_io import connect_redis

    try:
        RedisFeatureStore(connect_redis(settings), prefix).clear()
    except redis.RedisError:
        pass  # the services are stopping too; the keys expire anyway


def run_demo(settings: Settings, options: DemoOptions, console: Any) -> dict[str, Any]:
    """Everything in the module docstring; returns the summary's numbers."""
    logs = settings.state_dir / "demo"
    with ExitStack() as stack:
        started_services = False
        if not services_running(settings):
            console.print("[bold]starting the services (ops/services.sh up)[/]")
            subprocess.run([str(PROJECT_ROOT / "ops" / "services.sh"), "up"], check=True)
            started_services = True
            if not options.keep_services:
                stack.callback(_services_down, console)
        from stream.kafka_io import ensure_topics

        ensure_topics(settings.kafka, settings.topics.all(), settings.topic_partitions)
        champion = ensure_champion(settings, options, console)
        skipped = start_at_the_end(settings)
        if skipped:
            console.print(
                f"{skipped:,} transactions left in {settings.topics.transactions} by earlier "
                f"runs are skipped: the demo's worker decides only this run's traffic"
            )
        prefix = warm_own_store(settings, options, console)
        stack.callback(_clear_store, settings, prefix)
        env = {"FRAUD_WEB_PORT": str(options.web_port), "FRAUD_REDIS_PREFIX": prefix}
        worker = stack.enter_context(background("worker", fraud("worker"), logs, env))
        url = f"http://{settings.web_host}:{options.web_port}"
        with console.status(f"starting the worker (champion v{champion}) ..."):
            wait_healthy(worker, f"{url}/health", logs / "worker.log")
        with console.status("starting the analyst console ..."):
            login = start_console(stack, settings, options, logs, prefix)
        console.print(f"[bold]analyst console:[/] {login}")
        analyst = fraud(
            "analyst",
            *("--review-delay", str(options.review_delay_s)),
            *("--chargeback-delay", str(options.chargeback_delay_s)),
            *("--daily-capacity", "0", "--seed", str(options.seed)),
        )
        stack.enter_context(background("analyst", analyst, logs, {}))
        produce = fraud(
            "produce",
            *("--rate", f"{options.rate:g}", "--duration", f"{options.duration_s:g}"),
            *("--customers", str(options.customers), "--seed", str(options.seed)),
        )
        if options.scenario:
            produce += ["--scenario", options.scenario]
            if options.scenario_at is not None:
                produce += ["--scenario-at", f"{options.scenario_at:g}"]
        producer = stack.enter_context(background("produce", produce, logs, {}))
        stats = watch(settings, options, console, url, producer, login)
        summary = _summary(stats, options, champion, url, logs, started_services)
        summary["console"] = str(login)
        if options.keep_console:
            print_summary(console, summary, settings)
            hold_console(console, login)
    return summary


def _services_down(console: Any) -> None:
    console.print("stopping the services this demo started (ops/services.sh down)")
    subprocess.run([str(PROJECT_ROOT / "ops" / "services.sh"), "down"], check=False)


def watch(
    settings: Settings,
    options: DemoOptions,
    console: Any,
    url: str,
    producer: Any,
    login: ConsoleLogin,
) -> Any:
    """The live view until the traffic is sent and decided (lag 0) or the drain time is over."""
    import httpx
    from rich.live import Live

    from demo.view import LiveStats, live_table, parse_metrics
    from stream.monitoring import LagMonitor

    stats = LiveStats()
    monitor = LagMonitor(settings.kafka, settings.consumer_group, timeout_s=5.0)
    began = time.monotonic()
    sent_at: float | None = None
    last_lag = 0.0
    try:
        with Live(console=console, auto_refresh=False) as live:
            while True:
                now = time.monotonic()
                try:
                    stats.update(parse_metrics(httpx.get(f"{url}/metrics", timeout=2).text, now))
                except httpx.HTTPError:
                    pass  # a slow scrape on a busy machine: the next one catches up
                if now - last_lag >= 2.0:
                    last_lag = now
                    try:
                        group = monitor.poll()
                        lag_by_topic(stats, group, settings.topics.transactions)
                    except Exception:  # noqa: BLE001 - lag is shown when it can be read
                        stats.lag_status = "unknown"
                if producer.poll() is not None and sent_at is None:
                    sent_at = now
                traffic = (
                    f"{options.rate:,.0f}/s for {options.duration_s:g} s"
                    + (f", {options.scenario}" if options.scenario else "")
                    + ("" if sent_at is None else " (sent; waiting for decisions and labels)")
                )
                live.update(
                    live_table(
                        stats,
                        now - began,
                        traffic,
                        f"fraud demo (Ctrl-C to stop)\nconsole {login}",
                    ),
                    refresh=True,
                )
                if sent_at is not None and _settled(stats, options, now - sent_at):
                    break
                time.sleep(1.0)
        console.print()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping what the demo started[/]")
    finally:
        monitor.close()
    return stats


def lag_by_topic(stats: Any, group: Any, transactions: str) -> None:
    """The scorer's lag on transactions (what "decided" waits for) apart from its lag on
    feedback (labels for the terminal-risk aggregates, which may trail)."""
    scored = [p for p in group.partitions if p.topic == transactions]
    stats.lag = sum(p.lag or 0 for p in scored)
    stats.lag_seconds = max((p.lag_seconds or 0.0 for p in scored), default=0.0)
    stats.feedback_lag = sum(p.lag or 0 for p in group.partitions if p.topic != transactions)
    stats.lag_status = group.status.name


def _settled(stats: Any, options: DemoOptions, since_sent_s: float) -> bool:
    """Every event decided (or the drain time over), and the last approved frauds' chargebacks
    due: stopping the analysts earlier would leave those frauds unlabelled for `fraud retrain`."""
    if since_sent_s > options.drain_s:
        return True
    return stats.lag == 0 and since_sent_s >= options.chargeback_delay_s + 2.0


def _summary(
    stats: Any, options: DemoOptions, champion: str, url: str, logs: Path, started: bool
) -> dict[str, Any]:
    latest = stats.latest
    return {
        "decided": None if latest is None else latest.decided,
        "tiers": None if latest is None else latest.tiers,
        "alert_rate": stats.alert_rate,
        "peak_rate": stats.peak_rate,
        "latency_p50_s": stats.latency(0.5, overall=True),
        "latency_p99_s": stats.latency(0.99, overall=True),
        "lag": stats.lag,
        "feedback_lag": stats.feedback_lag,
        "model_version": champion if latest is None else latest.model_version,
        "metrics_url": f"{url}/metrics",
        "logs": str(logs),
        "started_services": started,
    }


def print_summary(console: Any, summary: dict[str, Any], settings: Settings) -> None:
    from rich.table import Table

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{1000 * value:,.1f} ms"

    tiers = summary["tiers"] or {}
    table = Table(title="fraud demo: summary")
    table.add_column("item")
    table.add_column("value")
    for item, value in (
        (
            "decided",
            f"{summary['decided'] or 0:,.0f} ({', '.join(f'{k} {v:,.0f}' for k, v in tiers.items())})",
        ),
        ("alert rate", "n/a" if summary["alert_rate"] is None else f"{summary['alert_rate']:.2%}"),
        ("peak decisions / s", f"{summary['peak_rate']:,.0f}"),
        ("latency p50 / p99", f"{ms(summary['latency_p50_s'])} / {ms(summary['latency_p99_s'])}"),
        (
            "lag at the end",
            "n/a"
            if summary["lag"] is None
            else f"{summary['lag']:,} transactions, {summary['feedback_lag'] or 0:,} labels",
        ),
        ("model", f"{settings.model_name} v{summary['model_version']}"),
        ("analyst console", summary.get("console", "n/a")),
        ("logs", summary["logs"]),
    ):
        table.add_row(item, value)
    console.print(table)
    console.print(
        "\n[bold]Where to look next[/]\n"
        f"  MLflow runs, registry and model versions:  {MLFLOW_UI}  (then http://127.0.0.1:5000)\n"
        f"  worker metrics (while a worker runs, `make worker`):  {summary['metrics_url']}\n"
        "  the model card of the champion:  model_card.md\n"
        "  the analyst console on its own (after `fraud console add-analyst ID`):  make console\n"
        "  consumer lag:  fraud lag   |   live precision/recall and drift:  fraud monitor\n"
        "  fold the analysts' labels back in:  make retrain LABEL_DELAY_SECONDS=86400"
    )
