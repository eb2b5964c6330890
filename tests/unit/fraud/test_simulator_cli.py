"""`fraud simulate` / `fraud produce` argument handling (no Kafka needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fraud.cli import simulate as simulator_cli
from fraud.settings import Settings


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """The simulator's commands under a root like `fraud`'s (settings in ctx.obj)."""
    root = typer.Typer()

    @root.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = Settings()

    simulator_cli.register(root)
    return root


def run(app: typer.Typer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_simulate_writes_the_files_and_a_summary(app: typer.Typer, tmp_path: Path) -> None:
    code, output = run(
        app,
        *("simulate", "--customers", "200", "--days", "3", "--seed", "2"),
        *("--out", str(tmp_path), "--start", "2026-03-30", "--scenarios", "mimicry,atm_cashout"),
    )
    assert code == 0, output
    assert "transactions" in output and "fraud rate" in output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["parameters"]["scenarios"] == ["mimicry", "atm_cashout"]
    assert manifest["start_date"] == "2026-03-30" and manifest["end_date"] == "2026-04-01"
    assert set(manifest["fraud_by_scenario"]) == {"mimicry", "atm_cashout"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2026-13-01"], "expected a date YYYY-MM-DD"),
        (["--start", "yesterday"], "expected a date YYYY-MM-DD"),
        (["--scenarios", "mimicry,teleport"], "unknown scenario teleport"),
        (["--scenarios", ","], "unknown scenario"),
        (["--customers", "0"], "--customers"),
        (["--days", "0"], "--days"),
        (["--days", "many"], "--days"),
    ],
)
def test_simulate_rejects_bad_arguments_with_a_clear_message(
    app: typer.Typer, tmp_path: Path, args: list[str], message: str
) -> None:
    code, output = run(app, "simulate", "--out", str(tmp_path), *args)
    assert code != 0
    assert message in output
    assert not (tmp_path / "manifest.json").exists()


def test_simulate_refuses_a_file_as_output_folder(app: typer.Typer, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    code, output = run(app, "simulate", "--customers", "10", "--days", "1", "--out", str(target))
    assert code != 0 and "is not a folder" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "teleport"], "unknown scenario 'teleport'"),
        (["--scenario", "mimicry"], "already runs in live traffic"),
        (["--scenario-at", "5"], "--scenario-at needs --scenario"),
        (["--rate", "0"], "--rate"),
        (["--duration", "-1"], "--duration"),
        (["--malformed-rate", "1.5"], "--malformed-rate"),
        (["--start", "2026-03-32"], "expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"),
        (["--start", "2026-03-02T10:00:00"], "expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"),
    ],
)
def test_produce_rejects_bad_arguments_before_touching_kafka(
    app: typer.Typer, args: list[str], message: str
) -> None:
    # An address nothing listens on: had the arguments passed, the error would be a broker one.
    code, output = run(app, "produce", "--bootstrap", "127.0.0.1:9", *args)
    assert code != 0
    assert message in output
    assert "no Kafka broker" not in output


def test_produce_start_takes_a_date_or_an_aware_time() -> None:
    import datetime as dt

    parse = simulator_cli._parse_moment
    assert parse("2026-03-02") == dt.date(2026, 3, 2)
    assert parse("2026-03-02T06:30:00Z") == dt.datetime(2026, 3, 2, 6, 30, tzinfo=dt.UTC)
    assert parse("2026-03-02T08:30:00+02:00").astimezone(dt.UTC) == dt.datetime(
        2026, 3, 2, 6, 30, tzinfo=dt.UTC
    )
