"""Typed, validated configuration: TOML profiles shipped with the package, a user file, overrides.

`load_config("sim")` reads `agent/profiles/sim.toml`; `load_config("my.toml")` reads a user file,
which may name a base profile with `profile = "sim"` and override only what differs;
`overrides=["runtime.control_hz=20", "models.tracker=kcf"]` apply last (values parsed as TOML).
Every error is a ConfigError whose message names the bad key and the allowed values.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A configuration problem, stated in one line a user can act on."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuntimeSection(_Section):
    control_hz: float = Field(10.0, gt=0, le=1000, description="Fixed rate of the command loop.")
    action_deadline_s: float = Field(
        0.6, gt=0, description="Actions from frames older than this are refused; the arm holds."
    )
    max_steps: int = Field(600, gt=0, description="Executed steps before the episode fails.")
    max_duration_s: float = Field(180.0, gt=0, description="Wall time before the episode fails.")
    camera_timeout_s: float = Field(2.0, gt=0, description="Deadline for one camera frame.")
    camera_failures: int = Field(3, ge=1, description="Consecutive camera timeouts that are fatal.")
    stage_timeout_s: float = Field(30.0, gt=0, description="Deadline for one model call.")
    reason_timeout_s: float = Field(60.0, gt=0, description="Deadline for the reasoner.")
    model_threads: int = Field(2, ge=1, description="Worker threads shared by model calls.")
    supervise_hz: float = Field(5.0, gt=0, description="Rate of success and budget checks.")
    settle_s: float = Field(1.5, ge=0, description="Wait after the policy says done, then judge.")
    torch_threads: int = Field(1, ge=1, description="Threads per torch / ONNX Runtime session.")
    when_busy: Literal["reject", "queue"] = Field(
        "reject",
        description="A second execute() while one runs: refuse it (RuntimeBusy) or wait its turn.",
    )


class SimSection(_Section):
    seed: int = 0
    objects: list[str] = Field(default_factory=lambda: ["sponge"])
    split: Literal["seen", "unseen"] = "seen"
    setting: Literal["standard", "new_background", "more_distractors"] = "standard"
    catalog: Path | None = Field(None, description="Replacement object catalog (TOML).")
    include_user: bool = True
    image_width: int = Field(224, ge=32, le=1920)
    image_height: int = Field(224, ge=32, le=1080)
    camera_fps: float = Field(10.0, gt=0, le=120)
    depth: bool = Field(False, description="Also render depth (costs ~30% more per frame).")
    max_step_m: float = Field(0.02, gt=0, le=0.1, description="Largest move per command.")


class CamerasSection(_Section):
    backend: Literal["sim"] = "sim"
    views: list[str] = Field(default_factory=lambda: ["front", "side"], min_length=1)


class RobotSection(_Section):
    backend: Literal["sim"] = "sim"


class ModelsSection(_Section):
    reasoner: Literal["rules", "offline", "openai"] = Field(
        "rules",
        description="rules: tables only (no extra); offline: tables + a small local language "
        "model (extra reasoning-lm); openai: an OpenAI-compatible server (extra llm), see "
        "[reasoning].",
    )
    detector: Literal["ground_truth", "grounding_dino"] = Field(
        "ground_truth",
        description="ground_truth: simulator boxes; grounding_dino: see [grounding_dino] "
        "(extra vision).",
    )
    tracker: Literal["csrt", "kcf", "mil", "onnx"] = Field(
        "csrt", description="OpenCV trackers (no weights), or onnx: see [onnx_tracker]."
    )
    segmenter: Literal["ground_truth", "grabcut", "box", "sam", "mobile_sam"] = Field(
        "ground_truth",
        description="box: the filled box (ablation); sam / mobile_sam: see [sam] / [mobile_sam] "
        "(extra vision).",
    )
    policy: Literal["expert"] = "expert"
    detect_every_frame: bool = False


class ReasoningSection(_Section):
    """Settings of the `openai` and `offline` reasoners (models.reasoner picks which runs)."""

    model: str = Field("gpt-4o", description="openai: model name the server knows.")
    base_url: str | None = Field(
        None, description="openai: server URL, e.g. http://127.0.0.1:8080/v1 (None: OpenAI)."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai: environment variable holding the API key."
    )
    timeout_s: float = Field(30.0, gt=0, description="openai: deadline of one HTTP request.")
    max_retries: int = Field(2, ge=0, le=10, description="openai: retries on 429 / 5xx / timeout.")
    response_format: Literal["auto", "json_schema", "json_object"] = Field(
        "auto", description="openai: auto tries json_schema, then json_object if refused."
    )
    lm_path: Path | None = Field(
        None, description="offline: a GGUF language model (None: the packaged Gemma 3 270M)."
    )
    lm_cache_dir: Path | None = Field(
        None, description="offline: where the packaged model is assembled (None: ~/.cache)."
    )
    lm_threads: int = Field(1, ge=1, description="offline: llama.cpp threads.")
    lm_threshold: float = Field(
        1.0, description="offline: least language-model score to pick an unlisted need's object."
    )
    lm_known_need_threshold: float = Field(
        3.0, description="offline: the same when a known need has no hint object in view."
    )


# ---- perception backends with weights (models.detector / tracker / segmenter pick which runs)
Device = Literal["cpu", "cuda", "auto"]


class GroundingDinoSection(_Section):
    """Grounding DINO from local files; nothing is fetched from the hub at run time."""

    variant: Literal["swint_ogc", "swinb_cogcoor"] = Field(
        "swint_ogc", description="Which model config shipped with groundingdino-py."
    )
    config_path: Path | None = Field(
        None, description="A groundingdino model config (.py) replacing the variant's."
    )
    checkpoint: Path | None = Field(
        None, description="Local .pth (None: checkpoints/groundingdino_<variant>.pth)."
    )
    text_encoder: Path = Field(
        Path("checkpoints/bert-base-uncased"),
        description="Local BERT folder (config.json, vocab.txt, weights).",
    )
    box_threshold: float = Field(0.35, ge=0, lt=1, description="Least best-token probability.")
    text_threshold: float = Field(0.25, ge=0, lt=1, description="Least phrase probability.")
    image_size: int = Field(800, ge=32, le=2048, description="Short side of the model input.")
    max_size: int = Field(1333, ge=32, le=4096, description="Cap on the long side.")
    device: Device = "cpu"

    @model_validator(mode="after")
    def _sizes(self) -> GroundingDinoSection:
        if self.max_size < self.image_size:
            raise ValueError(
                f"max_size ({self.max_size}) must be >= image_size ({self.image_size})"
            )
        return self


class _SamFields(_Section):
    checkpoint: Path | None = Field(
        None, description="Local checkpoint (None: checkpoints/<official file name>)."
    )
    onnx_encoder: Path | None = Field(
        None, description="Image encoder in ONNX Runtime (python -m models.segmentation.sam_onnx)."
    )
    onnx_decoder: Path | None = Field(
        None, description="Prompt decoder in ONNX Runtime (SamOnnxModel export)."
    )
    device: Device = "cpu"


class SamSection(_SamFields):
    """segment-anything SAM; the checkpoint is needed for the halves that run in torch."""

    variant: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"


class MobileSamSection(_SamFields):
    """MobileSAM (TinyViT, the paper's SAM-T) from mobilesam-mirror."""


class OnnxTrackerSection(_Section):
    """A MixFormerV2-style tracker exported to ONNX (template + search crops -> box, score)."""

    model: Path = Field(
        Path("checkpoints/mixformerv2_small.onnx"), description="The exported tracker."
    )
    template_size: int = Field(112, ge=8, description="Template crop side (static inputs win).")
    search_size: int = Field(224, ge=8, description="Search crop side (static inputs win).")
    template_factor: float = Field(2.0, gt=0, description="Template crop / box side.")
    search_factor: float = Field(4.5, gt=0, description="Search crop / box side.")
    min_score: float = Field(0.3, ge=0, le=1, description="A lower score counts as lost.")
    score_activation: Literal["none", "sigmoid"] = Field(
        "none", description="sigmoid when the model outputs a logit."
    )
    update_interval: int = Field(200, ge=1, description="Frames between online-template updates.")
    device: Device = "cpu"


class OutputSection(_Section):
    runs_dir: Path = Path("runs")
    video: bool = True
    video_format: Literal["mp4", "gif"] = "mp4"
    video_fps: float = Field(10.0, gt=0)


class Config(_Section):
    profile: str = "sim"
    runtime: RuntimeSection = RuntimeSection()
    sim: SimSection = SimSection()
    cameras: CamerasSection = CamerasSection()
    robot: RobotSection = RobotSection()
    models: ModelsSection = ModelsSection()
    reasoning: ReasoningSection = ReasoningSection()
    grounding_dino: GroundingDinoSection = GroundingDinoSection()
    sam: SamSection = SamSection()
    mobile_sam: MobileSamSection = MobileSamSection()
    onnx_tracker: OnnxTrackerSection = OnnxTrackerSection()
    output: OutputSection = OutputSection()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if (self.models.detector == "ground_truth" or self.models.policy == "expert") and (
            self.cameras.backend != "sim"
        ):
            raise ValueError(
                "models.detector 'ground_truth' and models.policy 'expert' "
                "need cameras.backend 'sim'"
            )
        return self


def profiles() -> list[str]:
    """Names of the profiles shipped with the package."""
    folder = resources.files("agent") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_config(
    source: str | Path | Mapping[str, Any] = "sim",
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> Config:
    """Load a profile name, a TOML file or a mapping; apply overrides; validate.

    Raises ConfigError with one line naming the key and what is allowed.
    """
    if _is_profile_name(source):
        data = _read_profile(str(source))
        data["profile"] = str(source)
    else:
        data = _read_source(source)
        base = data.get("profile")
        if base is not None:  # a user file or mapping names the profile it refines
            data = _deep_merge(_read_profile(str(base)), data)
    for key, value in _parse_overrides(overrides).items():
        _set_dotted(data, key, value)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _is_profile_name(source: object) -> bool:
    return isinstance(source, str) and not source.endswith(".toml") and "/" not in source


def _read_source(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return _deep_merge({}, source)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def _read_profile(name: str) -> dict[str, Any]:
    if name not in profiles():
        raise ConfigError(f"unknown profile {name!r}; allowed: {', '.join(profiles())}")
    text = (resources.files("agent") / "profiles" / f"{name}.toml").read_text()
    return tomllib.loads(text)


def _parse_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(overrides, Mapping):
        return dict(overrides)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. runtime.control_hz=20)")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word such as kcf
        parsed[key.strip()] = value
    return parsed


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        elif isinstance(value, Mapping):
            out[key] = _deep_merge({}, value)
        else:
            out[key] = value
    return out


def _describe(exc: ValidationError) -> str:
    """First validation error as one line: dotted key, what was given, what is allowed."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "config"
    if err["type"] == "extra_forbidden":
        section = _section_for(err["loc"][:-1])
        allowed = ", ".join(section.model_fields) if section else ""
        return f"unknown config key {key!r}; allowed here: {allowed}"
    if err["type"] == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{key}: {err['input']!r} is not allowed; allowed: {expected}"
    if err["type"] == "value_error":
        return f"{key}: {err['msg'].removeprefix('Value error, ')}"
    return f"{key}: {err['msg']} (got {err.get('input')!r})"


def _section_for(loc: Sequence[Any]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model
