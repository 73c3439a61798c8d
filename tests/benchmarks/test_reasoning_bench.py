"""`python -m agent bench reasoning` end to end on tiny cases files: table, last line, JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from benchmarks.reasoning import DATA, CasesError, load_cases

LAST_LINE = re.compile(r"^accuracy \d\.\d\d \(\d+/\d+\)$")
TINY = [
    {"request": "put the apple in the bowl", "objects": ["apple", "bowl"], "pick": ["apple"],
     "place": ["bowl"]},
    {"request": "I spilled the milk", "objects": ["sponge", "book"], "pick": ["sponge"],
     "place": ["user"]},
    {"request": "give me the hammer", "objects": ["apple", "bowl"], "pick": [], "place": []},
    {"request": "I want to go jogging", "objects": ["running shoes", "cup"],
     "pick": ["running shoes"], "place": ["user"]},
]  # fmt: skip


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def test_bench_prints_table_and_accuracy_last(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "out" / "results.json"
    argv = ["bench", "reasoning", "--backend", "rules", "--cases", str(tiny)]
    code = main([*argv, "--json", str(out_json), "--failures"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert LAST_LINE.match(lines[-1]), lines[-1]
    assert lines[-1] == "accuracy 0.75 (3/4)"  # the rules know no jogging
    assert any(line.startswith("rules ") and "median ms" not in line for line in lines)
    assert any("rules wrong: 'I want to go jogging'" in line for line in lines)
    results = json.loads(out_json.read_text())
    (rules,) = results["backends"]
    assert (rules["right"], rules["total"], rules["nothing_fits_right"]) == (3, 4, 1)
    assert rules["latency_ms_p90"] >= rules["latency_ms_median"] >= 0
    assert results["primary"] == "rules"


def test_bench_module_runs_as_a_script(tiny: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.reasoning", "--backend", "rules", "--cases", str(tiny)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert LAST_LINE.match(done.stdout.strip().splitlines()[-1])


def test_openai_backend_in_the_bench_against_a_local_server(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("openai")
    from tests.models.test_reasoning_openai import ChatServer, answer

    server = ChatServer()
    try:
        server.script = [answer(skill="place_inside", pick="apple", place="bowl")]
        code = main(
            ["bench", "reasoning", "--backend", "openai", "--cases", str(tiny),
             "--set", f'reasoning.base_url="{server.url}"', "--set", "reasoning.max_retries=0"]
        )  # fmt: skip
    finally:
        server.close()
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "accuracy 0.25 (1/4)"  # the scripted server always says apple -> bowl
    assert len(server.requests) == len(TINY)


def test_unavailable_explicit_backend_is_exit_2(
    tiny: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["bench", "reasoning", "--backend", "openai", "--cases", str(tiny)]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("not json", "not valid JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"request": "hi", "objects": ["a"], "pick": "a", "place": []}]', "'pick' must be"),
        ('[{"request": "", "objects": [], "pick": [], "place": []}]', "'request' must be"),
        ('[{"request": "x", "objects": ["a"], "pick": ["a"], "place": []}]', "'place' is empty"),
    ],
)
def test_bad_cases_files(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "cases.json"
    path.write_text(content)
    with pytest.raises(CasesError, match=words):
        load_cases(path)
    assert main(["bench", "reasoning", "--backend", "rules", "--cases", str(path)]) == 2


@pytest.mark.parametrize("name", ["reasoning_dev.json", "reasoning_eval.json"])
def test_shipped_cases_are_valid_and_large_enough(name: str) -> None:
    cases = load_cases(DATA / name)
    assert len(cases) >= 100
    assert any(not c.pick for c in cases)  # nothing-fits cases
    for case in cases:
        assert set(case.pick) <= set(case.objects)
        assert set(case.place) <= {*case.objects, "user"}


def test_dev_and_eval_do_not_share_a_case() -> None:
    def key(c: object) -> tuple[str, tuple[str, ...]]:
        return (c.request.lower(), tuple(c.objects))  # type: ignore[attr-defined]

    dev = {key(c) for c in load_cases(DATA / "reasoning_dev.json")}
    held_out = {key(c) for c in load_cases(DATA / "reasoning_eval.json")}
    assert not dev & held_out
