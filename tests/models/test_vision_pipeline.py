"""The configured weight backends, built by `agent.backends` from config keys, in the pipeline.

Switching detector, tracker or segmenter is a config change: this builds Grounding DINO, the ONNX
tracker and MobileSAM from a config that points at files saved here (random weights, a tiny
BERT, a tiny tracker of MixFormerV2's interface), and pushes synthetic frames through
`PerceptionPipeline`: detect, track, segment, role-coded masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.backends import BackendError, build_perception
from models.detection.grounding_dino import GroundingDinoDetector
from models.perception import PerceptionPipeline
from models.segmentation.sam import SamSegmenter, build_sam
from models.tracking.onnx_tracker import OnnxTrackerFactory
from models.tracking.standin import export_tracker, mixformer_v2_s
from models.types import MASK_CODING, PICK_MASK_VALUE, Skill, TaskSpec
from tests.conftest import make_config
from tests.synthetic import SyntheticObject, render_scene

torch = pytest.importorskip("torch")
pytest.importorskip("groundingdino")
pytest.importorskip("mobile_sam")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig

    from tests.models.test_vision_detection import SMALL_CONFIG, save_tiny_bert

    folder = tmp_path_factory.mktemp("vision_config")
    torch.manual_seed(0)  # the random detector must find both objects: fixed weights
    bert = save_tiny_bert(folder / "bert")
    dino_config = folder / "small_cfg.py"
    dino_config.write_text(SMALL_CONFIG)
    args = SLConfig.fromfile(str(dino_config))
    args.text_encoder_type, args.device = str(bert), "cpu"
    torch.save({"model": build_model(args).state_dict()}, folder / "dino.pth")
    torch.save(build_sam("vit_t", None).state_dict(), folder / "mobile_sam.pt")
    tracker = mixformer_v2_s(32, 64, dim=32, depth=1, heads=2)  # the stand-in at a test's size
    return {
        "bert": bert,
        "dino_config": dino_config,
        "dino": folder / "dino.pth",
        "mobile_sam": folder / "mobile_sam.pt",
        "tracker": export_tracker(tracker, folder / "tracker.onnx", 32, 64),
    }


def _overrides(files: dict[str, Path]) -> list[str]:
    return [
        "models.detector=grounding_dino",
        "models.tracker=onnx",
        "models.segmenter=mobile_sam",
        f'grounding_dino.checkpoint="{files["dino"]}"',
        f'grounding_dino.text_encoder="{files["bert"]}"',
        f'grounding_dino.config_path="{files["dino_config"]}"',
        "grounding_dino.box_threshold=0.0",
        "grounding_dino.text_threshold=0.0",
        "grounding_dino.image_size=96",
        "grounding_dino.max_size=128",
        f'mobile_sam.checkpoint="{files["mobile_sam"]}"',
        f'onnx_tracker.model="{files["tracker"]}"',
        "onnx_tracker.min_score=0.0",
    ]


def test_config_names_the_backends_and_the_pipeline_runs(
    files: dict[str, Path], tmp_path: Path
) -> None:
    config = make_config(tmp_path, *_overrides(files))
    detector, tracker, segmenter = build_perception(config)
    assert isinstance(detector, GroundingDinoDetector)
    assert isinstance(tracker, OnnxTrackerFactory)
    assert isinstance(segmenter, SamSegmenter) and segmenter.variant == "vit_t"

    # lockstep: a track the random-weight tracker loses is re-detected inside the step
    pipeline = PerceptionPipeline(detector, tracker, segmenter, redetect_in_background=False)
    objects = [
        SyntheticObject("sponge", (20, 30, 60, 70), (220, 60, 40)),
        SyntheticObject("bowl", (70, 20, 110, 60), (40, 80, 200)),
    ]
    frame = render_scene(objects, size=(96, 128))
    task = TaskSpec(request="test", skill=Skill.PLACE_INSIDE, pick="sponge", place="bowl")
    first = pipeline.start(task, {"front": frame})
    second = pipeline.step({"front": frame})
    for percept in (first, second):
        mask = percept.masks["front"]
        assert mask.shape == (96, 128) and mask.dtype == np.float32
        assert set(np.unique(mask)) <= {
            0.0,
            PICK_MASK_VALUE,
            MASK_CODING.value("place", task.skill),
        }
        for box in percept.boxes["front"].values():
            assert box is None or (0 <= box.x0 < box.x1 <= 128 and 0 <= box.y0 < box.y1 <= 96)
    assert segmenter.encoder_calls == 2  # one embedding per frame, shared by both boxes


def test_missing_file_is_a_one_line_backend_error(files: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "mobile_sam.pt"
    config = make_config(
        tmp_path,
        *_overrides(files),
        f'mobile_sam.checkpoint="{missing}"',
        "models.detector=ground_truth",
    )
    with pytest.raises(BackendError) as info:
        build_perception(config)
    message = str(info.value)
    assert str(missing) in message and "mobile_sam.checkpoint" in message and "\n" not in message
