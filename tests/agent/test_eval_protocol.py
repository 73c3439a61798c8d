"""The evaluation protocol (issue 14, item 9): disjoint seed ranges, Wilson intervals, the report's
header and fingerprint. No trial runs here: `run_trial` is replaced where `evaluate` is called."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.seeds import (
    EPISODES_PER_BASE,
    EVAL_SPLITS,
    EVALUATION_SEEDS,
    HELD_OUT,
    TRIALS_PER_BLOCK,
    VALIDATION_SEEDS,
    SeedRangeError,
    check_collection_seeds,
    episode_seed,
    eval_seed,
)
from benchmarks import eval_tables
from benchmarks.eval_cells import TRIALS_PER_CELL, Cell, plan_cells, wilson_interval
from benchmarks.eval_report import markdown, report_header, reuse_cells


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [
        (7, 10, (0.397, 0.892)),
        (0, 10, (0.0, 0.278)),
        (10, 10, (0.722, 1.0)),
        (33, 40, (0.681, 0.913)),
        (0, 1, (0.0, 0.793)),
        (20, 40, (0.352, 0.648)),
    ],
)
def test_wilson_interval_matches_known_values(
    successes: int, trials: int, expected: tuple[float, float]
) -> None:
    low, high = wilson_interval(successes, trials)
    assert (round(low, 3), round(high, 3)) == expected
    assert 0.0 <= low <= successes / trials <= high <= 1.0


def test_wilson_interval_refuses_impossible_counts() -> None:
    for successes, trials in ((1, 0), (-1, 10), (11, 10)):
        with pytest.raises(ValueError):
            wilson_interval(successes, trials)


def test_cells_show_their_interval() -> None:
    cell = Cell("ours", "standard", "seen", trials=10, successes=7)
    assert cell.text() == "70.0 (7/10; 39.7-89.2)"
    assert cell.ci95 == pytest.approx((39.68, 89.22), abs=0.01)
    assert Cell("ours", "standard", "seen").ci95 is None


# ---------------------------------------------------------------- seed ranges


def test_validation_and_evaluation_ranges_are_disjoint_and_held_out() -> None:
    assert max(VALIDATION_SEEDS.start, EVALUATION_SEEDS.start) >= min(
        VALIDATION_SEEDS.stop, EVALUATION_SEEDS.stop
    )  # no overlap of the two half-open ranges
    for seeds, other in (
        (VALIDATION_SEEDS, EVALUATION_SEEDS),
        (EVALUATION_SEEDS, VALIDATION_SEEDS),
    ):
        assert seeds.start not in other and seeds.stop - 1 not in other
    assert len(HELD_OUT) == len(VALIDATION_SEEDS) + len(EVALUATION_SEEDS)
    for seeds in EVAL_SPLITS.values():
        assert seeds.start in HELD_OUT and seeds.stop - 1 in HELD_OUT
        assert len(seeds) % TRIALS_PER_BLOCK == 0


def test_collection_defaults_and_documented_seeds_lie_outside_the_held_out_ranges() -> None:
    # collect --seed 0 (the default), the README's, TRAINING.md's and docs/scale-out.md's --seed
    # values (1000-1015: the collector bases of the shipped policy's GPU stage)
    for base in (0, 3, 1000, 3000, 3001, 4000, 4001, *range(1000, 1016), *range(1100, 1115)):
        first, last = episode_seed(base, 0), episode_seed(base, EPISODES_PER_BASE - 1)
        assert first not in HELD_OUT and last not in HELD_OUT
        assert last < EVALUATION_SEEDS.start
        check_collection_seeds(base, 0, EPISODES_PER_BASE)  # accepted


def test_collection_refuses_seeds_in_the_held_out_ranges() -> None:
    first_bad = HELD_OUT.start // EPISODES_PER_BASE
    for base, start, count in (
        (first_bad, 0, 1),  # 9000: the first evaluation seed
        ((HELD_OUT.stop - 1) // EPISODES_PER_BASE, 0, 1),  # 9999: the validation range
        (first_bad - 1, EPISODES_PER_BASE - 1, 2),  # appending past the last free seed
        (first_bad - 10, 0, 11 * EPISODES_PER_BASE),  # many episodes run into it
    ):
        with pytest.raises(SeedRangeError, match="held-out seeds 900000000-999999999"):
            check_collection_seeds(base, start, count)
    check_collection_seeds(first_bad - 1, 0, EPISODES_PER_BASE)  # up to the edge is fine
    check_collection_seeds(HELD_OUT.stop // EPISODES_PER_BASE, 0, 10)  # past it as well


def test_eval_seed_stays_in_its_split() -> None:
    assert eval_seed("evaluation", 0, 0) == 900_000_000  # the seeds of the earlier reports
    assert eval_seed("validation", 0, 0) == 950_000_000
    last_block = len(EVALUATION_SEEDS) // TRIALS_PER_BLOCK - 1
    assert eval_seed("evaluation", last_block, TRIALS_PER_BLOCK - 1) == EVALUATION_SEEDS.stop - 1
    for split, block, index in (
        ("evaluation", last_block + 1, 0),
        ("evaluation", -1, 0),
        ("validation", 0, TRIALS_PER_BLOCK),
        ("training", 0, 0),
    ):
        with pytest.raises(SeedRangeError):
            eval_seed(split, block, index)


@pytest.mark.parametrize(("split", "block"), [("evaluation", 0), ("validation", 7)])
def test_every_seed_eval_draws_for_a_cell_lies_in_its_range(
    split: str, block: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real `evaluate` over every cell of both tables in both mask sources: each trial's
    seed in the split's range, 40 a Table I cell and 20 a Table II cell, and each config runs
    the segmenter of its mask source."""
    pytest.importorskip("zarr")
    from agent.config import load_config

    seen: list[tuple[Cell, Any, Any]] = []

    def fake_trial(config: Any, trial: Any) -> dict[str, Any]:
        seen.append((cells_by_config[id(config)], config, trial))
        return {**trial.info(), "success": trial.seed % 2 == 0, "status": "x", "reason": "",
                "steps": 1, "wall_s": 0.0}  # fmt: skip

    cells_by_config: dict[int, Cell] = {}
    real_config = eval_tables.trial_config

    def remember(base: Any, trial: Any, variant: str, *rest: Any) -> Any:
        config = real_config(base, trial, variant, *rest)
        cells_by_config[id(config)] = next(
            c for c in cells if c.variant == variant and c.masks == rest[-1]
            and (c.setting, c.split) == (trial.setting, trial.split)
        )  # fmt: skip
        return config

    monkeypatch.setattr(eval_tables, "run_trial", fake_trial)
    monkeypatch.setattr(eval_tables, "trial_config", remember)
    policy = tmp_path / "p.onnx"
    policy.write_bytes(b"x")
    policies = {name: policy for name in ("ours", "box", "single_view", "rgbm_only")}
    cells = plan_cells("I,II", quick=False, masks=("truth", "grabcut"))
    eval_tables.evaluate(
        load_config("sim"), cells, policies, trials=TRIALS_PER_CELL, seed=block, quick=False,
        split=split,
    )  # fmt: skip
    seeds = EVAL_SPLITS[split]
    assert len(seen) == 12 * 40 + 16 * 20  # Table I twice; the 4 variants x 4 of Table II
    for cell, config, trial in seen:
        assert trial.seed in seeds
        assert trial.seed - seeds.start - block * TRIALS_PER_BLOCK < TRIALS_PER_CELL[cell.table]
        assert config.sim.seed == trial.seed
        assert config.models.segmenter == cell.segmenter
    for cell in cells:
        assert cell.trials == TRIALS_PER_CELL[cell.table] == len(cell.outcomes)
        assert {o["seed"] for o in cell.outcomes} == {
            eval_seed(split, block, i) for i in range(cell.trials)
        }  # trial i: the same scene in every cell
    grabcut = [c for c in cells if c.masks == "grabcut"]
    assert {c.variant for c in grabcut} == {"ours"} and len(grabcut) == 6


def test_eval_refuses_a_seed_block_outside_its_split(tmp_path: Path, capsys) -> None:
    from agent.cli import main

    out = tmp_path / "eval"
    code = main(["eval", "--quick", "--seed", "5000", "--eval-out", str(out)])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "the evaluation seeds 900000000-949999999 hold blocks" in err
    code = main(["eval", "--split", "validation", "--trials", "10001", "--eval-out", str(out)])
    assert code == 2 and not out.exists()
    assert "a seed block holds 10000 trials" in capsys.readouterr().err


def test_collect_refuses_an_evaluation_seed_before_creating_the_dataset(
    tmp_path: Path, capsys
) -> None:
    pytest.importorskip("zarr")
    from agent.cli import main

    out = tmp_path / "demos.zarr"
    assert main(["collect", "--episodes", "1", "--seed", "9000", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "reach the held-out seeds" in err
    assert not out.exists()


# ---------------------------------------------------------------- report and reuse


def _report(masks: list[str]) -> dict[str, Any]:
    world = {"path": "drivers/sim/data/x.toml", "sha256": "c" * 64}
    return {
        "seeds": {"split": "evaluation", "range": "900000000-949999999", "block": 0,
                  "first": 900_000_000},
        "trials_per_cell": {"I": 40, "II": 20},
        "max_steps": 250,
        "control_hz": 10.0,
        "workers": 2,
        "policies": {"ours": {"path": "policies/tpm_cpu.onnx", "sha256": "a" * 64}},
        "reasoner": "rules",
        "perception": {"detector": "ground_truth", "tracker": "kcf",
                       "detect_every_frame": False},
        "masks": masks,
        "world": {"catalog": world, "backgrounds": {**world, "sha256": "b" * 64},
                  "randomise": None, "image_size": [224, 224]},
    }  # fmt: skip


def test_report_names_what_the_numbers_depend_on_and_shows_table_i_twice() -> None:
    header = report_header(_report(["truth", "grabcut"]))
    text = "\n".join(header)
    for needed in (
        "evaluation 900000000-949999999",
        "validation range, 950000000-999999999",
        "40 a Table I cell, 20 a Table II cell",
        "step budget 250 steps at 10 Hz",
        "ours `policies/tpm_cpu.onnx` (sha256 aaaaaaaaaaaa)",
        "Reasoner: rules",
        "detector ground_truth, tracker kcf",
        "truth: segmenter ground_truth; grabcut: segmenter grabcut",
        "catalog `drivers/sim/data/x.toml` (sha256 cccccccccccc)",
        "(sha256 bbbbbbbbbbbb)",
        "only the masks lose the oracle",
    ):
        assert needed in text, needed
    cells = plan_cells("I", quick=False, masks=("truth", "grabcut"))
    cells[0].trials, cells[0].successes = 40, 33
    cells[6].trials, cells[6].successes = 40, 20
    md = markdown(cells, ("truth", "grabcut"), header)
    assert md.startswith("# TPM policy in simulation")
    truth = md.index("Table I, simulator-truth masks")
    grabcut = md.index("Table I, GrabCut masks inside the tracked boxes")
    assert truth < grabcut < md.index("Table II, simulator-truth masks")
    assert "| Standard | 82.5 (33/40; 68.1-91.3) [82.5]" in md[truth:grabcut]
    assert "| Standard | 50.0 (20/40; 35.2-64.8) [82.5]" in md[grabcut:]
    validation = "\n".join(report_header({**_report(["truth"]), "seeds": {
        "split": "validation", "range": "950000000-999999999", "block": 0,
        "first": 950_000_000}}))  # fmt: skip
    assert "for choosing checkpoints and recipes" in validation
    assert "only the masks lose the oracle" not in validation


def test_reuse_matches_the_whole_fingerprint_and_the_mask_source(tmp_path: Path) -> None:
    fingerprint = {
        "policies": {"ours": "a" * 64},
        "split": "evaluation",
        "seed": 0,
        "trials_per_cell": {"I": 2, "II": 1},
        "max_steps": 250,
        "reasoner": "rules",
        "detector": "ground_truth",
        "tracker": "kcf",
        "segmenters": {"truth": "ground_truth", "grabcut": "grabcut"},
        "catalog": "c" * 64,
        "backgrounds": "b" * 64,
    }
    measured = Cell("ours", "standard", "seen", trials=2, successes=1, outcomes=[{}, {}])
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"fingerprint": fingerprint, "cells": [measured.__dict__]}))

    def fresh() -> list[Cell]:
        return plan_cells("I", quick=False, masks=("truth", "grabcut"))

    cells = fresh()
    assert reuse_cells(cells, path, fingerprint) == 1  # the truth cell, not the grabcut one
    assert [c.masks for c in cells if c.trials] == ["truth"]
    for change in (
        {"backgrounds": "d" * 64},
        {"catalog": "d" * 64},
        {"tracker": "csrt"},
        {"split": "validation"},
        {"trials_per_cell": {"I": 40, "II": 20}},
        {"randomise": {"enabled": True}},  # an entry the earlier report did not have
    ):
        assert reuse_cells(fresh(), path, {**fingerprint, **change}) == 0, change
    less = {k: v for k, v in fingerprint.items() if k != "catalog"}
    assert reuse_cells(fresh(), path, less) == 0  # the earlier report had one more entry
    lost = Cell("ours", "standard", "seen", trials=2, successes=1,
                outcomes=[{"status": "success"}, {"status": "crashed"}])  # fmt: skip
    path.write_text(json.dumps({"fingerprint": fingerprint, "cells": [lost.__dict__]}))
    assert reuse_cells(fresh(), path, fingerprint) == 0  # a cell that lost a trial runs again
