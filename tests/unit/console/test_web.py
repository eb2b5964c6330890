"""The console over HTTP (Starlette's test client, no broker): login, session cookie, CSRF,
claiming, verdicts with the logged-in analyst's id, corrections."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from console.accounts import hash_password
from console.store import ConsoleStore, IngestBatch, micros
from console.web import ConsoleApp, create_app
from fraud.settings import Settings
from stream.feedback import Published, UnknownTransactionError, build_label
from tests.unit.console.records import a_decision, an_alert

PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
HASHES = {name: hash_password(password) for name, password in PASSWORDS.items()}


@dataclass
class Desk:
    """The console app with a store of two alerts, a settable clock and a recording publisher
    (the real one, `label_transaction`, is exercised on the broker by the integration test)."""

    store: ConsoleStore
    now_us: int = micros("2026-06-01T12:05:00Z")
    published: list[dict[str, Any]] = field(default_factory=list)
    refuse: Exception | None = None

    def publish(self, tid: str, label: str, analyst: str, note: str | None) -> Published:
        if self.refuse is not None:
            raise self.refuse
        at = datetime.fromtimestamp(self.now_us / 1e6, UTC)
        record = build_label(tid, label, analyst, labelled_at=at, note=note)
        self.published.append(record)
        return Published(record, 0, len(self.published) - 1)

    def client(self) -> TestClient:
        app = ConsoleApp(
            Settings(),
            self.store,
            self.publish,
            lambda: {"ready": True},
            lambda: HASHES,
            now_us=lambda: self.now_us,
        )
        return TestClient(create_app(app), follow_redirects=False)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    store = ConsoleStore(tmp_path / "console.db")
    store.apply(
        IngestBatch(
            alerts=[an_alert("tx-1", 0.91, "decline", amount=900.0), an_alert("tx-2", 0.6)],
            decisions=[a_decision("tx-1", 0.91, "decline", amount=900.0), a_decision("tx-2", 0.6)],
        )
    )
    yield Desk(store)
    store.close()


def log_in(client: TestClient, analyst: str, password: str | None = None) -> str:
    """Log in through the form; returns the page's CSRF token."""
    form = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    answer = client.post(
        "/login",
        data={
            "analyst_id": analyst,
            "password": password or PASSWORDS[analyst],
            "login_token": token,
        },
    )
    assert answer.status_code == 303, answer.text
    page = client.get("/")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def test_pages_need_a_login_and_the_session_cookie_is_locked_down(desk: Desk) -> None:
    client = desk.client()
    answer = client.get("/alerts/tx-1")
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/alerts/tx-1"
    assert client.post("/alerts/tx-1/verdict", data={"label": "fraud"}).status_code == 401
    assert client.get("/queue/rows", headers={"HX-Request": "true"}).status_code == 401

    form = client.get("/login")
    assert "default-src 'self'" in form.headers["content-security-policy"]
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    data = {"analyst_id": "alice", "password": "alice-password", "login_token": token}
    answer = client.post("/login", data={**data, "next": "//elsewhere.example/x"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = next(
        h for h in answer.headers.get_list("set-cookie") if h.startswith("fraud_console_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    page = client.get("/")
    assert page.status_code == 200 and 'id="analyst">alice<' in page.text


def test_a_wrong_password_or_a_forged_login_form_is_refused(desk: Desk) -> None:
    client = desk.client()
    form = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    wrong = client.post(
        "/login", data={"analyst_id": "alice", "password": "bob-password", "login_token": token}
    )
    assert wrong.status_code == 401 and "wrong analyst id or password" in wrong.text
    token = re.search(r'name="login_token" value="([^"]+)"', wrong.text).group(1)  # type: ignore[union-attr]
    unknown = client.post(
        "/login", data={"analyst_id": "mallory", "password": "x" * 12, "login_token": token}
    )
    assert unknown.status_code == 401 and "wrong analyst id or password" in unknown.text
    # Another site's form: no login cookie of ours to match its token.
    fresh = desk.client()
    forged = fresh.post(
        "/login", data={"analyst_id": "alice", "password": "alice-password", "login_token": token}
    )
    assert forged.status_code == 403 and "fraud_console_session" not in str(forged.headers)


def test_every_post_needs_the_sessions_csrf_token(desk: Desk) -> None:
    client = desk.client()
    csrf = log_in(client, "alice")
    assert client.post("/alerts/tx-1/claim").status_code == 403
    assert client.post("/alerts/tx-1/claim", headers={"X-CSRF-Token": "guess"}).status_code == 403
    assert client.post("/alerts/tx-1/verdict", data={"label": "fraud"}).status_code == 403
    assert client.post("/logout").status_code == 403
    assert desk.published == [] and desk.store.claim_of("tx-1", desk.now_us) is None
    # Bob's token is not Alice's.
    bob = desk.client()
    bob_csrf = log_in(bob, "bob")
    assert client.post("/alerts/tx-1/claim", headers={"X-CSRF-Token": bob_csrf}).status_code == 403
    assert client.post("/alerts/tx-1/claim", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.post("/alerts/tx-1/claim", data={"csrf_token": csrf}).status_code == 200


def test_opening_an_alert_claims_it_and_a_second_analyst_sees_who_has_it(desk: Desk) -> None:
    alice, bob = desk.client(), desk.client()
    alice_csrf, bob_csrf = log_in(alice, "alice"), log_in(bob, "bob")
    page = alice.get("/alerts/tx-1")
    assert page.status_code == 200 and 'hx-post="/alerts/tx-1/claim"' in page.text
    assert (
        "7 transactions on this card in the last hour; this card averages 0.4 an hour" in page.text
    )
    assert "review from 0.5000, decline from 0.9000" in page.text
    panel = alice.post("/alerts/tx-1/claim", headers={"X-CSRF-Token": alice_csrf})
    assert 'data-key="f"' in panel.text and "Claimed by" not in panel.text

    seen = bob.post("/alerts/tx-1/claim", headers={"X-CSRF-Token": bob_csrf})
    assert 'Claimed by <strong class="claimed-by">alice</strong>' in seen.text
    assert 'data-key="f"' not in seen.text
    refused = bob.post(
        "/alerts/tx-1/verdict",
        data={"label": "legit"},
        headers={"X-CSRF-Token": bob_csrf, "HX-Request": "true"},
    )
    assert refused.status_code == 409 and desk.published == []
    assert "claimed by alice" in bob.get("/queue/rows", headers={"HX-Request": "true"}).text
    # /next skips what another analyst holds.
    assert bob.get("/next").headers["location"] == "/alerts/tx-2"


def test_a_verdict_carries_the_logged_in_analyst_and_a_correction_wins(desk: Desk) -> None:
    alice, bob = desk.client(), desk.client()
    alice_csrf, bob_csrf = log_in(alice, "alice"), log_in(bob, "bob")
    answer = alice.post(
        "/alerts/tx-1/verdict",
        data={"label": "fraud", "note": "customer confirmed", "analyst_id": "bob"},
        headers={"X-CSRF-Token": alice_csrf, "HX-Request": "true"},
    )
    assert answer.status_code == 200 and "Labelled <strong>fraud</strong> by alice" in answer.text
    (record,) = desk.published
    assert (record["analyst_id"], record["label"], record["note"]) == (
        "alice",
        "fraud",
        "customer confirmed",
    )
    assert [row["transaction_id"] for row in desk.store.queue(_open(), desk.now_us)] == ["tx-2"]
    assert desk.store.claim_of("tx-1", desk.now_us) is None  # the verdict ended the claim

    desk.now_us += 60_000_000
    corrected = bob.post(
        "/alerts/tx-1/verdict", data={"label": "legit"}, headers={"X-CSRF-Token": bob_csrf}
    )
    assert corrected.status_code == 303  # without htmx: back to the alert page
    assert desk.store.verdict("tx-1")["analyst_id"] == "bob"  # type: ignore[index]
    assert desk.store.verdict("tx-1")["label"] == "legit"  # type: ignore[index]
    page = bob.get("/alerts/tx-1")
    assert page.text.index("by bob") < page.text.index("by alice")


def test_a_refused_verdict_says_why_and_changes_nothing(desk: Desk) -> None:
    client = desk.client()
    csrf = log_in(client, "alice")
    desk.refuse = UnknownTransactionError(
        "no decision for transaction 'tx-1'; nothing was published"
    )
    answer = client.post(
        "/alerts/tx-1/verdict",
        data={"label": "fraud", "note": "keep me"},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert answer.status_code == 422 and "nothing was published" in answer.text
    assert "keep me" in answer.text and desk.store.verdict("tx-1") is None
    bad = client.post(
        "/alerts/tx-1/verdict", data={"label": "maybe"}, headers={"X-CSRF-Token": csrf}
    )
    assert bad.status_code == 400
    assert (
        client.post(
            "/alerts/tx-9/verdict", data={"label": "fraud"}, headers={"X-CSRF-Token": csrf}
        ).status_code
        == 404
    )


def test_the_queue_page_sorts_and_filters_from_its_form(desk: Desk) -> None:
    client = desk.client()
    log_in(client, "alice")
    rows = client.get("/queue/rows?sort=score", headers={"HX-Request": "true"}).text
    assert rows.index("tx-1") < rows.index("tx-2")
    declines = client.get("/queue/rows?tier=decline", headers={"HX-Request": "true"}).text
    assert "tx-1" in declines and "tx-2" not in declines
    cheap = client.get("/queue/rows?max_amount=500", headers={"HX-Request": "true"}).text
    assert "tx-2" in cheap and "tx-1" not in cheap
    odd = client.get("/queue/rows?min_amount=lots", headers={"HX-Request": "true"}).text
    assert "minimum amount must be a number" in odd and "tx-1" in odd
    assert "5 min" in client.get("/").text  # raised 12:00, now 12:05


def test_logging_out_ends_the_session(desk: Desk) -> None:
    client = desk.client()
    csrf = log_in(client, "alice")
    cookie = client.cookies.get("fraud_console_session")
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    replay = desk.client()
    replay.cookies.set("fraud_console_session", cookie or "")
    assert replay.get("/").status_code == 303


def _open() -> Any:
    from console.store import QueueQuery

    return QueueQuery()
