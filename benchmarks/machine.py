"""What a benchmark ran on, the thread pinning every benchmark applies before measuring, and
the cells and markdown tables every benchmark reports in.

Latency numbers mean nothing without the machine: CPU model, cores, load (this project's dev
machine is shared, so the load average goes with every result), GPU, library versions and the ONNX
Runtime providers. Versions are read from package metadata, so describing the machine imports no
heavy library; torch is asked for a GPU only when something already imported it.

Thread pinning: measured here, torch with 2 threads on a loaded 2-core machine ran 10x slower than
with 1 (FINDINGS), and OpenCV by default starts a thread per core. A benchmark therefore pins
torch, ONNX Runtime (through the backends' `threads` argument) and OpenCV to the same count.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata
from typing import Any

#: Distributions whose versions matter for latency (missing ones are left out of the report).
LIBRARIES = (
    "numpy",
    "opencv-contrib-python-headless",
    "opencv-python",
    "torch",
    "torchvision",
    "onnxruntime-gpu",
    "onnxruntime",
    "segment-anything",
    "mobilesam-mirror",
    "groundingdino-py",
    "transformers",
    "ik-llama-cpp-python",
    "mujoco",
    "anyio",
)


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may use (the affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def gpu_name() -> str | None:
    """The first GPU's name: from torch when already imported with CUDA, else nvidia-smi."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return str(torch.cuda.get_device_name(0))
    return nvidia_smi("name")


def nvidia_smi(field: str) -> str | None:
    """One `--query-gpu` field of the first GPU (e.g. "name", "driver_version"), or None."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, f"--query-gpu={field}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    values = [line.strip() for line in out.splitlines() if line.strip()]
    return values[0] if values else None


def ms_cell(value: float | None) -> str:
    """A latency in ms for a table cell: thousands separated, 3 significant digits below 10."""
    if value is None:
        return "-"
    if value >= 10:
        return f"{value:,.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def markdown_row(cells: Sequence[object]) -> str:
    """One markdown table line; a '|' inside a cell becomes '/'."""
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table: the header line, the separator, a line per row (see `markdown_row`)."""
    lines = [markdown_row(columns), "|---" * len(columns) + "|"]
    return "\n".join(lines + [markdown_row(cells) for cells in rows])


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def ort_providers() -> list[str]:
    """Providers ONNX Runtime lists (a listed CUDA provider may still fall back to the CPU)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def machine_info() -> dict[str, Any]:
    """Everything a result file needs to say where its numbers come from."""
    return {
        "recorded": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "load_average": load_average(),
        "gpu": gpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "onnxruntime_providers": ort_providers(),
    }


def describe(info: dict[str, Any]) -> str:
    """One line for a table's caption, e.g. 'AMD EPYC ..., 2 cores, no GPU, load 1.5/2.4/2.8'."""
    load = info.get("load_average")
    load_text = "/".join(f"{v:g}" for v in load) if load else "n/a"
    gpu = info.get("gpu") or "no GPU"
    return f"{info['cpu']}, {info['cores']} cores, {gpu}, load {load_text} (1/5/15 min)"


def device_slug(info: dict[str, Any]) -> str:
    """A file-name tag for the device results belong to: 'cpu' or the GPU's name."""
    gpu = info.get("gpu")
    if not gpu:
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")


def preload_torch() -> bool:
    """Import torch and torchvision now, before anything renders with MuJoCo; False if absent.

    Measured here: importing torchvision (which imports triton and its bundled LLVM) after an EGL
    context on Mesa's llvmpipe exists kills the process with a segmentation fault inside
    libtriton; in the other order both work. The runtime builds its models before the cameras
    open, so it loads them in the safe order; a benchmark that renders frames first must not.
    """
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True
