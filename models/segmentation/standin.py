"""A smoke-test-sized SAM: segment-anything's own classes, small enough for one CPU thread.

SAM ViT-B takes seconds per frame on a CPU; tests of code that wraps its image encoder
(`sam_attention`) and the GPU benchmark's CPU smoke mode (`benchmarks.gpu_modules --quick`)
need the same classes and code path in a fraction of a second. segment-anything is imported
inside the function: this module loads without it.
"""

from __future__ import annotations

from functools import partial
from typing import Any


def tiny_sam() -> Any:
    """segment-anything's SAM classes at a smoke-test size (ViT depth 2, width 64, 128x128 input,
    window 4 with the second block global, relative positions on): the code path of ViT-B in a
    fraction of a second on one CPU thread."""
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    side, patch, width = 128, 16, 32
    encoder = ImageEncoderViT(
        img_size=side,
        patch_size=patch,
        embed_dim=64,
        depth=2,
        num_heads=2,
        out_chans=width,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=4,
        global_attn_indexes=(1,),
    )
    prompts = PromptEncoder(
        embed_dim=width,
        image_embedding_size=(side // patch, side // patch),
        input_image_size=(side, side),
        mask_in_chans=8,
    )
    transformer = TwoWayTransformer(depth=2, embedding_dim=width, mlp_dim=64, num_heads=2)
    decoder = MaskDecoder(
        transformer_dim=width, transformer=transformer, iou_head_depth=3, iou_head_hidden_dim=64
    )
    return Sam(encoder, prompts, decoder).eval()
