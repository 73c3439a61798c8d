"""Shared test setup: offscreen MuJoCo, pinned threads, and a small fast sim config."""

from __future__ import annotations

import os

from drivers.sim import offscreen_gl  # light: imports no mujoco

offscreen_gl()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import importlib.util  # noqa: E402

import pytest  # noqa: E402

# Importing triton after Mesa's llvmpipe has rendered in the same process segfaults (triton's
# bundled LLVM against the LLVM that llvmpipe loaded; reproduced with one MuJoCo EGL render then
# `import triton`). torch imports triton lazily (torch._dynamo, e.g. inside ONNX export), so a
# test that exports a network after another test rendered would take pytest down. Loading triton
# first, before anything renders, is the order that works. The CLI's own paths never render and
# then import it in one process (`bench loop --heavy` exports before it renders).
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

from agent.config import Config, load_config  # noqa: E402

#: The runtime's tests drive with the scripted expert (deterministic, and it finishes its task);
#: the shipped TPM policy, the sim default, has its own tests (test_cli, test_tpm_pipeline).
SMALL = [
    "models.policy=expert",
    "sim.image_width=96",
    "sim.image_height=96",
    "output.video=false",
    "runtime.max_duration_s=60",
]


@pytest.fixture
def small_config(tmp_path) -> Config:
    """The sim profile with small images, no video, runs written under tmp_path."""
    return load_config("sim", [*SMALL, f'output.runs_dir="{tmp_path / "runs"}"'])


def make_config(tmp_path, *overrides: str) -> Config:
    return load_config("sim", [*SMALL, f'output.runs_dir="{tmp_path / "runs"}"', *overrides])


def _require_all() -> bool:
    """`make test` (and so CI) sets this: a test that skips for a missing package is a failure,
    because the setup installs every extra and a silent skip would hide a broken install."""
    return os.environ.get("AGENT_REQUIRE_ALL_TESTS") == "1"


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter files it under "skipped"
def pytest_collectreport(report: pytest.CollectReport) -> None:
    if _require_all() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped where every test must run: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if _require_all() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped where every test must run: {report.longrepr}"
