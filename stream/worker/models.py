"""The model the worker scores with: the registry's version at the configured alias.

`ModelHolder` polls the alias and swaps in a new version without a restart. A swap only
replaces a reference: each batch takes the current model once at its start, so a batch is
decided entirely by one version, which each decision names. A version that fails its integrity
check (or needs features the stream lacks) is refused: the current one keeps deciding, and the
refusal is logged once and counted (`fraud_model_refused_total`, alerted on).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

from fraud.errors import ModelIntegrityError, ModelNotFoundError
from fraud.secrets import mask_url
from fraud.settings import Settings
from stream.scoring import ScoringModel, alias_version, load_from_registry
from stream.worker.metrics import ScorerMetrics

log = logging.getLogger(__name__)

Loader = Callable[[Settings, str], ScoringModel]
VersionProbe = Callable[[Settings, str], str | None]


class ModelHolder:
    def __init__(
        self,
        settings: Settings,
        metrics: ScorerMetrics,
        loader: Loader = load_from_registry,
        probe: VersionProbe = alias_version,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._loader = loader
        self._probe = probe
        self.current: ScoringModel | None = None
        self._refused: str | None = None  # a version that failed to load; not retried

    def load(self) -> ScoringModel:
        """Load the alias now; raises ModelNotFoundError saying how to train one."""
        alias = self.settings.model_alias
        if self._probe(self.settings, alias) is None:
            raise ModelNotFoundError(
                f"no model '{self.settings.model_name}' at alias @{alias} in "
                f"{mask_url(self.settings.tracking_uri)}; run `make train` to train and promote a champion"
            )
        self._swap(self._loader(self.settings, alias))
        return self.current  # type: ignore[return-value]

    async def refresh(self) -> bool:
        """Swap to the alias's version if it moved; True when a new version is in place."""
        alias = self.settings.model_alias
        current = self.current.version if self.current else None
        version = None
        try:
            version = await asyncio.to_thread(self._probe, self.settings, alias)
            if version is None or version in (current, self._refused):
                return False
            model = await asyncio.to_thread(self._loader, self.settings, alias)
        except (ModelIntegrityError, ModelNotFoundError) as exc:  # cannot serve: say so once
            self._refused = version
            reason = "integrity" if isinstance(exc, ModelIntegrityError) else "incompatible"
            self.metrics.model_refused.labels(reason).inc()
            log.error(
                "not swapping @%s to version %s (keeping version %s): %s",
                alias,
                version,
                current,
                exc,
            )
            return False
        except Exception:  # registry away, a read failed: keep the current model, poll again
            log.exception("model refresh failed; keeping version %s", current)
            return False
        self._swap(model)
        self.metrics.model_reloads.inc()
        log.info("model swapped: %s -> %s (@%s)", current, model.version, alias)
        freeze_heap()  # the old model's cycles collected, the new one frozen
        return True

    def _swap(self, model: ScoringModel) -> None:
        self.current = model
        self.metrics.model.info(
            {"name": model.name, "version": model.version, "alias": model.alias or ""}
        )


def freeze_heap() -> None:
    """Take every object alive now out of the garbage collector's sight (`gc.freeze`).

    Most of the worker's heap is what start-up built: libraries, the model, the app. Left to
    the collector, every full collection walks all of it, a pause of hundreds of milliseconds
    that lands on whatever batch is in flight (p99 latency). Frozen, it is never walked again;
    what batches allocate is still collected. Called once the worker is built and after each
    model swap (unfrozen and collected first, so that the old model's cycles are freed)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
