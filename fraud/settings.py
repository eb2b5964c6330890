"""Process settings: one object, built in `main` and passed down.

Values come from environment variables prefixed `FRAUD_` plus the standard names
`KAFKA_BOOTSTRAP_SERVERS`, `REDIS_URL` and `MLFLOW_TRACKING_URI`. Nothing here touches
the network or the disk.

Secrets are `SecretStr` (masked when printed). Every Kafka client is built from one
`KafkaConnection` (`settings.kafka`: brokers plus how to authenticate), every Redis client from
the URL plus the Redis user settings. With FRAUD_ENV=production, reading a secret that still
holds its public default (or a service without a password) raises ConfigError naming the
setting, so the process stops before it serves anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraud.errors import ConfigError
from fraud.secrets import DEV_MODEL_PUBLIC_KEY, DEV_MODEL_SIGNING_KEY, DEV_PAN_HASH_KEY

PROJECT_ROOT = Path(__file__).resolve().parent.parent

KafkaProtocol = Literal["PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]


@dataclass(frozen=True)
class KafkaConnection:
    """Where the brokers are and how a client proves who it is. Every Kafka client of the
    project (confluent producers, consumers and admin clients, the Faust app) is built from
    one, so a process speaks to Kafka with one identity."""

    bootstrap: str
    security_protocol: KafkaProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None

    @property
    def secure(self) -> bool:
        return self.security_protocol == "SASL_SSL"

    def describe(self) -> str:
        """For messages: the brokers, the protocol and the user, never the password."""
        if not self.secure:
            return f"{self.bootstrap} (PLAINTEXT)"
        return f"{self.bootstrap} ({self.security_protocol} as {self.username})"


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
    # Prefix of every Redis key the stream writes (aggregates, transaction records, labels).
    redis_prefix: str = "fraud"
    # Key of the keyed hash that replaces card numbers (PAN) at the edge, and its id, which
    # every token carries (`tok_<id>_...`) so that the key can be rotated.
    pan_hash_key: SecretStr = SecretStr(DEV_PAN_HASH_KEY)
    pan_key_id: str = Field(default="k1", pattern=r"^[a-z0-9]{1,8}$")
    # "production" refuses public default secrets and password-less services (FRAUD_ENV).
    env: Literal["development", "production"] = "development"
    # Kafka authentication (SASL_SSL: SCRAM user and password, CA of the brokers' certificates).
    kafka_security_protocol: KafkaProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_ca_file: Path | None = None
    # REDIS_URL names one node of a Redis Cluster (the others are discovered from it).
    redis_cluster: bool = False
    # Redis ACL user; with a rediss:// URL, TLS verified against this CA file.
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_ca_file: Path | None = None
    # Model signing (Ed25519, base64): training signs with the private key, every loader
    # verifies with the trusted public keys (comma-separated; several during a rotation).
    # Unset: the public development key pair (refused in production).
    model_signing_key: SecretStr | None = None
    model_trusted_keys: str | None = None
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
    # Card states a worker remembers from its own writes, so that its next batch of the card
    # does not read them from Redis again (checked on write; 0 turns it off).
    card_cache_mb: int = Field(default=64, ge=0)
    # The feature store in a process of its own (stream/worker/store_process.py): the worker's
    # event loop and the store's Python then run on two cores instead of sharing one GIL
    # (README, Benchmarks). False: the store in the worker's own store lane thread.
    store_process: bool = True
    # Batches in flight at once on the transactions route (stream/worker/route.py): at 2, batch
    # N+1 is aggregated while batch N is scored and delivered; at 3, the store may start batch
    # N+2 before batch N's outputs are on the broker (outputs and commits stay in order).
    pipeline_depth: int = Field(default=3, ge=1, le=8)
    # How long the broker may hold a fetch that finds no new records. aiokafka sends one fetch
    # at a time per broker and leaves out partitions whose fetched records the worker has not
    # taken yet; when the worker runs behind, a fetch can carry only quiet partitions (the
    # feedback topic, an idle partition), and no new transaction is fetched until it returns.
    # Faust's own 1,500 ms made that a stall of up to 1.5 s (README, Benchmarks).
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=1500)
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

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        # ConfigError is not a ValueError: pydantic lets it through as it is, and the CLI
        # prints it as one line.
        if self.kafka_security_protocol == "SASL_SSL" and not (
            self.kafka_username and self.kafka_password
        ):
            raise ConfigError(
                "FRAUD_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs FRAUD_KAFKA_USERNAME and "
                "FRAUD_KAFKA_PASSWORD (for the local secure stack: `ops/services.sh as ROLE ...`)"
            )
        return self

    # Each secret is read through one accessor below. In production (FRAUD_ENV=production)
    # the accessor refuses a public default or a missing password, naming the setting, so a
    # process refuses to start as soon as it builds the client or key that needs the secret,
    # and a process that never uses a secret (a producer and the PAN key) need not hold it.

    def _refuse(self, problem: str) -> None:
        if self.env == "production":
            raise ConfigError(f"production mode (FRAUD_ENV=production) refuses to start: {problem}")

    @property
    def kafka(self) -> KafkaConnection:
        """What every Kafka client of this process is built from."""
        if self.kafka_security_protocol == "PLAINTEXT":
            self._refuse(
                "FRAUD_KAFKA_SECURITY_PROTOCOL is PLAINTEXT (no authentication); use SASL_SSL "
                "with FRAUD_KAFKA_USERNAME, FRAUD_KAFKA_PASSWORD and FRAUD_KAFKA_CA_FILE"
            )
        return KafkaConnection(
            bootstrap=self.kafka_bootstrap_servers,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_username,
            password=self.kafka_password,
            ca_file=self.kafka_ca_file,
        )

    def pan_secret(self) -> bytes:
        """The PAN hashing key."""
        key = self.pan_hash_key.get_secret_value()
        if key == DEV_PAN_HASH_KEY or len(key) < 32:
            self._refuse(
                "FRAUD_PAN_HASH_KEY is the public default or shorter than 32 characters; "
                "set a random key (`openssl rand -hex 32`)"
            )
        return key.encode()

    def redis_credentials(self) -> tuple[str | None, str | None]:
        """(user, password) of the Redis ACL user; (None, None) for an open Redis."""
        if self.redis_password is None:
            self._refuse(
                "FRAUD_REDIS_PASSWORD is unset; give the process a Redis ACL user "
                "(FRAUD_REDIS_USERNAME, FRAUD_REDIS_PASSWORD)"
            )
            return self.redis_username, None
        return self.redis_username, self.redis_password.get_secret_value()

    def signing_key(self) -> str:
        """The model signing key (base64 Ed25519 seed): the configured one, else development's."""
        if self.model_signing_key is None:
            self._refuse(
                "FRAUD_MODEL_SIGNING_KEY is unset: only the holder of the signing key may "
                "register a model; create a key pair with `fraud model-keys`"
            )
            return DEV_MODEL_SIGNING_KEY
        key = self.model_signing_key.get_secret_value()
        if key == DEV_MODEL_SIGNING_KEY:
            self._refuse(
                "FRAUD_MODEL_SIGNING_KEY is the public development key; "
                "create a key pair with `fraud model-keys`"
            )
        return key

    def trusted_model_keys(self) -> list[str]:
        """Public keys (base64) a model version may be signed with."""
        keys = [key.strip() for key in (self.model_trusted_keys or "").split(",") if key.strip()]
        if not keys or DEV_MODEL_PUBLIC_KEY in keys:
            self._refuse(
                "FRAUD_MODEL_TRUSTED_KEYS is unset or trusts the public development key; "
                "set it to the public key printed by `fraud model-keys`"
            )
        return keys or [DEV_MODEL_PUBLIC_KEY]

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
