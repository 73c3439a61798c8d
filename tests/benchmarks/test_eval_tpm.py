"""`python -m agent eval`: the tables' shape, and the --quick smoke run through the Runtime."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("zarr")

from agent.cli import main
from agent.endings import ENDINGS
from benchmarks.eval_cells import Cell, plan_cells, select_cells
from benchmarks.eval_dispatch import run_pooled
from benchmarks.eval_report import markdown, reuse_cells
from models.tpm.export import export_onnx
from models.tpm.train import Trainer
from models.tpm.train_settings import TrainSettings
from tests.models.test_tpm_pipeline import TINY, _dataset


def test_tables_show_trial_counts_beside_the_paper() -> None:
    cells = plan_cells("I,II", quick=False)
    assert len(cells) == 6 + 4 * 4  # Table II's "ours" row reuses four Table I cells
    cells[0].trials, cells[0].successes = 10, 7
    box = next(c for c in cells if c.variant == "box")
    box.note = "no policy file"
    text = markdown(cells)
    assert "| Standard | 70.0 (7/10; 39.7-89.2) [82.5] | - [80.0] |" in text
    assert "| replace mask with bbox | - (no policy file) [50.0]" in text
    assert "| RGB-M only |" in text and "[85.0]" in text
    assert Cell("ours", "standard", "seen").rate is None


def test_cells_are_selected_for_ours_or_a_named_variant() -> None:
    cells = plan_cells("I,II", quick=False)
    spec = "standard:unseen, box:standard:seen,no_tracking:new_background:seen"
    picked = select_cells(cells, spec)
    assert [(c.variant, c.setting, c.split) for c in picked] == [
        ("ours", "standard", "unseen"),
        ("box", "standard", "seen"),
        ("no_tracking", "new_background", "seen"),
    ]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny policy trained for one epoch on synthetic steps and exported (the real commands)."""
    root = tmp_path_factory.mktemp("eval")
    data = _dataset(root / "demos.zarr", episodes=2, steps=8)
    Trainer(data, root / "run", TrainSettings(epochs=1, val_fraction=0.0), config=TINY).run()
    onnx = root / "tiny.onnx"
    export_onnx(root / "run" / "best.pt", onnx, data, samples=2)
    return onnx


def _quick_eval(out: Path, onnx: Path, *extra: str) -> list[str]:
    """`eval --quick` arguments: one trial of one cell with `onnx`, small renders, into `out`."""
    small = ["--set", "sim.image_width=96", "--set", "sim.image_height=96"]
    policy = ["--set", f'policy.onnx="{onnx}"']
    return ["eval", "--quick", *extra, "--eval-out", str(out), *policy, *small]


def test_quick_eval_runs_one_trial_through_the_runtime(
    tiny_onnx: Path, tmp_path: Path, capsys
) -> None:
    onnx = tiny_onnx
    out = tmp_path / "eval"
    args = _quick_eval(out, onnx)
    assert main(args) == 0
    report = json.loads((out / "eval.json").read_text())
    (cell,) = report["cells"]
    assert cell["trials"] == 1 and report["quick"] is True
    assert cell["outcomes"][0]["steps"] <= 40
    assert "Table I" in (out / "eval.md").read_text()
    # 40 steps are too few for any pick and place (the expert takes 110-140): the trial fails
    # on the budget, and how the hand ended up is named from its last steps
    (outcome,) = cell["outcomes"]
    assert not outcome["success"] and "budget" in outcome["reason"]
    assert outcome["ended"] in ENDINGS[1:5]  # closed on nothing ... wandering
    md = (out / "eval.md").read_text()
    assert "How the failed trials ended" in md and "| 1 |" in md
    assert "Grasp retry (agent.grasp_retry): off" in md
    assert "Table II" in capsys.readouterr().out
    # the tables as a chart beside eval.md, which shows it (tests/benchmarks/test_eval_chart.py)
    assert (out / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](eval.png)" in (out / "eval.md").read_text()
    # --reuse: the measured cell comes from the report, no trial runs again
    again = tmp_path / "again"
    assert main([*args[:3], str(again), *args[4:], "--reuse", str(out / "eval.json")]) == 0
    assert "reused 1 cells" in capsys.readouterr().out
    (same,) = json.loads((again / "eval.json").read_text())["cells"]
    assert same["outcomes"] == cell["outcomes"]
    # another policy file (by content), seed, step budget, seed split or perception: no reuse
    fingerprint = report["fingerprint"]
    changes = ({"policies": {"ours": "0" * 64}}, {"seed": 1}, {"max_steps": 41},
               {"split": "validation"}, {"tracker": "csrt"}, {"detector": "sam"})  # fmt: skip
    for change in changes:
        fresh = plan_cells("I", quick=True)
        assert reuse_cells(fresh, out / "eval.json", {**fingerprint, **change}) == 0
        assert fresh[0].trials == 0


def test_eval_runs_trials_in_spawned_worker_processes(tiny_onnx: Path, tmp_path: Path) -> None:
    """--workers: the same trial through the process pool (fresh MuJoCo context per process)."""
    onnx = tiny_onnx
    out = tmp_path / "eval"
    args = _quick_eval(out, onnx, "--workers", "2")
    assert main(args) == 0
    report = json.loads((out / "eval.json").read_text())
    (cell,) = report["cells"]
    assert report["workers"] == 2 and cell["trials"] == 1
    outcome = cell["outcomes"][0]
    assert outcome["status"] in ("success", "failure") and outcome["steps"] <= 40


def test_a_worker_that_dies_in_the_local_pool_is_run_again_and_nothing_else_is_lost(
    tmp_path: Path,
) -> None:
    """A worker killed mid-trial breaks the process pool: a new pool runs the trials that were
    running again (same trial), and the ones after them as usual. Every trial is recorded once,
    none as crashed."""
    from tests._crashing_trials import FakeTrial, scripted

    cell = Cell("ours", "standard", "seen")
    plans = ["ok", f"dies-once:{tmp_path / 'marker'}", "ok", "ok", "ok"]
    jobs = [(cell, i, plan, FakeTrial(i)) for i, plan in enumerate(plans)]
    got: dict[int, list[dict]] = {}
    assert run_pooled(jobs, 2, lambda c, i, r: got.setdefault(i, []).append(r), scripted) == 0
    assert sorted(got) == list(range(5)) and all(len(v) == 1 for v in got.values())
    assert all(v[0]["status"] == "success" for v in got.values())
    died = int((tmp_path / "marker").read_text())
    assert got[1][0]["pid"] != died  # run again in another (new) worker


def test_a_trial_whose_worker_dies_on_every_try_is_crashed_and_the_rest_still_run(
    tmp_path: Path,
) -> None:
    """A crash that repeats with its trial: after MAX_RETRIES more tries it is recorded as a
    "crashed" failure that says so, and the trials after it run in a new pool."""
    from agent.cluster import MAX_RETRIES
    from tests._crashing_trials import FakeTrial, scripted

    cell = Cell("ours", "standard", "seen")
    jobs = [(cell, 0, "dies", FakeTrial(0)), (cell, 1, "ok", FakeTrial(1))]
    got: dict[int, dict] = {}
    assert run_pooled(jobs, 1, lambda c, i, r: got.__setitem__(i, r), scripted) == 1
    assert got[0]["status"] == "crashed" and not got[0]["success"]
    assert f"died on each of {MAX_RETRIES + 1} tries" in got[0]["reason"]
    assert got[0]["request"] == "trial 0" and got[1]["status"] == "success"


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_killing_eval_ends_its_pool_workers(tiny_onnx: Path, tmp_path: Path) -> None:
    """`kill -9` of `eval --workers 2`: its spawned workers die with it (they would otherwise
    finish their trials as orphans)."""
    args = _quick_eval(tmp_path / "eval", tiny_onnx, "--workers", "2")
    log = (tmp_path / "eval.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "agent", *args], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while not workers and time.monotonic() < deadline and proc.poll() is None:
            listing = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(proc.pid)],
                                     capture_output=True, text=True).stdout  # fmt: skip
            lines = [line.split() for line in listing.splitlines()]
            workers = [int(pid) for pid, *cmd in lines if "spawn_main" in " ".join(cmd)]
            time.sleep(0.2)
        assert workers, (tmp_path / "eval.log").read_text()[-3000:]
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_alive, workers)), "pool workers outlived the eval process"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_quick_eval_with_grabcut_masks_names_what_lost_the_oracle(
    tiny_onnx: Path, tmp_path: Path
) -> None:
    """--masks grabcut: the trial runs the grabcut segmenter inside the tracked boxes; the report
    names every backend, the seeds, the files' sha256 and says the detector is still the oracle."""
    out = tmp_path / "eval"
    args = _quick_eval(out, tiny_onnx, "--masks", "grabcut")
    assert main(args) == 0
    report = json.loads((out / "eval.json").read_text())
    (cell,) = report["cells"]
    assert cell["masks"] == "grabcut" and cell["segmenter"] == "grabcut" and cell["trials"] == 1
    assert cell["outcomes"][0]["seed"] == 900_000_000  # evaluation block 0, trial 0
    expected = [0.0, 79.3] if cell["successes"] == 0 else [20.7, 100.0]  # Wilson, 1 trial
    assert [round(x, 1) for x in cell["ci95"]] == expected
    fingerprint = report["fingerprint"]
    assert fingerprint["segmenters"] == {"truth": "ground_truth", "grabcut": "grabcut"}
    assert {"detector", "tracker", "reasoner", "catalog", "backgrounds"} <= set(fingerprint)
    assert fingerprint["split"] == "evaluation"
    assert fingerprint["trials_per_cell"] == {"I": 1, "II": 1}
    text = (out / "eval.md").read_text()
    assert "Table I, GrabCut masks inside the tracked boxes" in text
    assert "Table I, simulator-truth masks" not in text  # --masks grabcut: one block
    assert "only the masks lose the oracle" in text and "detector ground_truth" in text
    assert fingerprint["policies"]["ours"][:12] in text and fingerprint["catalog"][:12] in text
    assert "evaluation 900000000-949999999" in text and "step budget 40 steps" in text
