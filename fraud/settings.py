"""Process settings: one object, built in `main` and passed down.

Values come from environment variables prefixed `FRAUD_` plus the standard names
`KAFKA_BOOTSTRAP_SERVERS`, `REDIS_URL` and `MLFLOW_TRACKING_URI`. Nothing here touches
the network or the disk.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class TopicNames(BaseSettings):
    """Kafka topic names (env: FRAUD_TOPIC_<NAME>)."""

    model_config = SettingsConfigDict(env_prefix="FRAUD_TOPIC_", extra="forbid")

    transactions: str = "transactions"
    decisions: str = "decisions"
    alerts: str = "alerts"
    feedback: str = "feedback"
    dead_letter: str = "transactions.dlq"
    truth: str = "transactions.truth"

    def all(self) -> list[str]:
        return [
            self.transactions,
            self.decisions,
            self.alerts,
            self.feedback,
            self.dead_letter,
            self.truth,
        ]


class ConsoleSettings(BaseSettings):
    """The analyst console (env: FRAUD_CONSOLE_<NAME>); paths default to <state>/console/."""

    model_config = SettingsConfigDict(env_prefix="FRAUD_CONSOLE_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # SQLite file the console keeps alerts, decisions, labels, claims and sessions in.
    store: Path | None = None
    # Analysts who may log in: one `analyst_id:password_hash` per line (`fraud console
    # add-analyst`); `analysts` takes the same entries, separated by commas or new lines, and
    # wins over the file for an id in both.
    analysts_file: Path | None = None
    analysts: SecretStr | None = None
    # Send the session cookie over HTTPS only: set it when a TLS proxy fronts the console.
    secure_cookie: bool = False
    session_hours: float = Field(default=12.0, gt=0)
    # An opened alert stays with its analyst this long unless they give a verdict or release it.
    claim_minutes: float = Field(default=15.0, gt=0)


class Settings(BaseSettings):
    """Everything a process needs to find its services and its state."""

    model_config = SettingsConfigDict(env_prefix="FRAUD_", extra="forbid")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "FRAUD_KAFKA_BOOTSTRAP_SERVERS"),
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "FRAUD_REDIS_URL"),
    )
    state_dir: Path = PROJECT_ROOT / ".state"
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "FRAUD_MLFLOW_TRACKING_URI"),
    )
    topic_partitions: int = Field(default=4, ge=1)
    topics: TopicNames = Field(default_factory=TopicNames)
    consumer_group: str = "fraud-scorer"
    # Prefix of every Redis key the stream writes (aggregates, label index).
    redis_prefix: str = "fraud"
    # Key of the keyed hash that replaces card numbers (PAN) at the edge.
    pan_hash_key: SecretStr = SecretStr("change-me-in-production")
    model_name: str = "fraud-detector"
    model_alias: str = "champion"
    # How often the worker asks the registry whether the alias moved (hot reload).
    model_poll_interval_s: float = Field(default=5.0, gt=0)
    # Micro-batches: up to `batch_size` events, or whatever arrived within `batch_within_s`.
    batch_size: int = Field(default=500, ge=1)
    batch_within_s: float = Field(default=0.02, gt=0)
    # A worker that stops heart-beating (killed, frozen) loses its partitions to the others after
    # this long; Faust's own default (60 s) would leave them undecided for a minute. The broker
    # accepts 6-300 s (group.min/max.session.timeout.ms).
    session_timeout_s: float = Field(default=10.0, ge=6, le=300)
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    # After a failed Redis round trip, decide with default aggregates for this long before retrying.
    redis_retry_s: float = Field(default=1.0, ge=0)
    # Transactions decided during a Redis outage wait in memory (at most this many, the oldest
    # dropped first) and are folded into the aggregates once Redis answers again.
    redis_backlog_max: int = Field(default=200_000, ge=0)
    label_delay_days: int = Field(default=7, ge=0)
    # The edge's limits on any input record (transactions and feedback); beyond them a record is
    # dead-lettered with the limit's reason (too_large, too_deep, too_many_fields, too_long).
    edge_max_bytes: int = Field(default=64 * 1024, ge=1024)
    edge_max_depth: int = Field(default=8, ge=2)
    edge_max_fields: int = Field(default=256, ge=16)
    edge_max_string: int = Field(default=4096, ge=128)
    # An event (or a label) dated more than this ahead of the clock (the worker's, or the
    # record's broker timestamp) or of its partition's stream is dead-lettered (event_time).
    event_time_max_lead_s: float = Field(default=86_400.0, gt=0)
    # Analyst ids allowed to send `source: chargeback` feedback (the bank's chargeback feed).
    chargeback_analysts: list[str] = Field(default_factory=lambda: ["chargeback"])
    # /health reports not ready when a batch's outputs have been in flight this long (a
    # partition that cannot make progress).
    stalled_batch_s: float = Field(default=60.0, gt=0)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the standard variable, else a SQLite file in the state folder."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.state_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.state_dir / "mlflow" / "artifacts"

    @property
    def console_store(self) -> Path:
        return self.console.store or self.state_dir / "console" / "console.db"

    @property
    def console_analysts_file(self) -> Path:
        return self.console.analysts_file or self.state_dir / "console" / "analysts"

    @property
    def data_dir(self) -> Path:
        return PROJECT_ROOT / "data"
