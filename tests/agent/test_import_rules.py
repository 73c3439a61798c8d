"""The house keeps its floors (ARCHITECTURE.md, "Which way the imports run").

`models/` and `drivers/` are plain blocking code: they never import each other, the runtime or the
benchmarks. `agent/` never imports `benchmarks/`, except the command line, which sits on top of
everything and dispatches the `bench` and `eval` verbs to them. Checked on the source (every
import statement, also the ones inside functions), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "models", "drivers", "benchmarks")
#: package -> the project packages it may import
ALLOWED: dict[str, set[str]] = {
    "models": set(),
    "drivers": set(),
    "agent": {"models", "drivers"},
    "benchmarks": {"agent", "models", "drivers"},
}
#: modules above their package's floor: the CLI runs the benchmarks' verbs
EXCEPTIONS: dict[str, set[str]] = {"agent/cli.py": {"benchmarks"}}


def imported_packages(path: Path) -> list[tuple[str, int]]:
    """(top-level project package, line) of every absolute import in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(n.split(".")[0], node.lineno) for n in names if n.split(".")[0] in PACKAGES]
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_the_floors_below_it(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        allowed = ALLOWED[package] | {package} | EXCEPTIONS.get(name, set())
        found = imported_packages(path)
        wrong += [f"{name}:{line} imports {top}" for top, line in found if top not in allowed]
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from agent.runtime import Runtime\n    import drivers.sim\n")
    assert imported_packages(module) == [("agent", 2), ("drivers", 3)]


def test_the_user_is_one_name_on_both_sides_of_the_floor() -> None:
    """The reasoners' place target and the simulated user figure must be the same word.

    Neither package may import the other, so each keeps its constant; this test is the link.
    """
    from drivers.sim.catalog import USER_NAME
    from models.types import USER

    assert USER_NAME == USER
