"""Reasoning backends: the `Reasoner` protocol, the rule tables, the offline rules + small language
model reasoner (`offline`), and the OpenAI-compatible chat backend (`openai_chat`).

Only the light modules are imported here; `offline` (llama.cpp) and `openai_chat` (openai) load
their dependencies when their backend is built.
"""

from models.reasoning.base import Reasoner
from models.reasoning.rules import NEEDS, SYNONYMS, Need, ObjectScorer, RuleReasoner
from models.types import USER

__all__ = ["NEEDS", "SYNONYMS", "USER", "Need", "ObjectScorer", "Reasoner", "RuleReasoner"]
