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

from models.reasoning.config import ReasoningConfig
from models.reasoning.lm_scorer import LanguageModelScorer
from models.reasoning.rules import RuleReasoner


def offline_reasoner(
    descriptions: Mapping[str, str] | None = None, config: ReasoningConfig | None = None
) -> RuleReasoner:
    """Rules plus the packaged Gemma 3 270M scorer (or the GGUF at `config.lm_path`), as the
    `[reasoning]` section's `lm_*` keys set them (None: their defaults).

    Raises ModelError naming the extra to install when the engine or the model is missing.
    The thresholds were tuned on `benchmarks/data/reasoning_dev.json` only.
    """
    c = config or ReasoningConfig()
    scorer = LanguageModelScorer(c.lm_path, cache_dir=c.lm_cache_dir, threads=c.lm_threads)
    return RuleReasoner(
        descriptions,
        scorer=scorer,
        threshold=c.lm_threshold,
        known_need_threshold=c.lm_known_need_threshold,
    )
