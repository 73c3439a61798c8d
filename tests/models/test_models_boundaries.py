"""`models/` is plain blocking code: it never imports the runtime (`agent`) or the drivers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[2] / "models"
FORBIDDEN = {"agent", "drivers"}


@pytest.mark.parametrize(
    "path", sorted(MODELS.rglob("*.py")), ids=lambda p: str(p.relative_to(MODELS))
)
def test_no_import_of_agent_or_drivers(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots = {node.module.split(".")[0]}
        else:
            continue
        assert not roots & FORBIDDEN, f"{path.name}:{node.lineno} imports {roots & FORBIDDEN}"


def test_pipeline_and_reasoner_import_without_opencv() -> None:
    """The perceive loop's module and the default reasoner stay cheap to import."""
    code = "import sys, models.perception, models.reasoning; print('cv2' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=MODELS.parent
    )
    assert result.stdout.strip() == "False"
