"""Architecture rules that code review alone would let slip: import direction, module
docstrings and file size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("adapters", "server", "trainer", "ui", "swaplora")
FORBIDDEN = {
    "adapters": {"server", "trainer", "ui", "swaplora"},
    "server": {"trainer", "ui", "swaplora"},
    "trainer": {"server", "ui", "swaplora"},
    "ui": {"server", "trainer", "adapters", "swaplora"},
}


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_rules(path: Path) -> None:
    package = path.relative_to(ROOT).parts[0]
    bad = imported_roots(path) & FORBIDDEN.get(package, set())
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.relative_to(ROOT)} needs a module docstring stating its contract"
    assert len(path.read_text().splitlines()) <= 400, f"{path.relative_to(ROOT)} is over 400 lines"


def test_engine_never_imports_starlette() -> None:
    for name in ("engine", "kv_batch", "sampling", "detokenizer", "adapter_cache"):
        roots = imported_roots(ROOT / "server" / f"{name}.py")
        assert not roots & {"starlette", "sse_starlette", "uvicorn"}, name


def test_rules_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from server.engine import Engine\nimport trainer\n")
    assert {"server", "trainer"} <= imported_roots(bad)
