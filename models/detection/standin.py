"""Random-weight stand-ins for Grounding DINO and its BERT text encoder, saved or built locally.

No checkpoint can be downloaded here, yet the Grounding DINO backend (`grounding_dino`) has to be
timed (`benchmarks.modules`, `benchmarks.gpu_modules`) and run end to end in tests. These are the
one definition of those stand-ins: the backend then loads them through its own loading code.
Latency depends on the architecture and the input size, not on the weights. transformers and
groundingdino are imported inside the functions: this module loads without them.
"""

from __future__ import annotations

import contextlib
import gc
import io
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models._loading import offline_hub, require

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?")


def standin_bert(
    folder: Path,
    phrases: Sequence[str],
    *,
    layers: int = 12,
    width: int = 768,
    heads: int = 12,
    intermediate: int = 3072,
    digits: bool = False,
) -> Path:
    """A BERT text encoder with random weights (BERT-base's size by default), saved in `folder`.

    The WordPiece vocabulary holds the phrases' words plus letters (so any word tokenizes;
    with `digits`, any number too): the embedding table is smaller than bert-base-uncased's,
    which changes no per-token cost. Smaller `layers` / `width` give a test-sized encoder.
    Seeded: the same weights every call.
    """
    transformers = require("transformers")
    folder.mkdir(parents=True, exist_ok=True)
    words = [w for p in phrases for w in p.lower().split()]
    letters = list(string.ascii_lowercase)
    vocab = list(
        dict.fromkeys(
            [*SPECIAL_TOKENS, *words, *letters, *(f"##{c}" for c in letters)]
            + (list(string.digits) if digits else [])
        )
    )
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
    )
    require("torch").manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def write_grounding_dino(variant: str, text_encoder: Path, path: Path) -> Path:
    """`grounding_dino_model`'s random weights saved as the official checkpoints store them
    (`{"model": state_dict}`), for the backend to load like a user's file; the model is freed
    (Swin-B's weights are ~1 GB)."""
    model = grounding_dino_model(variant, text_encoder)
    require("torch").save({"model": model.state_dict()}, path)
    del model
    gc.collect()
    return path


def grounding_dino_model(variant: str, text_encoder: Path) -> Any:
    """A shipped Grounding DINO variant ("swint_ogc", "swinb_cogcoor") with random weights, on
    the CPU, in train mode as groundingdino builds it; `text_encoder` is a local BERT folder.
    Seeded: the same weights every call."""
    from importlib import resources

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
    require("torch").manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # groundingdino prints the encoder path
        return build_model(args)
