"""Redis clients, all built from the settings: the URL plus the Redis user.

    client = connect_redis(settings, socket_timeout=0.5)

The password comes from FRAUD_REDIS_PASSWORD (a SecretStr), not from the URL, so that the URL
can be printed; `rediss://` URLs verify the server's certificate against FRAUD_REDIS_CA_FILE
(or the system's CAs). No connection is opened until the first command.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fraud.secrets import mask_url
from fraud.settings import Settings


def redis_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments that authenticate a client (and verify TLS for rediss://)."""
    options: dict[str, Any] = {}
    username, password = settings.redis_credentials()  # refuses none in production
    if username:
        options["username"] = username
    if password is not None:
        options["password"] = password
    if urlsplit(settings.redis_url).scheme == "rediss":
        options["ssl_cert_reqs"] = "required"
        options["ssl_check_hostname"] = True
        if settings.redis_ca_file is not None:
            options["ssl_ca_certs"] = str(settings.redis_ca_file)
    return options


def connect_redis(settings: Settings, **options: Any) -> Any:
    """A `redis.Redis` for the settings' URL and user, or with FRAUD_REDIS_CLUSTER=1 a
    `redis.cluster.RedisCluster` that discovers the cluster from that URL; `options` as for the
    client. A cluster client retries a node's loss with backoff (a replica takes over within a
    few seconds); what still fails reaches the caller as redis.RedisError."""
    import redis

    merged = {**redis_options(settings), **options}
    if settings.redis_cluster:
        from redis.backoff import ExponentialWithJitterBackoff
        from redis.cluster import RedisCluster
        from redis.retry import Retry

        merged.pop("health_check_interval", None)
        merged.setdefault(
            "retry", Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=3)
        )
        return RedisCluster.from_url(settings.redis_url, **merged)
    return redis.Redis.from_url(settings.redis_url, **merged)


def redis_address(settings: Settings) -> str:
    """The Redis URL for messages, its password (if any) masked."""
    return mask_url(settings.redis_url)
