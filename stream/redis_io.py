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
    """A `redis.Redis` for the settings' URL and user; `options` as for redis.Redis."""
    import redis

    return redis.Redis.from_url(settings.redis_url, **{**redis_options(settings), **options})


def redis_address(settings: Settings) -> str:
    """The Redis URL for messages, its password (if any) masked."""
    return mask_url(settings.redis_url)
