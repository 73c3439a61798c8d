"""Reasoning backends: `Reasoner` protocol and the offline rule-based default."""

from models.reasoning.base import Reasoner
from models.reasoning.rules import NEEDS, SYNONYMS, USER, Need, RuleReasoner

__all__ = ["NEEDS", "SYNONYMS", "USER", "Need", "Reasoner", "RuleReasoner"]
