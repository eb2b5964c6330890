"""Signing model versions: training's half of model integrity (`stream.scoring.integrity`).

    private, public = generate_key_pair()             # `fraud model-keys`
    key = sign_version(settings, client, name, "7")   # at registration, by `log_training_run`

A version is signed with the Ed25519 key of FRAUD_MODEL_SIGNING_KEY, which only training holds;
workers and `fraud promote` hold the public keys (FRAUD_MODEL_TRUSTED_KEYS). The manifest is
built from the files as the store holds them (downloaded, not from a local copy), so what is
signed is what a loader will read. Re-signing (`fraud sign`) verifies first: a key rotation
never blesses a changed artifact; only `--adopt` signs a version that has no signature yet.
"""

from __future__ import annotations

import base64
import getpass
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraud.errors import ModelIntegrityError
from fraud.settings import Settings
from stream.scoring import (
    KEY_ID_TAG,
    MANIFEST_TAG,
    SIGNATURE_TAG,
    build_manifest,
    canonical,
    download_version,
    file_digests,
    key_id,
    verify_files,
    verify_signature,
)
from training.governance.registry import set_version_tags


def generate_key_pair() -> tuple[str, str]:
    """A new Ed25519 key pair as base64: (private seed for training, public key for loaders)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(seed).decode(), base64.b64encode(public).decode()


def public_key_of(signing_key: str) -> str:
    """The public key (base64) of a signing key (base64 seed)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = _private_key(signing_key).public_key()
    return base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _private_key(signing_key: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        seed = base64.b64decode(signing_key.strip(), validate=True)
        return Ed25519PrivateKey.from_private_bytes(seed)
    except ValueError as exc:
        raise ModelIntegrityError(
            "FRAUD_MODEL_SIGNING_KEY must be a 32-byte Ed25519 seed in base64 "
            "(`fraud model-keys` makes a pair)"
        ) from exc


def sign_version(settings: Settings, client: Any, name: str, version: str) -> str:
    """Sign a version just registered (its files as stored, its deciding tags); returns the
    signing key's id."""
    signing_key = settings.signing_key()  # refused first: nothing is read without a key
    tags = dict(client.get_model_version(name, version).tags)
    if tags.get(MANIFEST_TAG) or tags.get(SIGNATURE_TAG):
        raise ModelIntegrityError(f"v{version} is signed already; use `fraud sign` to re-sign it")
    return _sign(settings, signing_key, client, name, version, tags, previous=None)


def resign_version(
    settings: Settings, client: Any, name: str, version: str, adopt: bool = False
) -> str:
    """`fraud sign`: re-sign a signed version with the configured key once it verifies under a
    trusted key (key rotation), or with `adopt` sign a version that has no signature yet (one
    registered before signing existed), recording who adopted it and when."""
    signing_key = settings.signing_key()
    tags = dict(client.get_model_version(name, version).tags)
    signed = bool(tags.get(MANIFEST_TAG) or tags.get(SIGNATURE_TAG))
    if signed and adopt:
        raise ModelIntegrityError(
            f"v{version} is signed already; re-sign it without --adopt (it must verify first)"
        )
    if not signed and not adopt:
        raise ModelIntegrityError(
            f"v{version} has no signature; sign it with --adopt once you know where it came from"
        )
    previous = verify_signature(name, tags, settings.trusted_model_keys()) if signed else None
    extra = {}
    if adopt:
        extra["integrity.adopted"] = (
            f"{datetime.now(UTC).isoformat(timespec='seconds')} by {getpass.getuser()}"
        )
    return _sign(settings, signing_key, client, name, version, tags, previous, extra)


def _sign(
    settings: Settings,
    signing_key: str,
    client: Any,
    name: str,
    version: str,
    tags: dict[str, str],
    previous: dict[str, Any] | None,
    extra: dict[str, str] | None = None,
) -> str:
    with tempfile.TemporaryDirectory(prefix="sign-") as tmp:
        folder = download_version(settings, name, version, Path(tmp))
        if previous is not None:
            verify_files(previous, folder)
        manifest = build_manifest(name, file_digests(folder), tags)
    signed = signature_tags(manifest, signing_key)
    set_version_tags(client, name, version, {**signed, **(extra or {})})
    return signed[KEY_ID_TAG]


def signature_tags(manifest: dict[str, Any], signing_key: str) -> dict[str, str]:
    """The version tags that carry a manifest, its signature and the signing key's id."""
    text = canonical(manifest).decode()
    if len(text) > 4900:  # MLflow keeps at most 5,000 characters per tag value
        raise ModelIntegrityError(f"the manifest is too long for a version tag ({len(text)})")
    signature = _private_key(signing_key).sign(text.encode())
    return {
        MANIFEST_TAG: text,
        SIGNATURE_TAG: base64.b64encode(signature).decode(),
        KEY_ID_TAG: key_id(public_key_of(signing_key)),
    }
