"""What both module-latency benchmarks share: the paper's Table IV and the stand-in networks.

`benchmarks.modules` (the CPU table, measured through the runtime's backends) and
`benchmarks.gpu_modules` (the GPU table, the networks alone) build the same random-weight
stand-ins from here. This module imports only the standard library when loaded, and torch,
transformers or groundingdino inside the functions that need them, never the runtime's own
dependencies (pydantic, structlog, MuJoCo): it has to work on a bare GPU image too.
"""

from __future__ import annotations

import contextlib
import io
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Table IV of the paper: inference time (ms) per module, on an NVIDIA GPU.
PAPER_MS: dict[str, float] = {
    "GroundingDINO-B": 148.6,
    "MixFormer-B": 103.4,
    "MixFormerV2-S": 17.0,
    "SAM-B": 18.2,
    "SAM-T": 10.1,
    "TPM": 34.8,
}

WEIGHTS_NOTE = (
    "random weights (no checkpoints here): latency depends on the architecture and input size, "
    "not on the weights"
)

#: The phrases of the task both tables time (apple into bowl: benchmarks.tracking_iou's
#: EPISODES[1]); they set Grounding DINO's caption and the stand-in BERT's vocabulary.
TASK_PHRASES: tuple[str, str] = ("apple", "bowl")


def _torch() -> Any:
    from models._loading import require

    return require("torch")


def standin_bert(folder: Path, phrases: Sequence[str]) -> Path:
    """A BERT-base-sized text encoder (12 layers, 768 wide) with random weights, saved locally.

    The vocabulary holds the phrases' words plus letters (so any word tokenizes): the embedding
    table is smaller than bert-base-uncased's, which changes no per-token cost.
    """
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for p in phrases for w in p.lower().split()})
    letters = list(string.ascii_lowercase)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?"]
    vocab = list(dict.fromkeys(specials + words + letters + [f"##{c}" for c in letters]))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    _torch().manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab))).save_pretrained(folder)
    return folder


def grounding_dino_model(variant: str, text_encoder: Path) -> Any:
    """A shipped Grounding DINO variant ("swint_ogc", "swinb_cogcoor") with random weights, on
    the CPU, in train mode as groundingdino builds it; `text_encoder` is a local BERT folder."""
    from importlib import resources

    from models._loading import offline_hub, require
    from models.detection.grounding_dino import VARIANTS

    offline_hub()
    require("groundingdino")
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig

    shipped = resources.files("groundingdino") / "config" / VARIANTS[variant][0]
    with resources.as_file(shipped) as path:
        args = SLConfig.fromfile(str(path))
    args.text_encoder_type = str(text_encoder)
    args.device = "cpu"
    _torch().manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # groundingdino prints the encoder path
        return build_model(args)


def mixformer_v2_s(template: int, search: int) -> Any:
    """A transformer of MixFormerV2-S's size and interface, for the ONNX tracker's latency.

    MixFormerV2-S (16.2M parameters, ~4.4 GFLOPs): a plain ViT over the template, online template
    and search tokens (patch 16) plus 4 prediction tokens, 8 blocks of width 384 with 6 heads,
    then a box head on the prediction tokens and a score head. Outputs: normalised (cx, cy, w, h)
    in the search crop and a score in [0, 1], as `models.tracking.onnx_tracker` expects.
    """
    torch = _torch()
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.heads = heads
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

        def forward(self, x: Any) -> Any:
            b, n, d = x.shape
            qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            attended = nn.functional.scaled_dot_product_attention(q, k, v)
            x = x + self.proj(attended.transpose(1, 2).reshape(b, n, d))
            return x + self.mlp(self.norm2(x))

    class MixFormerV2S(nn.Module):
        def __init__(self, dim: int = 384, depth: int = 8, heads: int = 6) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, dim, 16, 16)
            n_tokens = 2 * (template // 16) ** 2 + (search // 16) ** 2
            self.pos = nn.Parameter(torch.randn(1, n_tokens, dim) * 0.02)
            self.tokens = nn.Parameter(torch.randn(1, 4, dim) * 0.02)
            self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
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
