"""SAM (vit_b) and MobileSAM (vit_t) from their packages with random weights, torch and ONNX paths.

Checkpoints cannot be downloaded here, so each fixture builds the real module, saves its random
weights to a file and lets `SamSegmenter` load that file through the code a user's checkpoint
goes through. SAM's encoder always runs at 1024 x 1024 (the package fixes the size), which costs
~20-45 s for ViT-B on one thread here: the ViT-B frame is segmented once per module and its
result shared; the cheaper TinyViT carries the parity and ONNX Runtime checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.segmentation.sam import SamSegmenter, build_sam
from models.types import Box, ModelError

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")
pytest.importorskip("mobile_sam")
pytestmark = pytest.mark.filterwarnings("ignore")  # timm / legacy ONNX exporter deprecations
torch.set_num_threads(1)

HEIGHT, WIDTH = 48, 64
BOXES = [Box(4, 6, 30, 40), Box(33.5, 10.2, 60.7, 44.9)]


def _image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def _save(variant: str, path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(build_sam(variant, None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def mobile_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save("vit_t", tmp_path_factory.mktemp("mobile_sam") / "mobile_sam.pt")


@pytest.fixture(scope="module")
def mobile(mobile_checkpoint: Path) -> SamSegmenter:
    return SamSegmenter("vit_t", mobile_checkpoint, threads=1)


@pytest.fixture(scope="module")
def mobile_onnx(mobile: SamSegmenter, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from models.segmentation.sam_onnx import export_decoder, export_encoder

    folder = tmp_path_factory.mktemp("mobile_sam_onnx")
    return {
        "encoder": export_encoder(mobile.model, folder / "encoder.onnx"),
        "decoder": export_decoder(mobile.model, folder / "decoder.onnx"),
    }


@pytest.fixture(scope="module")
def mobile_masks(mobile: SamSegmenter) -> list[np.ndarray]:
    before = mobile.encoder_calls
    masks = mobile.segment(_image(), BOXES, labels=["pick", "place"])
    assert mobile.encoder_calls == before + 1  # one embedding shared by both boxes
    return masks


@pytest.fixture(scope="module")
def vit_b(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """ViT-B built, saved, loaded and run once (the slow part of this module)."""
    checkpoint = _save("vit_b", tmp_path_factory.mktemp("sam_vit_b") / "sam_vit_b.pth")
    segmenter = SamSegmenter("vit_b", checkpoint, threads=1)
    masks = segmenter.segment(_image(), BOXES)
    return {"checkpoint": checkpoint, "segmenter": segmenter, "masks": masks}


def _check_masks(masks: list[np.ndarray]) -> None:
    assert len(masks) == len(BOXES)
    for mask in masks:
        assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == np.bool_


def test_vit_b_end_to_end(vit_b: dict[str, Any]) -> None:
    segmenter = vit_b["segmenter"]
    assert segmenter.name == "sam" and segmenter.encoder_calls == 1
    _check_masks(vit_b["masks"])
    saved = torch.load(vit_b["checkpoint"], weights_only=True)
    key = "image_encoder.blocks.11.mlp.lin2.weight"
    assert torch.equal(segmenter.model.state_dict()[key], saved[key])


def test_vit_b_onnx_decoder_matches_torch(vit_b: dict[str, Any], tmp_path: Path) -> None:
    """The same embedding through segment-anything's SamOnnxModel export and through torch."""
    from models.segmentation.sam_onnx import export_decoder

    torch_side = vit_b["segmenter"]
    decoder = export_decoder(torch_side.model, tmp_path / "decoder.onnx")
    onnx_side = SamSegmenter("vit_b", vit_b["checkpoint"], onnx_decoder=decoder, threads=1)
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(1))
    prompts = torch_side._resize.apply_boxes(
        np.array([b.as_tuple() for b in BOXES]), (HEIGHT, WIDTH)
    ).astype(np.float32)
    expected = torch_side._decode_torch(embedding, prompts, (HEIGHT, WIDTH))
    for prompt, want in zip(prompts, expected, strict=True):
        got = onnx_side._decode_onnx(embedding.numpy(), prompt, (HEIGHT, WIDTH))
        assert got.shape == want.shape and (got == want).mean() > 0.99


def test_mobile_sam_end_to_end(mobile: SamSegmenter, mobile_masks: list[np.ndarray]) -> None:
    assert mobile.name == "mobile_sam"
    _check_masks(mobile_masks)
    assert mobile.segment(_image(), []) == []


def test_matches_the_package_predictor(
    mobile: SamSegmenter, mobile_masks: list[np.ndarray]
) -> None:
    """Same masks as mobile_sam's SamPredictor (set_image, then predict with a pixel xyxy box)."""
    from mobile_sam import SamPredictor

    predictor = SamPredictor(mobile.model)
    predictor.set_image(_image())
    for box, ours in zip(BOXES, mobile_masks, strict=True):
        theirs, _, _ = predictor.predict(box=np.array(box.as_tuple()), multimask_output=False)
        assert np.array_equal(theirs[0], ours)


def test_mobile_sam_all_onnx(
    mobile_onnx: dict[str, Path], mobile_masks: list[np.ndarray], tmp_path: Path
) -> None:
    """Encoder and decoder in ONNX Runtime: no checkpoint needed, masks agree with torch."""
    segmenter = SamSegmenter(
        "vit_t",
        tmp_path / "absent.pt",
        onnx_encoder=mobile_onnx["encoder"],
        onnx_decoder=mobile_onnx["decoder"],
        threads=1,
    )
    assert segmenter.model is None
    masks = segmenter.segment(_image(), BOXES)
    _check_masks(masks)
    for got, want in zip(masks, mobile_masks, strict=True):
        assert (got == want).mean() > 0.99


def test_missing_checkpoint_names_file_and_key(tmp_path: Path) -> None:
    missing = tmp_path / "sam_vit_h_4b8939.pth"
    with pytest.raises(ModelError) as info:
        SamSegmenter("vit_h", missing)
    message = str(info.value)
    assert str(missing) in message and "sam.checkpoint" in message and "\n" not in message
    with pytest.raises(ModelError, match=r"mobile_sam\.onnx_decoder"):
        SamSegmenter("vit_t", onnx_decoder=tmp_path / "decoder.onnx")


def test_default_checkpoint_is_the_official_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match=r"checkpoints/mobile_sam\.pt"):
        SamSegmenter("vit_t")


def test_wrong_checkpoint_does_not_fit(mobile_checkpoint: Path) -> None:
    with pytest.raises(ModelError, match="does not fit vit_b") as info:
        SamSegmenter("vit_b", mobile_checkpoint)
    assert "\n" not in str(info.value)


def test_decoder_file_with_other_inputs(tmp_path: Path, mobile_onnx: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="SamOnnxModel inputs"):
        SamSegmenter(
            "vit_t", onnx_encoder=mobile_onnx["encoder"], onnx_decoder=mobile_onnx["encoder"]
        )


def test_bad_image(mobile: SamSegmenter) -> None:
    with pytest.raises(ModelError, match="uint8"):
        mobile.segment(np.zeros((8, 8, 3), np.float32), BOXES)
