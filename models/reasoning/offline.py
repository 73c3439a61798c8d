"""The offline reasoner: the rule tables for commands and known needs, and a small local language
model for the open-ended rest.

Why this split: the tables are exact and instant for what they cover (commands, skills, "nothing
fits" for absent objects), but any list of needs is incomplete ("I just got out of the pool").
The language-model scorer (`lm_scorer`) covers that tail without a network; it only ranks the
listed objects, so it cannot invent one, and a threshold lets it say "nothing fits".

Measured on this repository's cases (see `python -m agent bench reasoning` and docs/reasoning.md):
about a second to load, 0.1-0.3 s for a request the tables do not settle, microseconds otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from models.reasoning.lm_scorer import LanguageModelScorer
from models.reasoning.rules import RuleReasoner


def offline_reasoner(
    descriptions: Mapping[str, str] | None = None,
    *,
    model_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    threads: int = 1,
    threshold: float = 1.0,
    known_need_threshold: float = 3.0,
) -> RuleReasoner:
    """Rules plus the packaged Gemma 3 270M scorer (or the GGUF at `model_path`).

    Raises ModelError naming the extra to install when the engine or the model is missing.
    The thresholds were tuned on `benchmarks/data/reasoning_dev.json` only.
    """
    scorer = LanguageModelScorer(model_path, cache_dir=cache_dir, threads=threads)
    return RuleReasoner(
        descriptions,
        scorer=scorer,
        threshold=threshold,
        known_need_threshold=known_need_threshold,
    )
