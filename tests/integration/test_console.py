"""The analyst console on the real broker, fed by a real `fraud worker`: an analyst works an alert
in headless Chromium, and the console resumes after a restart without losing or duplicating."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from console import analyst_line
from schemas import validator
from tests.support.browser import artifacts_dir, chromium, require_chromium
from tests.support.processes import Proc, fraud_command, free_port, running, wait_healthy
from tests.support.worker import BackgroundTraffic, produce, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
NOTE = "customer confirmed the card was stolen"


@contextmanager
def console_process(worker_env: Any, store: Path, name: str = "console") -> Iterator[Proc]:
    """`fraud console` on the test's topics, with a store of its own and two analysts."""
    port = free_port()
    env = {
        **worker_env.env(free_port()),
        "FRAUD_CONSOLE_PORT": str(port),
        "FRAUD_CONSOLE_STORE": str(store),
        "FRAUD_CONSOLE_ANALYSTS": ",".join(analyst_line(a, p) for a, p in PASSWORDS.items()),
    }
    with running(fraud_command("console"), env, worker_env.logs / f"{name}.log", port) as proc:
        wait_healthy(proc)
        yield proc


def log_in(driver: Any, console: Proc, analyst: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(console.url("/login"))
    driver.find_element(By.ID, "analyst_id").send_keys(analyst)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[analyst], Keys.ENTER)
    WebDriverWait(driver, 30).until(ec.text_to_be_present_in_element((By.ID, "analyst"), analyst))


def test_an_analyst_labels_an_alert_the_worker_raised_in_a_real_browser(
    worker_env: Any, consume_all: Any, tmp_path: Path
) -> None:
    require_chromium()
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    open_rows = (By.CSS_SELECTOR, "#rows tr[data-transaction]")
    with (
        worker_env.worker(),
        console_process(worker_env, tmp_path / "console.db") as console,
        chromium(tmp_path / "alice-profile") as alice,
    ):
        log_in(alice, console, "alice")
        assert not alice.find_elements(*open_rows)  # fresh topics: nothing to work yet
        alice.execute_script("window.sameQueuePage = true")
        with BackgroundTraffic(worker_env, rate=200) as traffic:
            WebDriverWait(alice, 120).until(ec.presence_of_element_located(open_rows))
            traffic.stop()
        # The alert arrived over the live connection: the page was never reloaded.
        assert alice.execute_script("return window.sameQueuePage === true")

        def open_first_alert(driver: Any) -> str:
            # The live queue may redraw its rows between two calls: then try again.
            found = str(driver.find_element(*open_rows).get_attribute("data-transaction"))
            driver.find_element(By.CSS_SELECTOR, f"tr[data-transaction='{found}'] a.open").click()
            return found

        transaction_id = WebDriverWait(
            alice, 30, ignored_exceptions=(StaleElementReferenceException,)
        ).until(open_first_alert)
        fraud_button = (By.CSS_SELECTOR, "#verdict button[data-key='f']")
        WebDriverWait(alice, 30).until(ec.presence_of_element_located(fraud_button))
        assert alice.find_element(By.ID, "transaction-id").text == transaction_id
        reasons = [e.text for e in alice.find_elements(By.CSS_SELECTOR, ".reasons .reason-text")]
        assert reasons and all("_" not in text for text in reasons), reasons
        assert "review from" in alice.find_element(By.CSS_SELECTOR, "main").text

        # Bob opens the same alert while Alice has it: he sees who, and no verdict buttons.
        with chromium(tmp_path / "bob-profile") as bob:
            log_in(bob, console, "bob")
            bob.get(console.url(f"/alerts/{transaction_id}"))
            holder = WebDriverWait(bob, 30).until(
                ec.presence_of_element_located((By.CSS_SELECTOR, "#verdict .claimed-by"))
            )
            assert holder.text == "alice"
            assert not bob.find_elements(*fraud_button)
            bob.get(console.url("/"))
            row = (By.CSS_SELECTOR, f"tr[data-transaction='{transaction_id}']")
            WebDriverWait(bob, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda driver: "claimed by alice" in driver.find_element(*row).text
            )

        note = alice.find_element(By.ID, "note")
        note.send_keys(NOTE, Keys.ESCAPE)  # Esc leaves the note; F is then the verdict key
        ActionChains(alice).send_keys("f").perform()
        WebDriverWait(alice, 60).until(
            ec.text_to_be_present_in_element(
                (By.CSS_SELECTOR, "#verdict .published"), "Labelled fraud by alice"
            )
        )
        alice.save_screenshot(str(artifacts_dir() / "console-alert.png"))
        (record,) = consume_all(worker_env.topics["feedback"], count=1, timeout_s=60)

    validator("feedback")(record)
    record.pop("labelled_at")
    assert record == {
        "transaction_id": transaction_id,
        "label": "fraud",
        "analyst_id": "alice",
        "source": "analyst",
        "note": NOTE,
    }


def stored(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return list(db.execute(sql))


def test_the_console_resumes_after_a_restart_without_losing_or_duplicating(
    worker_env: Any, consume_all: Any, tmp_path: Path
) -> None:
    from fraud.settings import Settings, TopicNames
    from stream.feedback import label_transaction

    store = tmp_path / "console.db"
    topics = worker_env.topics
    with worker_env.worker():
        with console_process(worker_env, store) as console:
            first = produce(worker_env, rate=300, seconds=3, seed=5)
            wait_until(
                lambda: httpx.get(console.url("/health"), timeout=5).json()["open_alerts"] > 0,
                120,
                "alerts reaching the console",
            )
        # While the console is down: more alerts, and a label from `fraud label`'s code path.
        second = produce(worker_env, rate=300, seconds=3, seed=6)
        decisions = consume_all(
            topics["decisions"], count=first.valid + second.valid, timeout_s=120
        )
        alerts = consume_all(topics["alerts"], idle_s=5, timeout_s=120)
    settings = Settings(
        kafka_bootstrap_servers=worker_env.stack.bootstrap,
        topics=TopicNames(decisions=topics["decisions"], feedback=topics["feedback"]),
    )
    label_transaction(settings, alerts[-1]["transaction_id"], "legit", "carol")
    expected = {alert["transaction_id"] for alert in alerts}
    decided = {decision["transaction_id"] for decision in decisions}
    read_before = sum(row[0] for row in stored(store, "SELECT next_offset FROM positions"))

    with console_process(worker_env, store, "console-again") as console:
        wait_until(
            lambda: (
                stored(store, "SELECT COUNT(*) FROM alerts")[0][0] == len(expected)
                and stored(store, "SELECT COUNT(*) FROM decisions")[0][0] == len(decided)
                and stored(store, "SELECT COUNT(*) FROM labels")[0][0] == 1
            ),
            120,
            "every alert, decision and label in the store",
        )
        read_after = sum(row[0] for row in stored(store, "SELECT next_offset FROM positions"))
        health = httpx.get(console.url("/health"), timeout=5).json()
    # It read on from where it stopped: exactly the records it had not stored, none twice.
    assert health["records"] + health["skipped"] == read_after - read_before > 0
    assert {row[0] for row in stored(store, "SELECT transaction_id FROM alerts")} == expected
    assert stored(store, "SELECT transaction_id, label, analyst_id FROM verdicts") == [
        (alerts[-1]["transaction_id"], "legit", "carol")
    ]
    ends = stored(store, f"SELECT next_offset FROM positions WHERE topic = '{topics['alerts']}'")
    assert sum(row[0] for row in ends) == len(alerts)
