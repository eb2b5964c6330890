"""The model the worker scores with: the registry's version at the configured alias.

`ModelHolder` polls the alias and swaps in a new version without a restart. A swap only
replaces a reference: each batch takes the current model once at its start, so a batch is
decided entirely by one version, which each decision names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fraud.errors import ModelNotFoundError
from fraud.settings import Settings
from stream.metrics import ScorerMetrics
from stream.scoring import ScoringModel

log = logging.getLogger(__name__)

Loader = Callable[[Settings, str], ScoringModel]
VersionProbe = Callable[[Settings, str], str | None]


def load_from_registry(settings: Settings, alias: str) -> ScoringModel:
    """Load the version at `alias` from the MLflow registry as a ScoringModel."""
    from training.registry import load_model_version

    loaded = load_model_version(settings, alias=alias)
    return ScoringModel(
        name=loaded.name,
        version=loaded.version,
        alias=alias,
        thresholds=loaded.thresholds,
        feature_names=loaded.feature_names,
        predict_proba=loaded.predict_scores,
        explain=loaded.reason_coder().reason_codes,
    )


def version_at_alias(settings: Settings, alias: str) -> str | None:
    """The version number the alias points at now, or None when it points nowhere."""
    from training.registry import open_store
    from training.registry import version_at_alias as registry_version

    found = registry_version(open_store(settings), settings.model_name, alias)
    return None if found is None else str(found.version)


class ModelHolder:
    def __init__(
        self,
        settings: Settings,
        metrics: ScorerMetrics,
        loader: Loader = load_from_registry,
        probe: VersionProbe = version_at_alias,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._loader = loader
        self._probe = probe
        self.current: ScoringModel | None = None

    def load(self) -> ScoringModel:
        """Load the alias now; raises ModelNotFoundError saying how to train one."""
        alias = self.settings.model_alias
        if self._probe(self.settings, alias) is None:
            raise ModelNotFoundError(
                f"no model '{self.settings.model_name}' at alias @{alias} in "
                f"{self.settings.tracking_uri}; run `make train` to train and promote a champion"
            )
        self._swap(self._loader(self.settings, alias))
        return self.current  # type: ignore[return-value]

    async def refresh(self) -> bool:
        """Swap to the alias's version if it moved; True when a new version is in place."""
        alias = self.settings.model_alias
        try:
            version = await asyncio.to_thread(self._probe, self.settings, alias)
            if version is None or (self.current is not None and version == self.current.version):
                return False
            model = await asyncio.to_thread(self._loader, self.settings, alias)
        except Exception:  # a failed poll keeps the current model running
            log.exception(
                "model refresh failed; keeping version %s", self.current and self.current.version
            )
            return False
        previous = self.current.version if self.current else None
        self._swap(model)
        self.metrics.model_reloads.inc()
        log.info("model swapped: %s -> %s (@%s)", previous, model.version, alias)
        return True

    def _swap(self, model: ScoringModel) -> None:
        self.current = model
        self.metrics.model.info(
            {"name": model.name, "version": model.version, "alias": model.alias or ""}
        )
