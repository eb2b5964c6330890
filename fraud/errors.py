"""One root exception for the project; each subclass tells the operator what to do."""


class FraudScorerError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(FraudScorerError):
    """A setting is missing or invalid: fix the environment variable or option it names."""


class InputError(FraudScorerError):
    """An input the command was given (a file, a model version, a time window) is missing or
    wrong: the message names it and what to do; nothing was written."""


class ValidationError(FraudScorerError):
    """An event or file row breaks its contract; the message names the field and the rule."""

    def __init__(self, message: str, field: str | None = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule


class ServiceUnavailableError(FraudScorerError):
    """Kafka, Redis or MLflow did not answer: start them with `make services` or check the address."""


class ModelNotFoundError(FraudScorerError):
    """No model is registered at the requested alias: run `make train` to register a champion."""


class ModelIntegrityError(FraudScorerError):
    """A model version failed its integrity check: unsigned, signed by a key this process does
    not trust, or its files or deciding tags changed since signing. Nothing of it was
    deserialised. Find out who changed the registry; retrain (`make train`), or re-sign a
    version you checked with `fraud sign`."""
