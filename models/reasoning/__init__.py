"""Reasoning backends: the `Reasoner` protocol, the rule reasoner (`rules`, reading requests with
`phrases` and the tables in `needs`), the offline rules + small language model reasoner
(`offline`), the OpenAI-compatible chat backend (`openai_chat`), and their `[reasoning]` settings
(`config`).

Only the light modules are imported here; `offline` (llama.cpp) and `openai_chat` (openai) load
their dependencies when their backend is built.
"""

from models.reasoning.base import Reasoner
from models.reasoning.needs import NEEDS, SYNONYMS, Need
from models.reasoning.rules import ObjectScorer, RuleReasoner
from models.types import USER

__all__ = ["NEEDS", "SYNONYMS", "USER", "Need", "ObjectScorer", "Reasoner", "RuleReasoner"]
