"""`fraud console`: the store, the topic reader and the web server, started and stopped together.

    serve(settings, from_end=False)     # blocks until Ctrl-C / SIGTERM

Verdicts go out through `label_transaction` (stream.feedback), the code path of `fraud label`,
with the console's store as the place to look the decision up.
"""

from __future__ import annotations

import logging

from console.accounts import load_analysts
from console.ingest import Ingest
from console.store import ConsoleStore
from console.web import ConsoleApp, Publish, create_app
from fraud.settings import Settings
from stream.feedback import Published, label_transaction

log = logging.getLogger(__name__)


def verdict_publisher(settings: Settings, store: ConsoleStore) -> Publish:
    def publish(transaction_id: str, label: str, analyst_id: str, note: str | None) -> Published:
        outcome = label_transaction(
            settings,
            transaction_id,
            label,
            analyst_id,
            note=note,
            lookup=store.decision,
            timeout_s=30.0,
        )
        return outcome.published

    return publish


def serve(settings: Settings, *, from_end: bool = False) -> None:
    """Read the topics into the store and serve the pages until interrupted. Raises
    ConfigError (a missing topic, a malformed analysts entry) or ServiceUnavailableError (no
    Kafka) before serving anything."""
    import uvicorn

    if not load_analysts(settings):
        log.warning(
            "no analyst can log in yet: add one with `fraud console add-analyst ID` "
            "(read at every login, no restart needed)"
        )
    store = ConsoleStore(settings.console_store)
    ingest = Ingest(settings, store, from_end=from_end)
    try:
        ingest.start()
        app = create_app(
            ConsoleApp(
                settings,
                store,
                verdict_publisher(settings, store),
                ingest.health,
                lambda: load_analysts(settings),
            )
        )
        config = uvicorn.Config(
            app,
            host=settings.console.host,
            port=settings.console.port,
            log_level="info",
            access_log=False,
            timeout_graceful_shutdown=3,
        )
        uvicorn.Server(config).run()
    finally:
        ingest.stop()
        store.close()
