"""Analysts' passwords: hashed (scrypt), read from a file or the environment, ids that can label."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from console.accounts import (
    analyst_line,
    check_login,
    hash_password,
    load_analysts,
    parse_analysts,
    save_analyst,
    verify_password,
)
from fraud.errors import ConfigError, ValidationError
from fraud.settings import ConsoleSettings, Settings


def test_a_hash_verifies_its_password_only() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horse ", stored)
    assert hash_password("correct horse") != stored  # salted
    for broken in ("", "scrypt$1$2", "md5$a$b$c$d$e", stored[:-4]):
        assert not verify_password("correct horse", broken)


def test_login_needs_a_known_id_and_its_password() -> None:
    analysts = {"alice": hash_password("alice-password")}
    assert check_login(analysts, "alice", "alice-password")
    assert not check_login(analysts, "alice", "bob-password")
    assert not check_login(analysts, "bob", "alice-password")


def test_entries_parse_from_lines_or_commas_with_comments() -> None:
    alice, bob = analyst_line("alice", "alice-password"), analyst_line("bob", "bob-password")
    text = f"# analysts\n{alice}  # team A\n\n{bob}\n"
    assert set(parse_analysts(text, "file")) == {"alice", "bob"}
    assert parse_analysts(f"{alice},{bob}", "env") == parse_analysts(text, "file")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("alice", "expected analyst_id:scrypt$"),
        ("alice:plaintext", "expected analyst_id:scrypt$"),
        ("chargeback:scrypt$1$2$3$4$5", "reserved for chargebacks"),
        ("bad id:scrypt$1$2$3$4$5", "is not valid"),
    ],
)
def test_a_malformed_entry_names_its_source_and_line(entry: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)) as raised:
        parse_analysts(f"# ok\n{entry}\n", "analysts.txt")
    assert "analysts.txt, entry 2" in str(raised.value)


def test_new_entries_refuse_short_passwords_and_reserved_ids() -> None:
    with pytest.raises(ValidationError, match="at least 8"):
        analyst_line("alice", "short")
    with pytest.raises(ValidationError, match="reserved"):
        analyst_line("chargeback", "long enough password")


def test_the_file_is_private_and_an_entry_replaced_in_place(tmp_path: Path) -> None:
    path = tmp_path / "console" / "analysts"
    assert not save_analyst(path, analyst_line("alice", "first-password"))
    assert not save_analyst(path, analyst_line("bob", "bob-password"))
    assert save_analyst(path, analyst_line("alice", "second-password"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    analysts = parse_analysts(path.read_text(), str(path))
    assert list(analysts) == ["bob", "alice"]
    assert verify_password("second-password", analysts["alice"])


def test_the_environment_adds_to_the_file_and_wins_for_the_same_id(tmp_path: Path) -> None:
    path = tmp_path / "analysts"
    save_analyst(path, analyst_line("alice", "file-password"))
    save_analyst(path, analyst_line("bob", "bob-password"))
    inline = analyst_line("alice", "env-password") + "," + analyst_line("carol", "carol-password")
    settings = Settings(
        state_dir=tmp_path,
        console=ConsoleSettings(analysts_file=path, analysts=SecretStr(inline)),
    )
    analysts = load_analysts(settings)
    assert set(analysts) == {"alice", "bob", "carol"}
    assert verify_password("env-password", analysts["alice"])
    assert load_analysts(Settings(state_dir=tmp_path / "empty")) == {}


def test_fraud_console_add_analyst_writes_a_hash_and_refuses_a_short_password(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from tests.support.stack import ROOT

    path = tmp_path / "analysts"

    def add(analyst: str, password: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "fraud.cli", "console", "add-analyst", analyst]
        return subprocess.run(
            [*command, "--password-stdin", "--file", str(path)],
            input=password + "\n",
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )

    added = add("a.smith", "a long password")
    assert added.returncode == 0 and f"added analyst a.smith in {path}" in added.stdout
    assert verify_password("a long password", parse_analysts(path.read_text(), "file")["a.smith"])
    short = add("b.jones", "short")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    assert "b.jones" not in path.read_text()
