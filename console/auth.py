"""Who is asking: the session cookie, CSRF tokens, and the headers every answer carries.

- A session is a random token in an HttpOnly, SameSite=Strict cookie; the store keeps only its
  hash, the analyst id and the session's CSRF token (console/store.py).
- Every state-changing request (POST) must carry the session's CSRF token, in the form field
  `csrf_token` or the header `X-CSRF-Token` (htmx sends the header, set once on the page).
- The login form, which has no session yet, carries a token that must equal the one in a
  short-lived login cookie (double submit), so another site cannot log a browser in.
- The analyst id of every label is the session's, never a form field.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from console.store import ConsoleStore, Session

SESSION_COOKIE = "fraud_console_session"
LOGIN_COOKIE = "fraud_console_login"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"

# Scripts and styles from this console only; no frames, no inline script.
SECURITY_HEADERS = {
    b"content-security-policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
    b"x-frame-options": b"DENY",
}


def session_of(request: Request, store: ConsoleStore, now_us: int) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    return store.session(token, now_us) if token else None


def same_token(sent: str | None, expected: str) -> bool:
    return bool(sent) and hmac.compare_digest(str(sent).encode(), expected.encode())


def csrf_ok(request: Request, form: MutableMapping[str, Any] | Any, session: Session) -> bool:
    sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    return same_token(sent, session.csrf_token)


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def set_cookie(response: Response, name: str, value: str, max_age: int, secure: bool) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict"
    )


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this site only (never //host or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware: SECURITY_HEADERS on every HTTP answer (also streamed ones)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS.items()]
            await send(message)

        await self.app(scope, receive, with_headers)
