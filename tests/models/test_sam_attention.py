"""SAM's encoder attention through scaled_dot_product_attention (`sam.fast_attention`).

The SDPA forward must be the package's attention with another kernel: same output on random
inputs and random relative-position tables (fp32, CPU, a small ViT of the same classes), with
window padding, global blocks and a resampled table; and it must make no CPU tensor on the way
(the package's index tensor is what breaks CUDA-graph capture), checked on the meta device.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import pytest

from models.types import ModelError

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")
from segment_anything.modeling.image_encoder import Attention, ImageEncoderViT  # noqa: E402

from models.segmentation.sam_attention import (  # noqa: E402
    sdpa_forward,
    use_sdpa_attention,
    uses_sdpa_attention,
)

torch.set_num_threads(1)


def small_encoder(window: int = 4) -> ImageEncoderViT:
    """ViT-B's classes, small: depth 2 (block 0 windowed, block 1 global), width 64, 128x128."""
    torch.manual_seed(0)
    encoder = ImageEncoderViT(
        img_size=128,
        patch_size=16,
        embed_dim=64,
        depth=2,
        num_heads=2,
        out_chans=32,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=window,
        global_attn_indexes=(1,),
    )
    for block in encoder.blocks:  # zero-initialised by the package: make them count
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.5)
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.5)
    return encoder.eval()


@pytest.mark.parametrize("window", [4, 3])  # 8x8 tokens: 3 pads the windows to 9x9
def test_the_sdpa_encoder_matches_the_package(window: int) -> None:
    reference = small_encoder(window)
    fast = copy.deepcopy(reference)
    assert use_sdpa_attention(fast) == 2
    assert uses_sdpa_attention(fast) and not uses_sdpa_attention(reference)
    x = torch.randn(2, 3, 128, 128)
    with torch.inference_mode():
        expected, got = reference(x), fast(x)
    assert got.shape == expected.shape == (2, 32, 8, 8)
    assert (got - expected).abs().max().item() < 1e-4


def test_a_resampled_table_and_no_rel_pos_match_too() -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 7, 5, 32)  # a grid the tables were not made for: 2*7-1 != 2*4-1 rows
    for rel_pos in (True, False):
        attention = Attention(32, num_heads=4, use_rel_pos=rel_pos, input_size=(4, 4)).eval()
        if rel_pos:
            torch.nn.init.normal_(attention.rel_pos_h)
            torch.nn.init.normal_(attention.rel_pos_w)
        with torch.inference_mode():
            expected = attention(x)
            got = sdpa_forward(attention, x)
        assert (got - expected).abs().max().item() < 1e-4


class _Devices(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the devices of every tensor an op takes or returns."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        leaves = torch.utils._pytree.tree_flatten((args, kwargs, out))[0]
        self.devices |= {t.device.type for t in leaves if isinstance(t, torch.Tensor)}
        return out


def test_the_sdpa_path_makes_no_cpu_tensor() -> None:
    """What CUDA-graph capture needs: every tensor on the model's device (meta here)."""
    reference = small_encoder(3).to("meta")
    fast = copy.deepcopy(reference)
    use_sdpa_attention(fast)
    x = torch.randn(1, 3, 128, 128, device="meta")
    seen = {}
    for name, model in (("package", reference), ("sdpa", fast)):
        mode = _Devices()
        with torch.inference_mode(), mode:
            assert model(x).shape == (1, 32, 8, 8)
        seen[name] = mode.devices
    assert "cpu" in seen["package"]  # get_rel_pos's torch.arange: the capture failure
    assert seen["sdpa"] == {"meta"}


def test_the_segmenter_applies_it_to_vit_encoders_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.segmentation.sam as sam_module
    from models.segmentation.standin import tiny_sam

    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"")
    monkeypatch.setattr(sam_module, "build_sam", lambda variant, file: tiny_sam())
    fast = sam_module.SamSegmenter("vit_b", checkpoint, threads=1, fast_attention=True)
    plain = sam_module.SamSegmenter("vit_b", checkpoint, threads=1)
    assert uses_sdpa_attention(fast.model.image_encoder) and fast.fast_attention
    assert not uses_sdpa_attention(plain.model.image_encoder)
    with pytest.raises(ModelError, match=r"mobile_sam\.fast_attention .*TinyViT"):
        sam_module.SamSegmenter("vit_t", checkpoint, fast_attention=True)
    with pytest.raises(ModelError, match=r"sam\.onnx_encoder is set"):
        sam_module.SamSegmenter("vit_b", onnx_encoder=checkpoint, fast_attention=True)
