"""`python -m agent interpolate`: weight-space interpolation of two policies (WiSE-FT).

Real exports of the tests' tiny network through the same exporter as `export`, real ONNX Runtime
sessions on the written files; nothing is faked.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from agent.cli import main  # noqa: E402
from models.tpm.checkpoint import CheckpointError, Normaliser  # noqa: E402
from models.tpm.interpolate import LoadedPolicy, interpolate, write_blend  # noqa: E402
from models.tpm.network import TPMNet  # noqa: E402
from models.tpm.onnx_import import random_feed  # noqa: E402
from models.types import LEGACY_MASK_CODING, MASK_CODING  # noqa: E402
from tests.models.test_tpm_onnx_import import NORMALISER, _export, _trained_looking  # noqa: E402
from tests.models.test_tpm_pipeline import TINY  # noqa: E402


def _perturbed(net: TPMNet, seed: int) -> TPMNet:
    """`net` after a "fine-tune": every weight moved by a random amount."""
    out = TPMNet(net.config, pretrained=False).eval()
    out.load_state_dict(net.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedPolicy, LoadedPolicy]:
    """Policy A and policy B (A "fine-tuned"), both exported like `export` writes them and
    read back once (reading an ONNX file rebuilds its network: seconds)."""
    folder = tmp_path_factory.mktemp("interpolate")
    base = _trained_looking()
    a = _export(base, folder / "a.onnx")
    return LoadedPolicy.load(a), LoadedPolicy.load(_export(_perturbed(base, 1), folder / "b.onnx"))


def _outputs(path: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = [np.concatenate([o.ravel() for o in session.run(None, feed)]) for feed in feeds]
    return np.stack(rows)


def _feeds(n: int = 3) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(5)
    net = TPMNet(TINY, pretrained=False)
    return [random_feed(net, rng) for _ in range(n)]


def test_the_ends_reproduce_each_policy_and_the_middle_is_neither(
    pair: tuple[LoadedPolicy, LoadedPolicy], tmp_path: Path
) -> None:
    a, b = pair
    feeds = _feeds()
    ends = {}
    for alpha in (0.0, 0.5, 1.0):
        done = write_blend(interpolate(a, b, alpha), tmp_path / f"blend{alpha}.onnx")
        assert done.max_move_diff_m < 1e-6  # the file computes what the torch network does
        ends[alpha] = _outputs(done.path, feeds)
    np.testing.assert_allclose(ends[0.0], _outputs(a.path, feeds), atol=1e-4)
    np.testing.assert_allclose(ends[1.0], _outputs(b.path, feeds), atol=1e-4)
    middle = ends[0.5]
    assert np.abs(middle - ends[0.0]).max() > 1e-3 and np.abs(middle - ends[1.0]).max() > 1e-3


def test_the_weights_are_the_straight_line_between_the_two(
    pair: tuple[LoadedPolicy, LoadedPolicy],
) -> None:
    a, b = pair
    state_a = interpolate(a, b, 0.0).net.state_dict()
    state_b = interpolate(a, b, 1.0).net.state_dict()
    blend = interpolate(a, b, 0.25).net.state_dict()
    for key, value in blend.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * state_a[key] + 0.25 * state_b[key])


def test_the_written_policy_names_its_sources_and_keeps_b_s_mask_coding(
    pair: tuple[LoadedPolicy, LoadedPolicy], tmp_path: Path
) -> None:
    a, b = pair
    legacy_path = tmp_path / "legacy.onnx"  # a policy exported before the coding was stored
    model = onnx.load(str(a.path))
    kept = [p for p in model.metadata_props if p.key != "mask_coding"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(legacy_path))
    legacy = LoadedPolicy.load(legacy_path)

    forward = interpolate(legacy, b, 0.5)
    assert forward.codings_differed and forward.ckpt["mask_coding"] == MASK_CODING.to_json()
    backward = interpolate(b, legacy, 0.5)
    assert backward.codings_differed
    assert not interpolate(a, b, 0.5).codings_differed

    written = write_blend(backward, tmp_path / "back.onnx")
    meta = {p.key: p.value for p in onnx.load(str(written.path)).metadata_props}
    assert meta["mask_coding"] == LEGACY_MASK_CODING.to_json()
    sources = json.loads(meta["tpm_training"])["settings"]["interpolated"]
    assert sources["alpha"] == 0.5
    assert sources["a"]["path"] == str(b.path) and sources["b"]["path"] == str(legacy_path)
    assert len(sources["a"]["sha256"]) == 64


def test_policies_that_cannot_be_interpolated_are_refused_in_one_line(
    pair: tuple[LoadedPolicy, LoadedPolicy], tmp_path: Path
) -> None:
    a, _ = pair
    other_net = _export(
        TPMNet(dataclasses.replace(TINY, d_model=32), pretrained=False).eval(),
        tmp_path / "wider.onnx",
        dataclasses.replace(TINY, d_model=32),
    )
    other_stats = tmp_path / "stats.onnx"
    from models.tpm.onnx_import import _export as export_with

    stats = Normaliser(NORMALISER.move_mean, [0.01] * 3, NORMALISER.proprio_mean, [0.1] * 4)
    export_with(_trained_looking(), stats, dataclasses.asdict(TINY), other_stats)
    unfolded = tmp_path / "scratch.pt"  # a training checkpoint: BatchNorms not folded
    net = _trained_looking()
    torch.save(
        {
            "config": dataclasses.asdict(TINY),
            "model": net.state_dict(),
            "normaliser": dataclasses.asdict(NORMALISER),
        },
        unfolded,
    )
    cases = {
        other_net: "different networks",
        other_stats: "different dataset statistics",
        unfolded: "not in one parametrisation",
    }
    for other, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as caught:
            interpolate(a, LoadedPolicy.load(other), 0.5)
        assert "\n" not in str(caught.value)
    with pytest.raises(CheckpointError, match="between 0 and 1"):
        interpolate(a, a, 1.5)


def test_the_command_writes_refuses_to_overwrite_and_checks_alpha(
    pair: tuple[LoadedPolicy, LoadedPolicy], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = (policy.path for policy in pair)
    out = tmp_path / "c.onnx"
    assert main(["interpolate", str(a), str(b), "--alpha", "0.3", "--out", str(out)]) == 0
    assert out.is_file() and "0.7 x" in capsys.readouterr().out
    code = main(["interpolate", str(a), str(b), "--alpha", "0.3", "--out", str(out)])
    assert code != 0 and "--force" in capsys.readouterr().err
    assert main(["interpolate", str(a), str(b), "--alpha", "2", "--out", str(out)]) == 2
    assert "--alpha: must be between 0 and 1" in capsys.readouterr().err
    missing = tmp_path / "nowhere.onnx"
    other = tmp_path / "d.onnx"
    assert main(["interpolate", str(missing), str(b), "--alpha", "0.5", "--out", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere.onnx: not found" in err and not other.exists()
