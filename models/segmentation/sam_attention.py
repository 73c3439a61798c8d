"""SAM's ViT image-encoder attention through one fused kernel (opt-in: `sam.fast_attention`).

segment-anything's encoder attention (`segment_anything.modeling.image_encoder.Attention`, in
ViT-B/L/H; MobileSAM's TinyViT has its own) builds the whole attention map by hand:
`(q * scale) @ k^T`, plus MViTv2's decomposed relative-position terms (one learned table per image
axis, `add_decomposed_rel_pos`), softmax, `@ v`. Those relative-position terms do not depend on
the keys' content, so they can be handed to `torch.nn.functional.scaled_dot_product_attention`
as an additive `attn_mask`: the output is the same function of the input (equal up to float
rounding), but the scores, softmax and weighted sum run in one fused kernel (memory-efficient
attention on CUDA) instead of separate passes over a heads x N x N map.

It also removes what stops the encoder from being captured in a CUDA graph: the package's
`get_rel_pos` makes its index with `torch.arange` on the CPU on every call and indexes the
table (on the GPU) with it, a host-to-device copy ("Cannot copy between CPU and CUDA tensors
during CUDA graph capture"); here the index is made on the table's device.

`use_sdpa_attention(module)` rebinds `forward` of every such Attention instance inside `module`
(`types.MethodType`, per instance): the class, the weights and the state dict are untouched, so
checkpoints load as before, and other SAM models in the process keep the package's attention.
"""

from __future__ import annotations

import types
from typing import Any


def _attention_class() -> Any:
    from segment_anything.modeling.image_encoder import Attention

    return Attention


def axis_table(q_size: int, k_size: int, table: Any) -> Any:
    """(q_size, k_size, C): one axis's relative-position embedding for every (query, key) pair.

    The package's rule (a table of another length is resampled linearly to 2 * max - 1 rows;
    the shorter axis's coordinates are stretched to the longer one's), with the index tensor made
    on the table's device instead of the CPU.
    """
    import torch
    import torch.nn.functional as F

    rows = 2 * max(q_size, k_size) - 1
    if table.shape[0] != rows:
        table = F.interpolate(table.t()[None], size=rows, mode="linear")[0].t()
    q_stretch, k_stretch = max(k_size / q_size, 1.0), max(q_size / k_size, 1.0)
    q_pos = torch.arange(q_size, device=table.device)[:, None] * q_stretch
    k_pos = torch.arange(k_size, device=table.device)[None, :] * k_stretch
    return table[(q_pos - k_pos + (k_size - 1) * k_stretch).long()]


def rel_pos_bias(q: Any, table_h: Any, table_w: Any, height: int, width: int) -> Any:
    """The additive mask (B, heads, N, N), N = height * width: for query (y, x) and key (y', x'),
    <q, R_h[y, y']> + <q, R_w[x, x']> with the unscaled query, as in the package."""
    import torch

    batch, heads, tokens, _ = q.shape
    grid = q.reshape(batch, heads, height, width, -1)
    along_h = torch.einsum("bnyxc,ykc->bnyxk", grid, axis_table(height, height, table_h))
    along_w = torch.einsum("bnyxc,xkc->bnyxk", grid, axis_table(width, width, table_w))
    return (along_h[..., :, None] + along_w[..., None, :]).reshape(batch, heads, tokens, tokens)


def sdpa_forward(self: Any, x: Any) -> Any:
    """`Attention.forward` for x of shape (B, H, W, dim) (a window or the whole token grid),
    with the attention through `scaled_dot_product_attention`; returns (B, H, W, dim)."""
    import torch.nn.functional as F

    batch, height, width, _ = x.shape
    tokens = height * width
    # (3, B, heads, N, head_dim): the package's qkv layout, kept per head instead of B * heads
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    mask = None
    if self.use_rel_pos:
        mask = rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, height, width)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
    return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))


def use_sdpa_attention(module: Any) -> int:
    """Route every segment-anything encoder Attention inside `module` (a Sam, its image encoder
    or a block) through `sdpa_forward`; returns how many were rebound (0: none there, e.g.
    MobileSAM's TinyViT). Idempotent; `uses_sdpa_attention` tells whether a module is rebound."""
    attention = _attention_class()
    count = 0
    for child in module.modules():
        if isinstance(child, attention):
            child.forward = types.MethodType(sdpa_forward, child)
            count += 1
    return count


def uses_sdpa_attention(module: Any) -> bool:
    """Whether `module` has segment-anything encoder Attentions and all run `sdpa_forward`."""
    attention = _attention_class()
    found = [child for child in module.modules() if isinstance(child, attention)]
    return bool(found) and all(
        getattr(child.forward, "__func__", None) is sdpa_forward for child in found
    )
