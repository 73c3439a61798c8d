"""Grounding DINO through groundingdino-py with random weights, loaded like a user's checkpoint.

No checkpoint or BERT can be downloaded here, so the module fixture builds the real model from the
package around a tiny locally saved BERT (two layers, a WordPiece vocabulary: FINDINGS), with
fewer decoder layers and queries than Swin-T OGC so a forward pass takes well under a second, and
saves its random weights the way the official file stores them (`{"model": state_dict}`). The
detector then loads that file through the same code a real checkpoint goes through.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.detection.grounding_dino import (
    GroundingDinoDetector,
    build_caption,
    cxcywh_to_pixel_box,
    match_phrases,
    phrase_token_masks,
    resized_shape,
)
from models.detection.standin import standin_bert
from models.types import Box, ModelError

torch = pytest.importorskip("torch")
pytest.importorskip("groundingdino")
pytestmark = pytest.mark.filterwarnings("ignore")  # groundingdino's and timm's deprecations
torch.set_num_threads(1)

WORDS = ["red", "apple", "bowl", "sponge", "milk", "carton", "the"]
# A smaller model config than the shipped Swin-T OGC one: same modules, fewer layers and queries.
SMALL_CONFIG = """
batch_size = 1
modelname = "groundingdino"
backbone = "swin_T_224_1k"
position_embedding = "sine"
pe_temperatureH = 20
pe_temperatureW = 20
return_interm_indices = [1, 2, 3]
backbone_freeze_keywords = None
enc_layers = 1
dec_layers = 2
pre_norm = False
dim_feedforward = 256
hidden_dim = 256
dropout = 0.0
nheads = 8
num_queries = 60
query_dim = 4
num_patterns = 0
num_feature_levels = 4
enc_n_points = 4
dec_n_points = 4
two_stage_type = "standard"
two_stage_bbox_embed_share = False
two_stage_class_embed_share = False
transformer_activation = "relu"
dec_pred_bbox_embed_share = True
dn_box_noise_scale = 1.0
dn_label_noise_ratio = 0.5
dn_label_coef = 1.0
dn_bbox_coef = 1.0
embed_init_tgt = True
dn_labelbook_size = 2000
max_text_len = 256
text_encoder_type = "bert-base-uncased"
use_text_enhancer = True
use_fusion_layer = True
use_checkpoint = False
use_transformer_ckpt = False
use_text_cross_attention = True
text_dropout = 0.0
fusion_dropout = 0.0
fusion_droppath = 0.1
sub_sentence_present = True
"""


def save_tiny_bert(folder: Path) -> Path:
    """A two-layer random BERT with a WordPiece vocabulary that spells any lower-case word."""
    return standin_bert(folder, WORDS, layers=2, width=32, heads=2, intermediate=64, digits=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny BERT folder, small model config, and a checkpoint of random weights."""
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig

    folder = tmp_path_factory.mktemp("grounding_dino")
    torch.manual_seed(0)  # random weights, but the same ones whichever tests ran before
    bert = save_tiny_bert(folder / "bert")
    config = folder / "small_cfg.py"
    config.write_text(SMALL_CONFIG)
    args = SLConfig.fromfile(str(config))
    args.text_encoder_type = str(bert)
    args.device = "cpu"
    torch.manual_seed(0)
    model = build_model(args)
    checkpoint = folder / "random.pth"
    torch.save({"model": model.state_dict(), "epoch": 0}, checkpoint)
    return {"bert": bert, "config": config, "checkpoint": checkpoint}


@pytest.fixture(scope="module")
def detector(files: dict[str, Path]) -> GroundingDinoDetector:
    return GroundingDinoDetector(
        files["checkpoint"],
        files["bert"],
        config_path=files["config"],
        box_threshold=0.0,  # random weights: let every query through, the matching still decides
        text_threshold=0.0,
        image_size=96,
        max_size=160,
        threads=1,
    )


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(90, 120, 3), dtype=np.uint8)


def test_loads_the_saved_weights(detector: GroundingDinoDetector, files: dict[str, Path]) -> None:
    saved = torch.load(files["checkpoint"], weights_only=True)["model"]
    loaded = detector.model.state_dict()
    for key in (
        "transformer.decoder.bbox_embed.0.layers.0.weight",
        "bert.encoder.layer.0.output.dense.weight",
    ):
        assert torch.equal(loaded[key], saved[key]), key


def test_detects_every_phrase_in_pixel_xyxy(detector: GroundingDinoDetector) -> None:
    image = _image()
    phrases = ["red apple", "bowl"]
    detections = detector.detect(image, phrases)
    # random weights: a phrase's best box may be too thin to track and is then left out
    assert detections and {d.label for d in detections} <= set(phrases)
    assert len({d.label for d in detections}) == len(detections)
    for detection in detections:
        box = detection.box
        assert 0 <= box.x0 < box.x1 <= 120 and 0 <= box.y0 < box.y1 <= 90
        assert 0.0 <= detection.score <= 1.0
    # the boxes are the model's own query boxes, converted from normalised cxcywh to pixels
    with torch.inference_mode():
        caption, _ = build_caption(phrases)
        out = detector.model(detector._tensor(image)[None], captions=[caption])
    pixel = [cxcywh_to_pixel_box(b, 120, 90) for b in out["pred_boxes"][0].numpy()]
    for detection in detections:
        assert any(detection.box.iou(p) > 0.999 for p in pixel)


def test_thresholds_reach_the_matching(detector: GroundingDinoDetector, monkeypatch) -> None:
    """Random weights saturate the logits, so the thresholds' effect is tested on the matching
    itself (below); here: the configured values are the ones the matching receives."""
    import models.detection.grounding_dino as gd

    seen = []

    def spy(probs, masks, box_threshold, text_threshold):
        seen.append((probs.shape, masks.shape, box_threshold, text_threshold))
        return []

    monkeypatch.setattr(gd, "match_phrases", spy)
    monkeypatch.setattr(detector, "box_threshold", 0.4)
    monkeypatch.setattr(detector, "text_threshold", 0.3)
    assert detector.detect(_image(), ["bowl", "red apple"]) == []
    ((probs_shape, masks_shape, box_threshold, text_threshold),) = seen
    assert probs_shape == (60, 256) and masks_shape[0] == 2
    assert (box_threshold, text_threshold) == (0.4, 0.3)
    assert detector.detect(_image(), []) == []


def test_bad_image_is_a_model_error(detector: GroundingDinoDetector) -> None:
    with pytest.raises(ModelError, match="uint8"):
        detector.detect(np.zeros((10, 10), np.float32), ["bowl"])


def test_missing_checkpoint_names_the_file(tmp_path: Path, files: dict[str, Path]) -> None:
    missing = tmp_path / "groundingdino_swint_ogc.pth"
    with pytest.raises(ModelError) as info:
        GroundingDinoDetector(missing, files["bert"])
    message = str(info.value)
    assert str(missing) in message and "grounding_dino.checkpoint" in message
    assert "\n" not in message


def test_missing_text_encoder_names_the_folder(tmp_path: Path, files: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match=r"grounding_dino\.text_encoder") as info:
        GroundingDinoDetector(files["checkpoint"], tmp_path / "bert-base-uncased")
    assert "\n" not in str(info.value)


def test_checkpoint_that_does_not_fit(tmp_path: Path, files: dict[str, Path]) -> None:
    state = torch.load(files["checkpoint"], weights_only=True)["model"]
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("transformer.decoder")}, partial)
    with pytest.raises(ModelError, match="lacks") as info:
        GroundingDinoDetector(partial, files["bert"], config_path=files["config"])
    assert "\n" not in str(info.value)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="could not be read"):
        GroundingDinoDetector(garbage, files["bert"], config_path=files["config"])


def test_default_paths_point_at_the_official_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match=r"checkpoints/groundingdino_swint_ogc\.pth"):
        GroundingDinoDetector()


# ---------------------------------------------------------------- phrase matching, no model


def test_caption_spans_and_tokens(files: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    caption, spans = build_caption(["Red  Apple", "bowl."])
    assert caption == "red apple . bowl ."
    assert [caption[a:b] for a, b in spans] == ["red apple", "bowl"]
    tokens = AutoTokenizer.from_pretrained(str(files["bert"]))(caption, return_offsets_mapping=True)
    masks = phrase_token_masks(tokens["offset_mapping"], spans)
    words = tokens.tokens()
    assert [w for w, m in zip(words, masks[0], strict=True) if m] == ["red", "apple"]
    assert [w for w, m in zip(words, masks[1], strict=True) if m] == ["bowl"]
    with pytest.raises(ValueError):
        build_caption([" . "])


def test_match_phrases_votes_and_thresholds() -> None:
    masks = np.array([[0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0]], dtype=bool)  # 2 phrases, 6 tokens
    probs = np.zeros((4, 8))
    probs[0, 1:3] = [0.9, 0.5]  # query 0: phrase 0
    probs[1, 4] = 0.8  # query 1: phrase 1
    probs[2, 2] = 0.95  # query 2: phrase 0, stronger than query 0
    probs[3, [1, 4]] = [0.6, 0.7]  # query 3: votes for phrase 1 (0.7) but query 1 is better
    matches = match_phrases(probs, masks, box_threshold=0.3, text_threshold=0.25)
    assert [(m.phrase, m.query) for m in matches] == [(0, 2), (1, 1)]
    assert matches[0].score == pytest.approx(0.95)
    # a box threshold above every query's best token leaves nothing
    assert match_phrases(probs, masks, box_threshold=0.96, text_threshold=0.0) == []
    # a phrase whose best candidate is under the text threshold is left out
    only_first = match_phrases(probs, masks, box_threshold=0.3, text_threshold=0.85)
    assert [(m.phrase, m.query) for m in only_first] == [(0, 2)]


def test_box_conversion_and_resize() -> None:
    assert cxcywh_to_pixel_box([0.5, 0.5, 0.5, 0.25], 200, 100) == Box(50, 37.5, 150, 62.5)
    clipped = cxcywh_to_pixel_box([0.05, 0.5, 0.2, 2.0], 200, 100)
    assert clipped.as_tuple() == pytest.approx((0, 0, 30, 100))
    assert resized_shape(480, 640, 800, 1333) == (800, 1067)
    assert resized_shape(100, 1000, 800, 1333) == (133, 1333)
