"""One error path for every command: bad input ends in one line naming the problem and what
to do, exit code 2, no traceback, and nothing written. No service is needed: the Kafka and
Redis addresses point at a closed port, the MLflow store is a fresh SQLite file."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fraud.cli import run

MINIMAL_HISTORY = (
    "transaction_id,timestamp,card_id,customer_id,terminal_id,amount,is_fraud\n"
    "tx-1,2026-01-01T10:00:00Z,card-1,cust-1,term-1,12.5,0\n"
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    port = _closed_port()
    state = tmp_path / "state"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setenv("FRAUD_STATE_DIR", str(state))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "history.csv").write_text(MINIMAL_HISTORY)
    (tmp_path / "garbage.parquet").write_bytes(b"\x00not parquet\xff" * 10)
    return tmp_path


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `fraud ARGS`; it must exit 2 with one `error:` line and no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        run(list(args))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def written(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


BEFORE = {"history.csv", "garbage.parquet"}


def test_train_with_a_typo_in_data_simulates_nothing(env: Path, capsys) -> None:
    line = fails(capsys, "train", "--data", str(env / "histroy" / "transactions.csv"))
    assert "not found" in line and "--simulate" in line
    assert written(env) == BEFORE


def test_train_simulate_needs_a_name_the_simulator_writes(env: Path, capsys) -> None:
    line = fails(capsys, "train", "--data", str(env / "new" / "mine.csv"), "--simulate")
    assert "transactions.parquet" in line
    assert written(env) == BEFORE


def test_train_refuses_a_missing_customers_file_before_any_work(env: Path, capsys) -> None:
    line = fails(
        capsys, "train", "--data", "history.csv", "--customers-file", "nope.csv", "--no-promote"
    )
    assert "--customers-file" in line and "nope.csv" in line
    assert written(env) == BEFORE


@pytest.mark.parametrize("command", ["train", "validate-history", "warm-store"])
def test_an_unreadable_history_is_named(env: Path, capsys, command: str) -> None:
    line = fails(capsys, command, "--data", "garbage.parquet")
    assert "garbage.parquet" in line and "not a readable parquet file" in line
    assert written(env) == BEFORE


@pytest.mark.parametrize(
    ("window", "named"),
    [
        (
            ("2026-01-20", "2026-01-01", "2026-02-01", "2026-02-05"),
            "--train-to 2026-01-01 is before",
        ),
        (
            ("2026-01-01", "2026-01-20", "2026-02-05", "2026-02-01"),
            "--test-to 2026-02-01 is before",
        ),
        (("2026-01-01", "2026-01-20", "2026-01-22", "2026-02-01"), "label delay"),
    ],
)
def test_backtest_names_a_reversed_or_overlapping_window(
    env: Path, capsys, window: tuple[str, ...], named: str
) -> None:
    train_from, train_to, test_from, test_to = window
    line = fails(
        capsys,
        "backtest",
        "--data",
        "history.csv",
        "--train-from",
        train_from,
        "--train-to",
        train_to,
        "--test-from",
        test_from,
        "--test-to",
        test_to,
        "--out",
        "scores.csv",
    )
    assert named in line
    assert written(env) == BEFORE


def test_backtest_names_a_missing_history(env: Path, capsys) -> None:
    args = ["--train-from", "2026-01-01", "--train-to", "2026-01-30"]
    args += ["--test-from", "2026-02-10", "--test-to", "2026-02-15"]
    line = fails(capsys, "backtest", "--data", "nope.parquet", *args)
    assert "not found" in line and "nope.parquet" in line


@pytest.mark.parametrize("version", ["999", "abc"])
def test_promote_an_unknown_version(env: Path, capsys, version: str) -> None:
    line = fails(capsys, "promote", "--version", version)
    assert f"no version '{version}'" in line and "make train" in line


def test_model_card_without_a_champion(env: Path, capsys) -> None:
    line = fails(capsys, "model-card", "--out", "card.md")
    assert "make train" in line
    assert not (env / "card.md").exists()


def test_retrain_checks_its_history_before_any_service(env: Path, capsys) -> None:
    line = fails(capsys, "retrain", "--data", "nope.parquet")
    assert "not found" in line and "nope.parquet" in line


@pytest.mark.parametrize(
    "args",
    [
        ("label", "tx-1", "--fraud", "--analyst", "a.smith"),
        ("lag",),
        ("topics",),
        ("produce", "--rate", "10", "--duration", "1"),
        ("monitor",),
        ("analyst", "--duration", "1"),
    ],
)
def test_an_unreachable_broker_is_one_line(env: Path, capsys, args: tuple[str, ...]) -> None:
    line = fails(capsys, *args)
    assert "Kafka" in line or "broker" in line
    assert "make services" in line or "KAFKA_BOOTSTRAP_SERVERS" in line


def test_worker_checks_the_broker_then_the_champion(env: Path, capsys) -> None:
    assert "no Kafka broker reachable" in fails(capsys, "worker")


def test_unknown_commands_and_bad_values_are_one_line_too(env: Path, capsys) -> None:
    assert "No such command 'nosuch'" in fails(capsys, "nosuch")
    line = fails(capsys, "simulate", "--customers", "many")
    assert "--customers" in line and "fraud simulate --help" in line
