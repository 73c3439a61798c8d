"""`python -m agent doctor`: what this machine can run, without starting anything heavy.

Each check imports one optional dependency (or probes one device) and reports ok / missing with
the version or the reason and, when missing, the extra that brings it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from agent.display import plain_console
from drivers.sim import offscreen_gl
from models._loading import import_quietly


@dataclass(frozen=True)
class Check:
    group: str
    name: str
    ok: bool
    detail: str
    fix: str = ""


PACKAGES = [
    # (group, import name, distribution, extra)
    ("sim", "mujoco", "mujoco", "sim"),
    ("sim", "franky_sim", "franky-sim", "sim"),
    ("sim", "imageio_ffmpeg", "imageio-ffmpeg", "sim"),
    ("vision", "cv2", "opencv-contrib-python-headless", "core"),
    ("robot", "franky", "franky-control", "real"),
    ("robot", "panda_py", "panda-python", "real"),
    ("camera", "pyrealsense2", "pyrealsense2", "real"),
    ("camera", "pyk4a", "pyk4a", "kinect"),
    ("inference", "onnxruntime", "onnxruntime-gpu", "gpu"),
    ("inference", "torch", "torch", "vision"),
    ("vision", "groundingdino", "groundingdino-py", "vision"),
    ("vision", "transformers", "transformers", "vision"),
    ("vision", "segment_anything", "segment-anything", "vision"),
    ("vision", "mobile_sam", "mobilesam-mirror", "vision"),
]


def _package(group: str, module: str, dist: str, extra: str) -> Check:
    try:
        import_quietly(module)  # without the known noise of some packages (MobileSAM's timm)
    except Exception as exc:  # ImportError, or a broken native library
        fix = "" if extra == "core" else f"pip install 'tpm-agent[{extra}]'"
        return Check(group, module, False, f"{type(exc).__name__}: {exc}".splitlines()[0], fix)
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = "installed"
    return Check(group, module, True, version)


def _trackers() -> Check:
    import cv2

    names = [n for n in ("TrackerCSRT", "TrackerKCF", "TrackerMIL") if hasattr(cv2, n)]
    return Check(
        "vision",
        "opencv trackers",
        bool(names),
        ", ".join(names) or "none",
        "" if names else "install opencv-contrib-python-headless",
    )


def _renderer() -> Check:
    """Render one tiny frame in a subprocess, so a broken GL stack cannot take this process down."""
    backend = offscreen_gl()
    code = (
        'import mujoco; m = mujoco.MjModel.from_xml_string(\'<mujoco><worldbody><geom size="1"/>'
        "</worldbody></mujoco>'); r = mujoco.Renderer(m, 8, 8); d = mujoco.MjData(m); "
        "r.update_scene(d); print(r.render().shape)"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "MUJOCO_GL": backend},
        )
    except subprocess.TimeoutExpired:
        return Check("sim", f"renderer ({backend})", False, "timed out after 60 s")
    if proc.returncode == 0:
        return Check("sim", f"renderer ({backend})", True, "offscreen rendering works")
    last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
    return Check(
        "sim",
        f"renderer ({backend})",
        False,
        last,
        "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0",
    )


def _onnx_providers() -> Check:
    try:
        import onnxruntime as ort
    except ImportError:
        return Check(
            "inference",
            "onnxruntime providers",
            False,
            "onnxruntime missing",
            "pip install 'tpm-agent[gpu]'",
        )
    return Check(
        "inference", "onnxruntime providers", True, ", ".join(ort.get_available_providers())
    )


def _gpu() -> Check:
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return Check("device", "gpu", False, "no NVIDIA GPU found (nvidia-smi absent)")
    names = proc.stdout.strip()
    return Check("device", "gpu", bool(names) and proc.returncode == 0, names or "none")


def _camera_devices() -> list[Check]:
    """Connected RealSense and Azure Kinect cameras with their serials (for cameras.devices)."""
    from drivers.cameras import azure_kinect, realsense

    checks = []
    for name, module in (("realsense cameras", realsense), ("azure kinect cameras", azure_kinect)):
        try:
            found = module.list_devices()
        except Exception as exc:  # SDK missing (CameraError names the extra) or a broken USB stack
            checks.append(Check("device", name, False, str(exc).splitlines()[0]))
            continue
        detail = ", ".join(f"{d['name']} serial {d['serial']}" for d in found)
        checks.append(Check("device", name, bool(found), detail or "none connected"))
    return checks


_DINO_RELEASES = "https://github.com/IDEA-Research/GroundingDINO/releases"
_SAM_FILES = "https://dl.fbaipublicfiles.com/segment_anything"
_SAM_ONNX = "export it: python -m models.segmentation.sam_onnx (docs/perception.md)"


def _source(key: str, config: Any) -> str:
    """Where a missing model file comes from: the upstream download, or how to make it."""
    from models.detection.grounding_dino import VARIANTS as DINO
    from models.segmentation.sam import VARIANTS as SAM

    dino = config.grounding_dino.variant
    release = "v0.1.0-alpha" if dino == "swint_ogc" else "v0.1.0-alpha2"
    sources = {
        "grounding_dino.checkpoint": f"download it from {_DINO_RELEASES}/download/{release}/"
        f"{DINO[dino][1]}",
        "grounding_dino.text_encoder": "save Hugging Face's bert-base-uncased there "
        "(AutoModel / AutoTokenizer .save_pretrained)",
        "grounding_dino.config_path": "point it at a groundingdino model config (.py)",
        "sam.checkpoint": f"download it from {_SAM_FILES}/{SAM[config.sam.variant][1]}",
        "sam.onnx_encoder": _SAM_ONNX,
        "sam.onnx_decoder": _SAM_ONNX,
        "mobile_sam.checkpoint": "download it from "
        "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        "mobile_sam.onnx_encoder": _SAM_ONNX,
        "mobile_sam.onnx_decoder": _SAM_ONNX,
        "onnx_tracker.model": "export a MixFormerV2 tracker to ONNX (docs/perception.md)",
        "policy.onnx": "export one there (python -m agent export)",
    }
    return sources[key]


def _weights(config: Any) -> list[tuple[Check, bool]]:
    """Each model file the config names (or its default path): present or missing.

    Returns (check, in_use) pairs: in_use when the configured detector / tracker / segmenter
    needs that file, so a missing one makes the profile not ready.
    """
    from models.detection.grounding_dino import default_checkpoint as dino_default
    from models.segmentation.sam import default_checkpoint as sam_default

    m, g = config.models, config.grounding_dino
    sam_torch = config.sam.onnx_encoder is None or config.sam.onnx_decoder is None
    mobile_torch = config.mobile_sam.onnx_encoder is None or config.mobile_sam.onnx_decoder is None
    files: list[tuple[str, Any, bool]] = [
        ("grounding_dino.checkpoint", g.checkpoint or dino_default(g.variant), True),
        ("grounding_dino.text_encoder", g.text_encoder, True),
        ("grounding_dino.config_path", g.config_path, True),
        ("sam.checkpoint", config.sam.checkpoint or sam_default(config.sam.variant), sam_torch),
        ("sam.onnx_encoder", config.sam.onnx_encoder, True),
        ("sam.onnx_decoder", config.sam.onnx_decoder, True),
        (
            "mobile_sam.checkpoint",
            config.mobile_sam.checkpoint or sam_default("vit_t"),
            mobile_torch,
        ),
        ("mobile_sam.onnx_encoder", config.mobile_sam.onnx_encoder, True),
        ("mobile_sam.onnx_decoder", config.mobile_sam.onnx_decoder, True),
        ("onnx_tracker.model", config.onnx_tracker.model, True),
        ("policy.onnx", config.policy.onnx, True),
    ]
    selected = {
        m.detector,
        m.segmenter,
        "onnx_tracker" if m.tracker == "onnx" else "",
        "policy" if m.policy == "tpm" else "",
    }
    checks = []
    for key, path, needed in files:
        if path is None:
            continue
        section = key.split(".")[0]
        in_use = section in selected and needed
        present = os.path.exists(path)
        use = "in use" if in_use else "not selected"
        checks.append(
            (
                Check(
                    "weights",
                    key,
                    present,
                    f"{path} ({use})",
                    "" if present else f"{_source(key, config)}, or set {key}",
                ),
                in_use,
            )
        )
    return checks


def collect(config: Any = None) -> list[Check]:
    checks = [
        Check(
            "system",
            "python",
            True,
            f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores",
        )
    ]
    checks += [_package(*row) for row in PACKAGES]
    checks += [_trackers(), _renderer(), _onnx_providers(), _gpu(), *_camera_devices()]
    checks += [check for check, _ in _weights(_config(config))]
    return checks


def _config(config: Any) -> Any:
    if config is not None:
        return config
    from agent.config import load_config

    return load_config("sim")


def run_doctor(*, as_json: bool = False, config: Any = None) -> int:
    """Print the report; exit 0 when the profile (default: sim) can run, 1 otherwise.

    Model files count only when the configured backends use them.
    """
    checks = collect(config)
    required = {"mujoco", "franky_sim", "cv2", "opencv trackers"}
    resolved = _config(config)
    required |= {check.name for check, in_use in _weights(resolved) if in_use}
    if resolved.models.policy == "tpm":
        required.add("onnxruntime")  # the TPM policy runs in ONNX Runtime
    ready = all(c.ok for c in checks if c.name in required or c.name.startswith("renderer"))
    if as_json:
        print(json.dumps({"sim_ready": ready, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        render(checks, resolved.profile, ready, plain_console())
    return 0 if ready else 1


def render(checks: list[Check], profile: str, ready: bool, console: Console) -> None:
    """The report as a table, then the verdict for `profile`."""
    table = Table()
    for column in ("group", "check", "status", "detail", "fix"):
        table.add_column(column)
    for c in checks:
        status = Text("ok", "green") if c.ok else Text("missing", "yellow")
        # Text, not markup: "pip install 'tpm-agent[kinect]'" would lose "[kinect]" as a style tag
        table.add_row(c.group, c.name, status, Text(c.detail), Text(c.fix))
    console.print("tpm-agent doctor")  # not the table's title: rich pads that to the table's width
    console.print(table)
    verdict = "[green]ready[/green]" if ready else "[red]not ready[/red]"
    console.print(f"{escape(profile)} profile: {verdict}")
