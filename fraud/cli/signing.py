"""Model signing commands: `fraud model-keys` (a new key pair) and `fraud sign` (re-sign or
adopt a registered version). Training signs every version it registers by itself."""

from __future__ import annotations

import typer

from fraud.settings import Settings


def model_keys() -> None:
    """Print a new model signing key pair (Ed25519) as environment assignments.

    The signing key belongs to training only (keep it in a secret store or a 0600 file); the
    public key goes to every worker and to `fraud promote` (FRAUD_MODEL_TRUSTED_KEYS).
    """
    from stream.scoring import key_id
    from training.governance import generate_key_pair

    private, public = generate_key_pair()
    typer.echo(f"# key id {key_id(public)}")
    typer.echo(f"FRAUD_MODEL_SIGNING_KEY={private}")
    typer.echo(f"FRAUD_MODEL_TRUSTED_KEYS={public}")


def sign(
    ctx: typer.Context,
    version: str = typer.Option(..., help="Model version to sign."),
    adopt: bool = typer.Option(
        False,
        help="Sign a version that has no signature yet (registered before signing existed), "
        "as its files are now: only after checking where it came from.",
    ),
) -> None:
    """Re-sign a model version with FRAUD_MODEL_SIGNING_KEY, or --adopt an unsigned one.

    Re-signing (a key rotation) needs the version to verify under a trusted key first.
    """
    from stream.scoring import open_store
    from training.governance import resign_version

    settings: Settings = ctx.obj
    client = open_store(settings)
    signer = resign_version(settings, client, settings.model_name, version, adopt=adopt)
    typer.echo(f"{settings.model_name} v{version} signed with key {signer}")


def register(app: typer.Typer) -> None:
    app.command("model-keys")(model_keys)
    app.command("sign")(sign)
