"""Secrets: production mode refuses every public default and password-less service, naming the
setting; development keeps working without configuration; secrets never show when printed."""

from __future__ import annotations

import base64
import hashlib

import pytest

from fraud.errors import ConfigError
from fraud.secrets import (
    DEV_MODEL_PUBLIC_KEY,
    DEV_MODEL_SIGNING_KEY,
    DEV_PAN_HASH_KEY,
    mask_secrets,
    mask_url,
)
from fraud.settings import Settings

STRONG = "0123456789abcdef" * 4
PUBLIC = base64.b64encode(b"\x01" * 32).decode()


def secure(**overrides: object) -> dict[str, object]:
    """Everything production asks for, with `overrides` on top."""
    values: dict[str, object] = {
        "env": "production",
        "pan_hash_key": STRONG,
        "model_signing_key": base64.b64encode(b"\x02" * 32).decode(),
        "model_trusted_keys": PUBLIC,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_username": "scorer",
        "kafka_password": "kafka-pass",
        "redis_username": "scorer",
        "redis_password": "redis-pass",
    }
    values.update(overrides)
    return values


def test_development_runs_on_the_public_defaults(monkeypatch):
    for name in ("FRAUD_ENV", "FRAUD_PAN_HASH_KEY", "FRAUD_MODEL_TRUSTED_KEYS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.env == "development"
    assert settings.pan_secret() == DEV_PAN_HASH_KEY.encode()
    assert settings.signing_key() == DEV_MODEL_SIGNING_KEY
    assert settings.trusted_model_keys() == [DEV_MODEL_PUBLIC_KEY]
    assert settings.kafka.security_protocol == "PLAINTEXT"
    assert settings.redis_credentials() == (None, None)


def test_production_with_every_secret_set_reads_them():
    settings = Settings(**secure())
    assert settings.pan_secret() == STRONG.encode()
    assert settings.trusted_model_keys() == [PUBLIC]
    assert settings.redis_credentials() == ("scorer", "redis-pass")
    assert settings.kafka.username == "scorer" and settings.kafka.secure


@pytest.mark.parametrize(
    ("overrides", "read", "setting"),
    [
        ({"pan_hash_key": DEV_PAN_HASH_KEY}, "pan_secret", "FRAUD_PAN_HASH_KEY"),
        ({"pan_hash_key": "short"}, "pan_secret", "FRAUD_PAN_HASH_KEY"),
        ({"model_signing_key": None}, "signing_key", "FRAUD_MODEL_SIGNING_KEY"),
        ({"model_signing_key": DEV_MODEL_SIGNING_KEY}, "signing_key", "FRAUD_MODEL_SIGNING_KEY"),
        ({"model_trusted_keys": None}, "trusted_model_keys", "FRAUD_MODEL_TRUSTED_KEYS"),
        (
            {"model_trusted_keys": f"{PUBLIC},{DEV_MODEL_PUBLIC_KEY}"},
            "trusted_model_keys",
            "FRAUD_MODEL_TRUSTED_KEYS",
        ),
        ({"redis_password": None}, "redis_credentials", "FRAUD_REDIS_PASSWORD"),
        (
            {"kafka_security_protocol": "PLAINTEXT"},
            "kafka",
            "FRAUD_KAFKA_SECURITY_PROTOCOL",
        ),
    ],
)
def test_production_refuses_a_default_secret_naming_the_setting(overrides, read, setting):
    settings = Settings(**secure(**overrides))
    with pytest.raises(ConfigError, match=setting) as refused:
        value = getattr(settings, read)
        value() if callable(value) else value
    assert "FRAUD_ENV=production" in str(refused.value)


def test_sasl_without_credentials_is_refused_when_the_settings_are_built():
    with pytest.raises(ConfigError, match="FRAUD_KAFKA_USERNAME and FRAUD_KAFKA_PASSWORD"):
        Settings(kafka_security_protocol="SASL_SSL", kafka_username="scorer")


def test_secrets_never_show_when_the_settings_are_printed():
    settings = Settings(**secure())
    shown = f"{settings!r} {settings} {settings.kafka!r} {settings.kafka.describe()}"
    for secret in (STRONG, "kafka-pass", "redis-pass"):
        assert secret not in shown
    assert settings.kafka.describe().endswith("(SASL_SSL as scorer)")


def test_the_development_key_pair_is_what_its_comment_says():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    seed = hashlib.sha256(
        b"fraud-scorer development model signing key (public, never for production)"
    ).digest()
    assert base64.b64decode(DEV_MODEL_SIGNING_KEY) == seed
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert base64.b64decode(DEV_MODEL_PUBLIC_KEY) == raw


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://scorer:s3cr3t@10.0.0.5:6380/0", "rediss://scorer:***@10.0.0.5:6380/0"),
        ("redis://:s3cr3t@host/0", "redis://:***@host/0"),
        ("http://trainer@mlflow:5000", "http://trainer@mlflow:5000"),
        ("redis://host/0?password=s3cr3t&db=1", "redis://host/0?password=***&db=1"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_urls_are_printed_with_their_password_masked(url, masked):
    assert mask_url(url) == masked


def test_secrets_are_masked_in_free_text():
    assert mask_secrets("auth failed for s3cr3t at s3cr3t", ["s3cr3t", None, ""]) == (
        "auth failed for *** at ***"
    )


def test_a_command_in_production_with_a_default_secret_exits_2_naming_it(
    monkeypatch, capsys, tmp_path
):
    from fraud.cli import run

    monkeypatch.setenv("FRAUD_ENV", "production")
    monkeypatch.setenv("FRAUD_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("FRAUD_KAFKA_SECURITY_PROTOCOL", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run(["topics"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "FRAUD_KAFKA_SECURITY_PROTOCOL is PLAINTEXT" in err and "Traceback" not in err
