"""The secure stack's Redis ACL lets the scorer run every command its feature store sends."""

from __future__ import annotations

import re
from pathlib import Path

from stream.features import redis_store

SECURE_SH = Path(__file__).resolve().parents[3] / "ops" / "secure.sh"


def _scorer_commands() -> set[str]:
    text = SECURE_SH.read_text(encoding="utf-8")
    match = re.search(r"REDIS_SCORER_COMMANDS='([^']*)'", text)
    assert match, "REDIS_SCORER_COMMANDS not found in ops/secure.sh"
    return {rule[1:].lower() for rule in match.group(1).split() if rule.startswith("+")}


def test_every_command_of_the_store_scripts_and_rounds_is_allowed() -> None:
    allowed = _scorer_commands()
    in_scripts = {
        command.lower()
        for source in redis_store._SCRIPTS.values()
        for command in re.findall(r"redis\.call\('([A-Za-z]+)'", source)
    }
    source = Path(redis_store.__file__).read_text(encoding="utf-8")
    plain = {command.lower() for command in re.findall(r'_Call\([^,]+, "([A-Z]+)"', source)}
    assert {"zcount", "getrange", "set"} <= in_scripts and plain == {"mget"}
    assert not (in_scripts | plain | {"evalsha", "script|load"}) - allowed
