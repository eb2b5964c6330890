"""Label records and `fraud label` argument handling (no Kafka needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import typer
from typer.testing import CliRunner

from fraud.cli import feedback as feedback_cli
from fraud.errors import ValidationError
from fraud.settings import Settings
from fraud.times import iso_utc
from schemas import validator
from stream.feedback import build_label, check_analyst_id

MOMENT = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def test_build_label_gives_a_schema_valid_record_with_utc_time() -> None:
    record = build_label("tx-1", "fraud", "ana.lyst-7@bank", labelled_at=MOMENT, note="stolen")
    assert record == {
        "transaction_id": "tx-1",
        "label": "fraud",
        "analyst_id": "ana.lyst-7@bank",
        "labelled_at": "2026-03-04T05:06:07.890123Z",
        "source": "analyst",
        "note": "stolen",
    }
    assert validator("feedback")(record) == record


def test_build_label_leaves_out_an_absent_note_and_converts_other_zones_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    record = build_label("tx-2", "legit", "a1", labelled_at=datetime(2026, 3, 4, 6, tzinfo=paris))
    assert "note" not in record
    assert record["labelled_at"] == "2026-03-04T05:00:00.000000Z"


def test_chargebacks_use_the_reserved_analyst_id() -> None:
    record = build_label("tx-3", "fraud", "chargeback", labelled_at=MOMENT, source="chargeback")
    assert record["source"] == "chargeback" and record["analyst_id"] == "chargeback"
    with pytest.raises(ValidationError, match="reserved for chargebacks") as caught:
        build_label("tx-3", "fraud", "chargeback", labelled_at=MOMENT)
    assert caught.value.field == "analyst_id"
    with pytest.raises(ValidationError, match="reserved for chargebacks"):
        build_label("tx-3", "fraud", "analyst-1", labelled_at=MOMENT, source="chargeback")


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"label": "maybe"}, "label", "label must be one of"),
        ({"analyst_id": ""}, "analyst_id", "analyst id '' is not valid"),
        ({"analyst_id": "jane doe"}, "analyst_id", "is not valid"),
        ({"analyst_id": "-jane"}, "analyst_id", "is not valid"),
        ({"analyst_id": "a" * 65}, "analyst_id", "is not valid"),
        ({"transaction_id": ""}, "transaction_id", "transaction_id"),
        ({"transaction_id": "t" * 65}, "transaction_id", "transaction_id"),
        ({"note": "x" * 2001}, "note", "note"),
        ({"source": "rumour"}, "source", "source must be one of"),
        ({"labelled_at": datetime(2026, 3, 4)}, "labelled_at", "timezone-aware"),
    ],
)
def test_build_label_rejects_bad_fields_naming_them(kwargs: dict, field: str, message: str) -> None:
    arguments = {"transaction_id": "tx-1", "label": "fraud", "analyst_id": "a1"}
    arguments.update(kwargs)
    with pytest.raises(ValidationError, match=message) as caught:
        build_label(
            arguments.pop("transaction_id"),
            arguments.pop("label"),
            arguments.pop("analyst_id"),
            labelled_at=arguments.pop("labelled_at", MOMENT),
            **arguments,
        )
    assert caught.value.field == field


def test_analyst_ids_allow_the_documented_characters_only() -> None:
    assert check_analyst_id("A") == "A"
    assert check_analyst_id("j.doe_2@fraud-ops") == "j.doe_2@fraud-ops"
    assert check_analyst_id("a" * 64) == "a" * 64
    for bad in ("", " a", "a/b", "é", "a\n"):
        with pytest.raises(ValidationError):
            check_analyst_id(bad)


def test_iso_utc_keeps_microseconds() -> None:
    assert iso_utc(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000000Z"


# -- the command's argument checks: they fail before any broker is contacted ---------------


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def main(ctx: typer.Context) -> None:
        # Nothing listens on port 1: a command that got as far as Kafka would fail differently.
        ctx.obj = Settings(kafka_bootstrap_servers="127.0.0.1:1")

    feedback_cli.register(root)
    return root


def flat(output: str) -> str:
    """The output without the error box's borders and line breaks."""
    return " ".join(output.translate(str.maketrans("", "", "│╭╮╰╯─")).split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tx-1", "--analyst", "a1"], "give exactly one of --fraud or --legit"),
        (["tx-1", "--fraud", "--legit", "--analyst", "a1"], "(not both)"),
        (["tx-1", "--fraud", "--analyst", "jane doe"], "analyst id 'jane doe' is not valid"),
        (["tx-1", "--fraud", "--analyst", "chargeback"], "reserved for chargebacks"),
        (["tx-1", "--legit"], "Missing option"),
        (["tx-1", "--fraud", "--analyst", "a1", "--note", "x" * 2001], "note"),
        (["t" * 65, "--fraud", "--analyst", "a1"], "transaction_id"),
        (["tx-1", "--fraud", "--analyst", "a1", "--at", "yesterday"], "is not an ISO 8601 time"),
    ],
)
def test_label_rejects_bad_arguments_with_exit_code_2(
    app: typer.Typer, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["label", *args, "--timeout", "0.5"])
    assert result.exit_code == 2, result.output
    assert message in flat(result.output), result.output
    assert "published" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--error-rate", "1.5"], "--error-rate"),
        (["--analysts", "a1,chargeback"], "other than 'chargeback'"),
        (["--analysts", "a1,jane doe"], "is not valid"),
        (["--analysts", ","], "at least one analyst"),
        (["--review-delay", "-1"], "--review-delay"),
    ],
)
def test_analyst_rejects_bad_arguments_with_exit_code_2(
    app: typer.Typer, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["analyst", *args, "--duration", "0.1"])
    assert result.exit_code == 2, result.output
    assert message in flat(result.output), result.output
