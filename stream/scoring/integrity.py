"""Model integrity: what a version's signature covers, and checking it before anything is loaded.

    manifest = verify_signature(name, tags, trusted_keys)   # ModelIntegrityError if it fails
    verify_files(manifest, folder)                          # every file, nothing more or less
    model = load_model_file(folder)                         # skops, explicit allow-list

A manifest names the model, the SHA-256 of every file of the version's artifact folder, and the
version tags that decide how it scores (thresholds, feature names). Training signs its
canonical JSON with an Ed25519 key (`training.governance.signing`); the registry keeps manifest,
signature and key id as version tags. A loader checks the signature against the trusted public
keys, then the tags and the downloaded files against the manifest, and only then reads one
file, `model.skops`, with skops and the project's allow-list of types. The artifact's `MLmodel`
is never consulted (it is only digested): it cannot choose a pickle loader.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fraud.errors import ModelIntegrityError

MANIFEST_TAG = "integrity.manifest"
SIGNATURE_TAG = "integrity.signature"
KEY_ID_TAG = "integrity.key_id"
MANIFEST_FORMAT = 1
MODEL_FILE = "model.skops"
# Version tags that change decisions; the manifest holds their signed values.
SIGNED_TAGS = (
    "policy.review_threshold",
    "policy.decline_threshold",
    "model.feature_names",
    "model.categorical_features",
)
# Types inside a fitted HistGradientBoosting model that skops must be told to trust (numpy and
# scikit-learn's estimators it trusts by itself); the model files are this project's own.
SKOPS_TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


def key_id(public_key: str) -> str:
    """A short name for a public key (base64): the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(_decode_key(public_key, "public key")).hexdigest()[:16]


def _decode_key(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ModelIntegrityError(
            f"the Ed25519 {what} must be 32 bytes in base64 (`fraud model-keys` makes a pair)"
        )
    return raw


def file_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below `folder`, by relative POSIX path. A symbolic link is refused:
    its target is not what was signed."""
    digests = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise ModelIntegrityError(f"the model artifact holds a symbolic link: {relative}")
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            digests[relative] = digest.hexdigest()
    return digests


def build_manifest(
    model_name: str, digests: Mapping[str, str], tags: Mapping[str, str]
) -> dict[str, Any]:
    """What a signature covers: the model name, every file's digest, the deciding tags."""
    if MODEL_FILE not in digests:
        raise ModelIntegrityError(
            f"the model artifact has no {MODEL_FILE}: only skops model files are loaded; "
            "log the model with serialization_format='skops'"
        )
    return {
        "format": MANIFEST_FORMAT,
        "model": model_name,
        "files": dict(sorted(digests.items())),
        "tags": {name: tags[name] for name in SIGNED_TAGS if name in tags},
    }


def canonical(manifest: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def verify_signature(
    model_name: str, tags: Mapping[str, str], trusted_keys: list[str]
) -> dict[str, Any]:
    """The version's manifest once its signature verifies under a trusted key and its deciding
    tags and model name match it; ModelIntegrityError saying what failed otherwise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text, signature = tags.get(MANIFEST_TAG), tags.get(SIGNATURE_TAG)
    if not text or not signature:
        raise ModelIntegrityError(
            "the version is not signed (no integrity.manifest / integrity.signature tags): "
            "register it with `fraud train`, or sign a version registered before signing "
            "existed with `fraud sign --version N --adopt` after checking its origin"
        )
    keys = {key_id(key): key for key in trusted_keys}
    signer = tags.get(KEY_ID_TAG, "")
    if signer not in keys:
        raise ModelIntegrityError(
            f"the version is signed by key {signer or '(none)'}, which is not trusted here "
            f"(FRAUD_MODEL_TRUSTED_KEYS holds {', '.join(sorted(keys))})"
        )
    try:
        raw_signature = base64.b64decode(signature, validate=True)
        public = Ed25519PublicKey.from_public_bytes(_decode_key(keys[signer], "public key"))
        public.verify(raw_signature, text.encode())
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise ModelIntegrityError(
            f"the signature of the version's manifest does not verify with key {signer}: "
            "the manifest was changed after signing"
        ) from exc
    manifest: dict[str, Any] = json.loads(text)
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("model") != model_name:
        raise ModelIntegrityError(
            f"the signed manifest is for model {manifest.get('model')!r} "
            f"(format {manifest.get('format')}), not {model_name!r}"
        )
    changed = [name for name, value in manifest.get("tags", {}).items() if tags.get(name) != value]
    if changed:
        raise ModelIntegrityError(
            f"tags changed since signing: {', '.join(changed)} (they decide how it scores)"
        )
    return manifest


def verify_files(manifest: Mapping[str, Any], folder: Path) -> None:
    """The artifact folder holds exactly the signed files, each with its signed digest."""
    signed: dict[str, str] = dict(manifest["files"])
    found = file_digests(folder)
    problems = []
    changed = sorted(name for name in signed.keys() & found.keys() if signed[name] != found[name])
    if changed:
        problems.append(f"changed: {', '.join(changed)}")
    if missing := sorted(signed.keys() - found.keys()):
        problems.append(f"missing: {', '.join(missing)}")
    if added := sorted(found.keys() - signed.keys()):
        problems.append(f"not signed: {', '.join(added)}")
    if problems:
        raise ModelIntegrityError(
            f"the model artifact differs from what was signed ({'; '.join(problems)})"
        )


def load_model_file(folder: Path) -> Any:
    """The model in `folder`/model.skops, with only the allow-listed types (call this after
    `verify_files`). skops refuses any other type instead of running its code."""
    import skops.io

    path = folder / MODEL_FILE
    untrusted = [
        name for name in skops.io.get_untrusted_types(file=path) if name not in SKOPS_TRUSTED_TYPES
    ]
    if untrusted:
        raise ModelIntegrityError(
            f"{MODEL_FILE} holds types outside the allow-list: {', '.join(untrusted[:5])}"
        )
    return skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES)
