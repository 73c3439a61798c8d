"""`pip install .` (not editable) gives a working package: the `tpm-agent` console script, the
profiles and the shipped policies inside it, found from any folder.

The wheel is built from a copy of the sources (so nothing stale under the checkout's build/ can
slip in) without build isolation and without the network, and installed with `--no-deps` into a
fresh venv. Only then does that venv get the project venv's site-packages as a further site
folder (a .pth file): the dependencies are the ones already installed, instead of gigabytes
downloaded again, while `agent`, `models`, `drivers` and `policies` come from the wheel, as the
test checks. Nothing is faked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("agent", "models", "drivers", "benchmarks", "policies", "pyproject.toml", "README.md")


def _run(*args: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ort_cache")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=skip)
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path / "dist"
    pip = (sys.executable, "-m", "pip")
    proc = _run(
        *pip,
        "wheel",
        src,
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        dist,
        cwd=tmp_path,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = dist.glob("tpm_agent-*.whl")
    return wheel


@pytest.mark.timeout(300)
def test_the_wheel_installs_a_working_tpm_agent_with_its_policies(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "policies/tpm_cpu.onnx",
        "policies/variants/tpm_cpu_box.onnx",
        "agent/profiles/sim.toml",
        "agent/profiles/real.toml",
        "drivers/sim/data/objects.toml",
    ):
        assert data in names, f"{data} is not in the wheel"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "tpm-agent = agent.__main__:entry" in zipfile.ZipFile(wheel).read(entry_points).decode()

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    proc = _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        "--ignore-installed",
        wheel,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    purelib = _run(
        python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path
    ).stdout.strip()
    project_site = sysconfig.get_path("purelib")
    (Path(purelib) / "zz_project_site.pth").write_text(
        f"import site; site.addsitedir({project_site!r})\n"
    )

    where = _run(
        python,
        "-c",
        "import agent, policies; from models.tpm.onnx_policy import "
        "OnnxTPMPolicy, SHIPPED_POLICY; OnnxTPMPolicy(SHIPPED_POLICY); "
        "print(agent.__file__); print(SHIPPED_POLICY)",
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    agent_file, policy = where.stdout.split()
    assert agent_file.startswith(purelib) and policy.startswith(purelib), where.stdout

    script = env_dir / "bin" / "tpm-agent"
    doctor = _run(script, "doctor", "--json", cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["policy.onnx"]["ok"], checks["policy.onnx"]
    assert checks["policy.onnx"]["detail"] == f"{policy} (in use)"
    profile = _run(script, "config", "--profile", "real", cwd=tmp_path)
    assert profile.returncode == 0 and json.loads(profile.stdout)["profile"] == "real"
    usage = _run(script, "run", cwd=tmp_path)  # the script names itself in a usage error
    assert usage.returncode == 2 and usage.stderr.strip().endswith("(see tpm-agent run --help)")
