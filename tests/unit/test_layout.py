"""The layout's rules hold: imports only go down (import-linter contracts), callers use each
subpackage's front module, and every front module says what it offers."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import ROOT

PACKAGES = ("fraud", "schemas", "stream", "training", "simulator", "bench", "demo", "console")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _subpackages() -> list[str]:
    found = []
    for init in sorted(ROOT.glob("*/*/__init__.py")):
        package = ".".join(init.parent.relative_to(ROOT).parts)
        if package.split(".")[0] in ("stream", "training"):
            found.append(package)
    return found


def _modules() -> list[tuple[str, Path]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.with_suffix("").relative_to(ROOT).parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found.append((name, path))
    return found


def _lint_imports(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("stream/edge/pan.py", "import training"),
        ("stream/features/kernels.py", "from stream.worker import BatchHandler"),
        ("training/data/split.py", "from training.governance import promote"),
    ],
)
def test_an_upward_import_breaks_the_contracts(tmp_path: Path, module: str, upward: str) -> None:
    for name in (*PACKAGES, "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    with (tmp_path / module).open("a", encoding="utf-8") as handle:
        handle.write(f"\n{upward}  # noqa\n")
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout
    assert "BROKEN" in result.stdout
    importer = module.removesuffix(".py").replace("/", ".")
    assert f"{importer} ->" in result.stdout


def test_front_modules_say_what_they_offer() -> None:
    for package in _subpackages():
        init = ROOT / package.replace(".", "/") / "__init__.py"
        tree = ast.parse(init.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{package} has no docstring saying what it offers"
        exported = [
            node
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        ]
        assert exported, f"{package}/__init__.py has no __all__"


def test_callers_import_from_front_modules_not_internals() -> None:
    """Outside a subpackage, code imports what its front module exports, not its modules."""
    subpackages = _subpackages()
    reaching_in = []
    for name, path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            owner = next((s for s in subpackages if node.module.startswith(s + ".")), None)
            if owner and not (name == owner or name.startswith(owner + ".")):
                reaching_in.append(f"{name}: from {node.module} import ...")
    assert not reaching_in, "\n".join(reaching_in)


def test_every_module_opens_with_what_it_promises() -> None:
    missing = [
        name
        for name, path in _modules()
        if path.name != "__init__.py" or path.stat().st_size > 0
        if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not missing, f"modules without a docstring: {missing}"
