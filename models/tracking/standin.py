"""A random-weight network of MixFormerV2-S's size and interface, and its ONNX export.

No MixFormerV2 checkpoint can be downloaded here, yet the ONNX tracker (`onnx_tracker`) has to be
timed (`python -m agent bench modules`, `benchmarks.gpu_modules`) and run end to end in tests. This
is the one definition of that stand-in: a plain ViT over the template, online template and search
crops, with MixFormerV2's inputs and outputs, so the backend's own loading, cropping and box
mapping run on it. Its latency depends on the architecture and the input size, not on the weights;
its boxes mean nothing. torch is imported inside the functions: this module loads without it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models._loading import require

#: MixFormerV2's input and output names, as `onnx_tracker.read_signature` looks for them.
INPUT_NAMES = ("template", "online_template", "search")
OUTPUT_NAMES = ("pred_boxes", "pred_scores")


def mixformer_v2_s(
    template: int, search: int, *, dim: int = 384, depth: int = 8, heads: int = 6
) -> Any:
    """A transformer of MixFormerV2-S's size (the defaults) and interface, in eval mode.

    MixFormerV2-S (16.2M parameters, ~4.4 GFLOPs): a plain ViT over the template, online template
    and search tokens (patch 16) plus 4 prediction tokens, 8 blocks of width 384 with 6 heads,
    then a box head on the prediction tokens and a score head. Outputs: normalised (cx, cy, w, h)
    in the search crop and a score in [0, 1], as `models.tracking.onnx_tracker` expects. Smaller
    `dim` / `depth` / `heads` give the same interface at a test's size. Seeded: the same weights
    every call.
    """
    require("torch")  # names the extra to install when it is missing
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

        def forward(self, x: Any) -> Any:
            b, n, d = x.shape
            qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, heads, d // heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            attended = nn.functional.scaled_dot_product_attention(q, k, v)
            x = x + self.proj(attended.transpose(1, 2).reshape(b, n, d))
            return x + self.mlp(self.norm2(x))

    class MixFormerV2S(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, dim, 16, 16)
            n_tokens = 2 * (template // 16) ** 2 + (search // 16) ** 2
            self.pos = nn.Parameter(torch.randn(1, n_tokens, dim) * 0.02)
            self.tokens = nn.Parameter(torch.randn(1, 4, dim) * 0.02)
            self.blocks = nn.Sequential(*[Block() for _ in range(depth)])
            self.norm = nn.LayerNorm(dim)
            self.box = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))
            self.score = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))

        def forward(self, template: Any, online: Any, search: Any) -> tuple[Any, Any]:
            patches = [self.embed(x).flatten(2).transpose(1, 2) for x in (template, online, search)]
            x = torch.cat(patches, dim=1) + self.pos
            x = torch.cat([self.tokens.expand(x.shape[0], -1, -1), x], dim=1)
            x = self.norm(self.blocks(x))
            box = self.box(x[:, :4]).reshape(-1, 4).sigmoid()
            score = self.score(x[:, :4].mean(dim=1)).sigmoid()
            return box, score

    torch.manual_seed(0)
    return MixFormerV2S().eval()


def export_tracker(
    model: Any,
    path: Path,
    template: int,
    search: int,
    *,
    online: bool = True,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] = OUTPUT_NAMES,
) -> Path:
    """Write `model` (template crop(s) + search crop in, box + score out) as an ONNX tracker.

    The legacy TorchScript exporter at opset 17, as MixFormerV2's community exports are made;
    `online` adds the online template input. Default names are MixFormerV2's (`INPUT_NAMES`,
    `OUTPUT_NAMES`); other names test the backend's discovery by position.
    """
    torch = require("torch")
    crops = [torch.zeros(1, 3, template, template) for _ in range(2 if online else 1)]
    crops.append(torch.zeros(1, 3, search, search))
    names = list(input_names or (INPUT_NAMES if online else (INPUT_NAMES[0], INPUT_NAMES[2])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            model,
            tuple(crops),
            str(path),
            input_names=names,
            output_names=list(output_names),
            opset_version=17,
            dynamo=False,
        )
    return path
