"""The console's web pages: Starlette routes, Jinja2 templates, htmx for the live parts.

    app = create_app(ConsoleApp(settings, store, publish, health))

Pages: /login, / (the queue: sort, filters, waiting times, live over server-sent events from
/queue/events), /alerts/{id} (the alert; opening it claims it through POST
/alerts/{id}/claim), POST /alerts/{id}/verdict (fraud or legit, optional note), POST
/alerts/{id}/release, /next (the top open alert nobody holds), /health. Every page but /login and
/health needs a session; every POST needs its CSRF token (console/auth.py). A verdict is
published by `publish` (in `fraud console`: `label_transaction`, the code path of `fraud label`)
with the session's analyst id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from console import auth
from console.accounts import check_login
from console.pages import (
    TERMINAL_DAYS,
    alert_view,
    clock,
    merchant_label,
    queue_query,
    terminal_view,
    waiting,
)
from console.store import Claim, ConsoleStore, QueueQuery, Session, micros
from fraud.errors import FraudScorerError
from fraud.settings import Settings
from stream.features import FeatureInfo, feature_info
from stream.feedback import LABELS, Published

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
Publish = Callable[[str, str, str, str | None], Published]  # (tx id, label, analyst, note)


def wall_clock_us() -> int:
    return time.time_ns() // 1000


@dataclass
class ConsoleApp:
    """What the pages need: settings, the store, how to publish a verdict, the reader's health,
    the analysts who may log in (read at each login) and a clock (tests set one)."""

    settings: Settings
    store: ConsoleStore
    publish: Publish
    health: Callable[[], dict[str, Any]]
    analysts: Callable[[], dict[str, str]]
    now_us: Callable[[], int] = wall_clock_us
    live_poll_s: float = 0.5
    infos: dict[str, FeatureInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.infos = dict(feature_info(self.settings.label_delay_days))


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(
        money=lambda value: "" if value is None else f"{value:,.2f}",
        percent=lambda value: "n/a" if value is None else f"{value:.2%}",
        clock=clock,
        merchant=merchant_label,
    )
    return templates


def create_app(console: ConsoleApp) -> Starlette:
    templates = _templates()
    store = console.store
    secure = console.settings.console.secure_cookie

    def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def signed_in(request: Request) -> Session | None:
        return auth.session_of(request, store, console.now_us())

    def refuse(request: Request) -> Response:
        """No session: pages go to the login form, htmx and POST requests get 401."""
        if request.method == "GET" and "hx-request" not in request.headers:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={target}", status_code=303)
        return Response("log in first", status_code=401, headers={"HX-Redirect": "/login"})

    # -- logging in ----------------------------------------------------------------------

    async def login_form(request: Request) -> Response:
        return _login_page(request, None, 200, request.query_params.get("next"))

    def _login_page(
        request: Request, problem: str | None, status: int, after: Any = None
    ) -> Response:
        token = auth.new_login_token()
        response = render(
            request,
            "login.html",
            status,
            login_token=token,
            problem=problem,
            next=auth.safe_next(str(after or "/")),
        )
        auth.set_cookie(response, auth.LOGIN_COOKIE, token, 600, secure)
        return response

    async def login(request: Request) -> Response:
        form = await request.form()
        after = form.get("next")
        sent, expected = str(form.get("login_token") or ""), request.cookies.get(auth.LOGIN_COOKIE)
        if not expected or not auth.same_token(sent, expected):
            return _login_page(request, "the login form expired: please try again", 403, after)
        analyst_id = str(form.get("analyst_id") or "").strip()
        password = str(form.get("password") or "")
        try:
            known = await run_in_threadpool(console.analysts)
        except FraudScorerError as exc:
            log.error("nobody can log in: %s", exc)
            return _login_page(request, "the console's list of analysts is broken", 503, after)
        if not await run_in_threadpool(check_login, known, analyst_id, password):
            log.info("failed login for analyst id %r", analyst_id[:64])
            return _login_page(request, "wrong analyst id or password", 401, after)
        token, _ = store.create_session(
            analyst_id, console.now_us(), console.settings.console.session_hours
        )
        response = RedirectResponse(auth.safe_next(str(form.get("next") or "/")), status_code=303)
        max_age = int(console.settings.console.session_hours * 3600)
        auth.set_cookie(response, auth.SESSION_COOKIE, token, max_age, secure)
        response.delete_cookie(auth.LOGIN_COOKIE, path="/")
        return response

    async def logout(request: Request) -> Response:
        session = signed_in(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        if not auth.csrf_ok(request, await request.form(), session):
            return Response("missing or wrong CSRF token", status_code=403)
        store.end_session(request.cookies[auth.SESSION_COOKIE])
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response

    # -- the queue -----------------------------------------------------------------------

    def _queue_context(request: Request) -> dict[str, Any]:
        query, problems = queue_query(request.query_params, request.query_params.getlist("tier"))
        now = console.now_us()
        rows = store.queue(query, now)
        for row in rows:
            row["waiting"] = waiting(now - row["decided_us"])
        return {"query": query, "problems": problems, "rows": rows}

    async def queue_page(request: Request) -> Response:
        session = signed_in(request)
        if session is None:
            return refuse(request)
        return render(
            request,
            "queue.html",
            session=session,
            categories=store.merchant_categories(),
            open_count=store.open_count(),
            **_queue_context(request),
        )

    async def queue_rows(request: Request) -> Response:
        if signed_in(request) is None:
            return refuse(request)
        response = render(
            request, "_rows.html", open_count=store.open_count(), **_queue_context(request)
        )
        if request.headers.get("hx-trigger") == "filters":  # keep the filters in the address
            response.headers["HX-Replace-Url"] = f"/?{request.url.query}"
        return response

    async def queue_events(request: Request) -> Response:
        if signed_in(request) is None:
            return refuse(request)

        async def changes() -> AsyncIterator[str]:
            seen, beat = -1, time.monotonic()
            while True:
                version = store.version
                if version != seen:
                    seen, beat = version, time.monotonic()
                    yield f"event: queue\ndata: {version}\n\n"
                elif time.monotonic() - beat > 15:
                    beat = time.monotonic()
                    yield ": still here\n\n"
                await asyncio.sleep(console.live_poll_s)

        return StreamingResponse(
            changes(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def next_alert(request: Request) -> Response:
        session = signed_in(request)
        if session is None:
            return refuse(request)
        now = console.now_us()
        for row in store.queue(QueueQuery(limit=500), now):
            if row["claimed_by"] in (None, session.analyst_id):
                return RedirectResponse(f"/alerts/{row['transaction_id']}", status_code=303)
        return RedirectResponse("/", status_code=303)

    # -- one alert -----------------------------------------------------------------------

    async def alert_page(request: Request) -> Response:
        session = signed_in(request)
        if session is None:
            return refuse(request)
        transaction_id = request.path_params["transaction_id"]
        alert = store.alert(transaction_id)
        if alert is None:
            return render(
                request, "missing.html", 404, session=session, transaction_id=transaction_id
            )
        decision = store.decision(transaction_id)
        features = (decision or {}).get("features", {})
        event_us = micros(alert["event_time"])
        terminal = store.terminal_verdicts(alert["terminal_id"], event_us, TERMINAL_DAYS)
        return render(
            request,
            "alert.html",
            session=session,
            alert=alert,
            decision=decision,
            history=store.card_history(alert["card_id"], event_us),
            terminal=terminal_view(terminal, features, console.infos),
            labels=store.labels_of(transaction_id),
            waited=waiting(console.now_us() - alert["decided_us"]),
            **alert_view(alert, decision, console.infos),
        )

    def _panel(
        request: Request, session: Session, transaction_id: str, status: int = 200, **extra: Any
    ) -> Response:
        now = console.now_us()
        return render(
            request,
            "_verdict.html",
            status,
            session=session,
            transaction_id=transaction_id,
            claim=store.claim_of(transaction_id, now),
            verdict=store.verdict(transaction_id),
            **extra,
        )

    def _claim(transaction_id: str, session: Session) -> Claim:
        return store.claim(
            transaction_id,
            session.analyst_id,
            console.now_us(),
            console.settings.console.claim_minutes,
        )

    async def _checked(request: Request) -> tuple[Session, dict[str, Any]] | Response:
        """The session and form of a POST about an existing alert, or the refusal."""
        session = signed_in(request)
        if session is None:
            return refuse(request)
        form = dict(await request.form())
        if not auth.csrf_ok(request, form, session):
            return Response("missing or wrong CSRF token", status_code=403)
        if store.alert(request.path_params["transaction_id"]) is None:
            return Response("no such alert", status_code=404)
        return session, form

    async def claim(request: Request) -> Response:
        checked = await _checked(request)
        if isinstance(checked, Response):
            return checked
        session, _ = checked
        transaction_id = request.path_params["transaction_id"]
        _claim(transaction_id, session)
        return _panel(request, session, transaction_id)

    async def release(request: Request) -> Response:
        checked = await _checked(request)
        if isinstance(checked, Response):
            return checked
        session, _ = checked
        store.release(request.path_params["transaction_id"], session.analyst_id)
        return RedirectResponse("/", status_code=303)

    async def verdict(request: Request) -> Response:
        checked = await _checked(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        transaction_id = request.path_params["transaction_id"]
        label = str(form.get("label") or "")
        note = str(form.get("note") or "").strip() or None
        if label not in LABELS:
            return _panel(
                request, session, transaction_id, 400, problem=f"choose one of {', '.join(LABELS)}"
            )
        held = _claim(transaction_id, session)
        if not held.held_by(session.analyst_id):
            return _panel(request, session, transaction_id, 409)
        try:
            published = await run_in_threadpool(
                console.publish, transaction_id, label, session.analyst_id, note
            )
        except FraudScorerError as exc:
            return _panel(request, session, transaction_id, 422, problem=str(exc), note=note)
        store.record_label(published.record, published.partition, published.offset)
        log.info(
            "%s labelled %s %s (feedback partition %d offset %d)",
            session.analyst_id,
            transaction_id,
            label,
            published.partition,
            published.offset,
        )
        if "hx-request" not in request.headers:
            return RedirectResponse(f"/alerts/{transaction_id}", status_code=303)
        return _panel(request, session, transaction_id, published=published)

    async def health(request: Request) -> Response:
        state = console.health()
        return JSONResponse(
            {**state, "open_alerts": store.open_count()}, status_code=200 if state["ready"] else 503
        )

    return Starlette(
        routes=[
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/", queue_page),
            Route("/queue/rows", queue_rows),
            Route("/queue/events", queue_events),
            Route("/next", next_alert),
            Route("/alerts/{transaction_id}", alert_page),
            Route("/alerts/{transaction_id}/claim", claim, methods=["POST"]),
            Route("/alerts/{transaction_id}/release", release, methods=["POST"]),
            Route("/alerts/{transaction_id}/verdict", verdict, methods=["POST"]),
            Route("/health", health),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        middleware=[Middleware(auth.SecurityHeaders)],  # type: ignore[arg-type]
    )
