"""What every weight-loading backend shares: lazy heavy imports, checkpoint files, devices, ORT.

Grounding DINO, SAM / MobileSAM and the ONNX tracker all need the same few steps, and all must
fail the same way: one `ModelError` line that names the file the user has to provide or the extra
to install. Keeping these steps here means a backend module is only its model logic, and that the
messages stay consistent. Nothing heavy is imported at module level: `import models` stays fast.

Extras: torch and the model packages come with `tpm-agent[vision]`; ONNX Runtime comes with
`tpm-agent[gpu]` (the onnxruntime-gpu wheel, which also runs on the CPU provider; onnxruntime and
onnxruntime-gpu share one folder, so an environment gets exactly one of them).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from models.types import ModelError

VISION_EXTRA = "vision"
ORT_EXTRA = "gpu"

Device = Literal["cpu", "cuda", "auto"]


class Settings(BaseModel):
    """Base of each backend's settings class: frozen, an unknown key refused by name.

    A backend's class is its profile section as it stands (`agent.config` composes it), and
    the backend is built from the validated object's fields, so a setting is written once.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


def first_line(exc: BaseException) -> str:
    """The informative line of an exception message, for one-line errors.

    torch's load_state_dict puts a header line first ("Error(s) in loading state_dict for X:")
    and the useful part (which key, which shapes) on the next; other libraries lead with it.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading"):
        return lines[1]
    if lines and lines[0].startswith("Weights only load failed"):
        # torch.load(weights_only=True) refused the pickle: its header suggests weights_only=False
        # (running the file's code); the line that says what was refused comes later
        detail = [
            line
            for line in lines[1:]
            if not line.startswith(("Please file an issue", "Check the documentation"))
        ]
        return f"weights-only unpickler: {detail[0] if detail else 'refused'}"
    return lines[0] if lines else type(exc).__name__


#: Warnings that importing a dependency prints every time, harmless and not the user's to fix:
#: (package, category, message pattern). MobileSAM imports timm through timm's deprecated paths
#: and registers TinyViT models under names timm already has.
IMPORT_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    ("mobile_sam", FutureWarning, r"Importing from timm\.models\.\w+ is deprecated"),
    ("mobile_sam", UserWarning, r"Overwriting tiny_vit_\w+ in registry"),
)


def import_quietly(module: str) -> ModuleType:
    """`importlib.import_module`, without the known import-time warnings of IMPORT_WARNINGS.

    Only those (by package, category and message) are silenced; any other warning still shows.
    """
    package = module.split(".")[0]
    with warnings.catch_warnings():
        for name, category, message in IMPORT_WARNINGS:
            if name == package:
                warnings.filterwarnings("ignore", message=message, category=category)
        return importlib.import_module(module)


def require(
    module: str,
    extra: str = VISION_EXTRA,
    *,
    error: type[Exception] = ModelError,
    note: str = "",
) -> ModuleType:
    """Import `module` or raise one line naming the extra that provides it.

    The project's one "install the extra" message: models raise ModelError, callers above them
    pass their own one-line error class (`agent.backends.BackendError`, `DatasetError`), and
    `note` appends what else to know (e.g. which of two conflicting wheels).
    """
    try:
        return import_quietly(module)
    except ImportError as exc:
        raise error(
            f"{module} is not installed ({exc.name}); "
            f"install the extra: pip install 'tpm-agent[{extra}]'{note}"
        ) from None


def require_file(path: str | os.PathLike[str], what: str, key: str) -> Path:
    """`path` as a Path if it is a file, else a ModelError naming the file and the config key."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelError(f"{what} not found: {file} (set {key} to a local file)")
    return file


def require_dir(path: str | os.PathLike[str], what: str, key: str, needs: tuple[str, ...]) -> Path:
    """`path` as a Path if it is a folder holding one of `needs`, else a one-line ModelError."""
    folder = Path(path).expanduser()
    if not folder.is_dir() or not any((folder / name).is_file() for name in needs):
        raise ModelError(
            f"{what} not found: {folder} (set {key} to a local folder with {' or '.join(needs)})"
        )
    return folder


def offline_hub() -> None:
    """Forbid Hugging Face hub access before transformers is imported.

    Every model file here is local; a hidden download at run time would stall the robot (or fail
    on a machine without internet) instead of failing clearly at load time. setdefault keeps a
    user's explicit choice.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def torch_device(device: Device) -> str:
    """The torch device string for a config value ("auto": CUDA when torch sees one).

    "cuda" without CUDA is an error, not a silent CPU fallback: a 100x slower model would only
    show up later as missed deadlines.
    """
    torch = require("torch")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' requested but torch sees no CUDA device (use 'cpu')")
    return device


def set_torch_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (process-wide; None leaves torch's default).

    Measured here: 2 threads on a loaded 2-core machine ran 10x slower than 1 (FINDINGS), so the
    runtime passes its `runtime.torch_threads`.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        require("torch").set_num_threads(threads)


def load_state_dict(path: Path, what: str) -> dict[str, Any]:
    """Read a torch checkpoint as a state dict on the CPU, with `weights_only=True`.

    Accepts a bare state dict or one wrapped under "model" / "state_dict" (the official Grounding
    DINO files use "model"); a "module." prefix from DataParallel training is stripped. A file
    that is not a checkpoint gives one ModelError line naming it.
    """
    torch = require("torch")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip or torch errors: all mean "not a usable checkpoint"
        raise ModelError(
            f"{what} {path} could not be read as a torch checkpoint: {first_line(exc)}"
        ) from None
    for key in ("model", "state_dict"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping):
        raise ModelError(f"{what} {path} holds a {type(data).__name__}, not a state dict")
    return {str(k).removeprefix("module."): v for k, v in data.items()}


def onnx_session(path: Path, *, device: Device, threads: int | None, what: str) -> Any:
    """An ONNX Runtime session for `path` on `device`, with `threads` intra-op threads.

    The providers are asked for in order (CUDA, then CPU for "cuda"/"auto"); the session is then
    checked for the provider it really uses, because onnxruntime-gpu lists CUDA even on machines
    where it falls back to the CPU (FINDINGS).
    """
    ort = require("onnxruntime", ORT_EXTRA)
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    available = set(ort.get_available_providers())
    wanted = ["CPUExecutionProvider"]
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        wanted.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), options, providers=wanted)
    except Exception as exc:
        raise ModelError(
            f"{what} {path} could not be loaded by ONNX Runtime: {first_line(exc)}"
        ) from None
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise ModelError(
            f"{what}: device 'cuda' requested but ONNX Runtime runs on "
            f"{session.get_providers()[0]} (install onnxruntime-gpu with matching CUDA, or 'cpu')"
        )
    return session
