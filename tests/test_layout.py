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


ROOMS = {
    # package: (server modules it may import besides its own, third-party roots it must not import)
    "server/engine": ({"server.metrics"}, {"starlette", "sse_starlette", "uvicorn", "fastapi"}),
    "server/tenancy": ({"server.errors", "server.database", "server.metrics"}, set()),
    "server/jobs": (
        {
            "server.errors",
            "server.database",
            "server.metrics",
            "server.settings",
            "server.tenancy",
            "server.cpu_share",
            "server.services",
        },
        set(),
    ),
}
"""Each room of server/ and what it may reach: the engine nothing but metrics (and never the web
framework); tenancy and jobs never the engine, the routes or the app."""


def imported_modules(path: Path) -> set[str]:
    """Full names of the absolute imports of ``path`` (``from a.b import c`` gives ``a.b``)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_each_room_of_server_imports_only_what_it_may(room: str) -> None:
    allowed, banned = ROOMS[room]
    own = room.replace("/", ".")
    for path in sorted((ROOT / room).glob("*.py")):
        modules = imported_modules(path)
        outside = {m for m in modules if m.startswith("server") and m != own and not m.startswith(own + ".")}
        stray = {m for m in outside if not any(m == a or m.startswith(a + ".") for a in allowed)}
        assert not stray, f"{path.relative_to(ROOT)} imports {sorted(stray)}"
        assert not {m.split(".")[0] for m in modules} & banned, f"{path.relative_to(ROOT)} imports the web framework"
        assert ast.get_docstring(ast.parse((ROOT / room / "__init__.py").read_text())), f"{room} needs its contract"


def test_rules_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from server.engine.step_loop import Engine\nimport trainer\n")
    assert {"server", "trainer"} <= imported_roots(bad)
    assert {"server.engine.step_loop", "trainer"} <= imported_modules(bad)
