"""The TPM policy in ONNX Runtime: the runtime's `models.policy = "tpm"` backend.

Providers are tried in order TensorRT (fp16, engines cached on disk so only the first start pays
the build), CUDA, CPU; `provider` says which one the session actually runs on (onnxruntime-gpu
lists GPU providers even where no GPU exists, FINDINGS). Session options: full graph optimisation,
an optimised model cached beside the engines, `threads` intra-op threads and one inter-op thread
(the runtime already runs perception and the policy in parallel worker threads).

Masks: the file's `mask_coding` metadata must be the coding perception paints
(`models.types.MASK_CODING`); a file with another one is refused at load (one line). A file
without the entry was exported before masks carried the skill (the shipped `tpm_cpu.onnx`): it is
read as `LEGACY_MASK_CODING`, and `act` recodes the percept's masks to it, so it keeps working.

`act` resizes the percept with the same `prepare_views` as the demonstrations, runs the graph
(normalisation and de-standardisation are inside it) and returns the move in metres and the
gripper decision. The policy never says `done`: the runtime's judge ends a successful episode, and
step and time budgets end the others.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from models._loading import Settings, require
from models.tpm.inputs import prepare_views
from models.types import (
    LEGACY_MASK_CODING,
    MASK_CODING,
    Action,
    MaskCoding,
    ModelError,
    Observation,
    Skill,
    TaskSpec,
)
from policies import DEFAULT as DEFAULT_POLICY

Provider = Literal["tensorrt", "cuda", "cpu"]
PROVIDERS: tuple[Provider, ...] = ("tensorrt", "cuda", "cpu")
#: The policy shipped with the package (an absolute path: `run` finds it from any folder, in a
#: checkout and in an installed wheel alike: `policies` is package data).
SHIPPED_POLICY = DEFAULT_POLICY
_ORT_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def _ort() -> Any:
    never_both = " (or onnxruntime-gpu from the gpu extra, never both)"
    return require("onnxruntime", "tpm", note=never_both)


def default_engine_cache() -> Path:
    """Where TensorRT engines are kept unless `engine_cache_dir` says: the user's cache folder.

    Not beside the ONNX file: the shipped policy lives in the installed package, which is often
    read-only (site-packages). ONNX Runtime names each engine by its graph's hash, so policies
    share the folder without clashing."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tpm-agent" / "tensorrt"


def _gpu_present() -> bool:
    """An NVIDIA driver is loaded (its device nodes exist); cheap and needs no CUDA library."""
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0"))


class PolicyConfig(Settings):
    """`[policy]`: the learned TPM policy (models.policy = "tpm"), an exported ONNX file and how
    to run it. `OnnxTPMPolicy(**config.model_dump())` builds it."""

    onnx: Path = Field(
        SHIPPED_POLICY,
        description="Exported policy (python -m agent export); the shipped one by default.",
    )
    providers: list[Provider] = Field(
        default_factory=lambda: list(PROVIDERS),
        min_length=1,
        description="ONNX Runtime providers, tried in order (GPU ones only where a GPU exists).",
    )
    engine_cache_dir: Path | None = Field(
        None,
        description="TensorRT engine cache (None: tpm-agent/tensorrt in the user's cache "
        "folder, $XDG_CACHE_HOME or ~/.cache).",
    )
    threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads.")


class OnnxTPMPolicy:
    """Loads an exported TPM file (models.tpm.export) and acts on observations."""

    name = "tpm"
    #: what its demonstrations cover (the scripted expert's skills); open_drawer has none yet
    skills = frozenset({Skill.PLACE_NEAR, Skill.PLACE_INSIDE, Skill.PLACE_ON})

    def __init__(
        self,
        onnx: str | Path,
        *,
        providers: Sequence[str] = PROVIDERS,
        engine_cache_dir: str | Path | None = None,
        threads: int = 1,
    ) -> None:
        ort = _ort()
        self.path = Path(onnx)
        if not self.path.is_file():
            raise ModelError(
                f"no TPM policy at {self.path} (train and export one: python -m agent collect, "
                "train, export; or set policy.onnx)"
            )
        unknown = [p for p in providers if p not in _ORT_NAMES]
        if unknown:
            raise ModelError(f"policy.providers: unknown {unknown}; allowed: {list(_ORT_NAMES)}")
        cache = Path(engine_cache_dir) if engine_cache_dir else default_engine_cache()
        available = set(ort.get_available_providers())
        if not _gpu_present():  # onnxruntime-gpu lists GPU providers on any machine
            available -= {_ORT_NAMES["tensorrt"], _ORT_NAMES["cuda"]}
        chosen: list[Any] = []
        for name in providers:
            ort_name = _ORT_NAMES[name]
            if ort_name not in available:
                continue
            if name == "tensorrt":
                try:
                    cache.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ModelError(
                        f"cannot create the TensorRT engine cache {cache} ({exc.strerror}): set "
                        "policy.engine_cache_dir to a writable folder"
                    ) from None
                chosen.append(
                    (
                        ort_name,
                        {
                            "trt_fp16_enable": True,
                            "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": str(cache),
                            "trt_timing_cache_enable": True,
                        },
                    )
                )
            else:
                chosen.append(ort_name)
        if "CPUExecutionProvider" not in [c if isinstance(c, str) else c[0] for c in chosen]:
            chosen.append("CPUExecutionProvider")  # always a way to run
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=chosen)
        except Exception as exc:  # a corrupt file or a provider that fails to initialise
            raise ModelError(f"cannot load TPM policy {self.path}: {exc}") from None
        self.provider = self.session.get_providers()[0]
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            config = json.loads(meta["tpm_config"])
        except (KeyError, ValueError):
            raise ModelError(f"{self.path} is not a TPM export (no tpm_config metadata)") from None
        self.views: tuple[str, ...] = tuple(config["views"])
        self.image_size: int = int(config["image_size"])
        self.mask_mode: str = config.get("mask_mode", "mask")
        self.training: dict[str, Any] = json.loads(meta.get("tpm_training", "{}"))
        self.mask_coding = read_mask_coding(self.path, meta)
        self.steps = 0
        self._skill = Skill.PLACE_NEAR

    def reset(self, task: TaskSpec) -> None:
        self.steps = 0
        self._skill = Skill(task.skill)

    def act(self, observation: Observation) -> Action:
        t0 = time.perf_counter()
        try:
            rgb, mask = prepare_views(
                observation.images, observation.masks, self.views, self.image_size
            )
        except KeyError as exc:
            raise ModelError(str(exc.args[0])) from None
        mask = MASK_CODING.recode(mask, self._skill, self.mask_coding)
        proprio = np.asarray(observation.proprio, dtype=np.float32).reshape(1, 4)
        move, logits = self.session.run(
            None, {"rgb": rgb[None], "mask": mask[None], "proprio": proprio}
        )
        self.steps += 1
        z = logits[0] - logits[0].max()
        p_closed = float(np.exp(z[1]) / np.exp(z).sum())
        return Action(
            move=np.asarray(move[0], dtype=float),
            gripper_closed=p_closed > 0.5,
            done=False,
            info={"p_closed": p_closed, "policy_ms": (time.perf_counter() - t0) * 1e3},
        )


def read_mask_coding(path: Path, meta: Mapping[str, str]) -> MaskCoding:
    """The mask coding a policy file was trained with; ModelError unless perception paints it.

    No `mask_coding` entry: a file from before masks carried the skill, read as
    `LEGACY_MASK_CODING` (its masks are recoded at each step).
    """
    text = meta.get("mask_coding")
    if text is None:
        return LEGACY_MASK_CODING
    try:
        coding = MaskCoding.from_json(text)
    except ValueError as exc:
        raise ModelError(f"{path}: unreadable mask_coding metadata: {exc}") from None
    if coding not in (MASK_CODING, LEGACY_MASK_CODING):
        raise ModelError(
            f"{path} was trained with another mask coding ({coding.describe()}) than perception "
            f"paints ({MASK_CODING.describe()}); retrain it or use a policy exported with this one"
        )
    return coding
