"""How the rule reasoner reads a request: normalised words, stems and synonyms, the command and
hand-over patterns, and which listed object a phrase names.

Kept apart from the decisions (`rules.RuleReasoner`) because these are the language facts the
decisions rest on; the need triggers come from `needs.NEEDS`, compiled once here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from models.reasoning.needs import NEEDS, SYNONYMS
from models.types import Skill

# fmt: off
_DETERMINERS = frozenset({
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "my", "your", "our",
})
#: Words that may be part of an object's name but alone never identify it ("can I ..." vs
#: "coke can"), plus function words.
NOT_NAMES = _DETERMINERS | {
    "its", "his", "her", "their", "me", "us", "it", "them", "you", "i", "we", "one", "of", "to",
    "for", "with", "and", "or", "in", "on", "at", "by", "up", "down", "top", "can", "will", "may",
    "please",
}
# fmt: on
USER_WORDS = re.compile(
    r"^(?:(?:the |a )?(?:user|person|human|me|us|myself|here|over here|my hands?|the table "
    r"in front of me|the person asking))\b"
)

# fmt: off
_CONTRACTIONS = {
    "i'm": "i am", "i've": "i have", "i'd": "i would", "i'll": "i will", "it's": "it is",
    "that's": "that is", "can't": "cannot", "don't": "do not", "let's": "let us",
    "won't": "will not",
}
# fmt: on

_PREPOSITIONS: tuple[tuple[str, Skill], ...] = (
    ("on top of", Skill.PLACE_ON),
    ("inside of", Skill.PLACE_INSIDE),
    ("in to", Skill.PLACE_INSIDE),
    ("into", Skill.PLACE_INSIDE),
    ("inside", Skill.PLACE_INSIDE),
    ("in", Skill.PLACE_INSIDE),
    ("onto", Skill.PLACE_ON),
    ("on to", Skill.PLACE_ON),
    ("atop", Skill.PLACE_ON),
    ("on", Skill.PLACE_ON),
    ("next to", Skill.PLACE_NEAR),
    ("close to", Skill.PLACE_NEAR),
    ("in close to", Skill.PLACE_NEAR),
    ("in front of", Skill.PLACE_NEAR),
    ("near to", Skill.PLACE_NEAR),
    ("nearby", Skill.PLACE_NEAR),
    ("near", Skill.PLACE_NEAR),
    ("beside", Skill.PLACE_NEAR),
    ("alongside of", Skill.PLACE_NEAR),
    ("alongside", Skill.PLACE_NEAR),
    ("by the side of", Skill.PLACE_NEAR),
    ("at the side of", Skill.PLACE_NEAR),
    ("by", Skill.PLACE_NEAR),
    ("over to", Skill.PLACE_NEAR),
    ("to", Skill.PLACE_NEAR),
    ("towards?", Skill.PLACE_NEAR),
)
SKILL_OF_PREPOSITION = {re.sub(r"s\?$", "", p): s for p, s in _PREPOSITIONS}
# "in front of" must be tried before "in"; longest-first keeps multi-word prepositions whole.
_PREP_RE = "|".join(sorted((p for p, _ in _PREPOSITIONS), key=len, reverse=True))

_VERBS = (
    r"put|place|set|move|drop|stick|lay|leave|throw|toss|bring|take|carry|transfer|"
    r"pick up|pick|grab|get|fetch|give|hand|pass|deliver|return"
)
PLACE_COMMAND = re.compile(
    rf"\b(?:{_VERBS})\s+(?P<pick>.+?)\s+(?:and\s+(?:{_VERBS})\s+(?:it|them)\s+)?"
    rf"(?P<prep>{_PREP_RE})\s+(?P<place>.+)$"
)
#: "the apple goes next to the bowl": a placement stated rather than commanded.
PLACE_STATEMENT = re.compile(
    r"^(?P<pick>.+?)\s+(?:goes|belongs|should (?:go|be)|has to go|needs to go|must go|can go)\s+"
    rf"(?P<prep>{_PREP_RE})\s+(?P<place>.+)$"
)
#: "I want the apple next to the bowl": a wish for a placement (when both name listed objects).
PLACE_WISH = re.compile(
    r"\b(?:i|we)\s+(?:want|need|would like|would love|would prefer)\s+"
    rf"(?P<pick>.+?)\s+(?P<prep>{_PREP_RE})\s+(?P<place>.+)$"
)
HAND_OVER = (
    re.compile(
        r"\b(?:give|hand|pass|bring|fetch|get|grab|toss|throw|find)\s+(?:me|us)\s+(?P<pick>.+)$"
    ),
    re.compile(r"\b(?:i|we)\s+(?:want|need|would like|wanna|would love)\s+(?P<pick>.+)$"),
    re.compile(r"\b(?:can|could|may)\s+(?:i|we)\s+(?:have|get|use|borrow)\s+(?P<pick>.+)$"),
    # A bare imperative only at the start ("take the towel"), not "I'm about to take a bath".
    re.compile(
        r"^(?:(?:can|could|would|will) you |you can |just |go )?"
        r"(?:bring|fetch|get|grab|pick up|pass|hand|give|take)\s+(?P<pick>.+)$"
    ),
)
#: "open the top drawer", "I need something from the drawer": `drawer` is the phrase naming it.
OPEN_DRAWER = re.compile(
    r"(?:(?<!not )(?<!never )\bopen(?:ing)?\s+(?:up\s+)?"
    r"|\b(?:something|anything|stuff|things?|what(?: is)?)\s+(?:from|out of|in|inside)\s+)"
    r"(?P<drawer>(?:[a-z0-9]+ ){0,3}?drawers?)\b"
)
#: A negated clause ("but I don't drink soda", "not apples though"): objects it names are ruled out.
_NEGATION = re.compile(
    r"\b(?:not|no|never|except|without|do not|does not|cannot|will not|hate|dislike)\b"
    r"(?P<rest>[^,;]*)"
)
NEED_RES: dict[str, re.Pattern[str]] = {
    need: re.compile(r"\b(?:" + "|".join(spec.triggers) + r")\b") for need, spec in NEEDS.items()
}
_FILLER = re.compile(r"\b(?:please|pls|thanks|thank you|now|quickly|right away)\b")


def normalise(text: str) -> str:
    """Lowercase words separated by single spaces; contractions expanded, possessives dropped."""
    text = text.lower().replace("’", "'")
    words = []
    for word in re.findall(r"[a-z0-9]+(?:'[a-z]+)*", text):
        word = _CONTRACTIONS.get(word, word)
        words.append(word.removesuffix("'s").replace("'", ""))
    return " ".join(_FILLER.sub(" ", " ".join(words)).split())


# fmt: off
_IRREGULAR = {
    "knives": "knife", "scarves": "scarf", "leaves": "leaf", "loaves": "loaf", "shelves": "shelf",
    "halves": "half", "mice": "mouse", "teeth": "tooth", "feet": "foot", "people": "person",
    "children": "child", "dice": "die", "glasses": "glass",
}
# fmt: on


@lru_cache(maxsize=4096)
def _stem(word: str) -> str:
    """Crude singular stem, applied to both sides of a comparison so only consistency matters.

    "cookies" / "cookie" -> "cooki", "boxes" -> "box", "apples" -> "apple", "berry" -> "berri".
    """
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "i"
    if len(word) > 3 and word.endswith("ie"):
        return word[:-2] + "i"
    if len(word) > 2 and word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "i"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes", "oes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


_CANONICAL = {_stem(word): _stem(group[0]) for group in SYNONYMS for word in group}


@lru_cache(maxsize=4096)
def stems(text: str) -> tuple[str, ...]:
    """Canonical stems of a normalised phrase."""
    return tuple(_CANONICAL.get(s, s) for s in map(_stem, text.split()))


def _match_score(phrase: tuple[str, ...], name: tuple[str, ...]) -> tuple[int, int]:
    """How well `phrase` names an object called `name`: (2, len) whole name, (1, n) n shared
    distinctive words ("coke" names "coke can"), (0, 0) no match. Higher is better."""
    m = len(name)
    if m and any(phrase[i : i + m] == name for i in range(len(phrase) - m + 1)):
        return (2, m)
    shared = sum(1 for s in set(name) if s not in NOT_NAMES and len(s) > 2 and s in phrase)
    return (1, shared) if shared else (0, 0)


def resolve(phrase: str, objects: Sequence[str]) -> str | None:
    """The listed object `phrase` names best (ties: listed first), or None."""
    words = stems(phrase)
    best, best_score = None, (0, 0)
    for obj in objects:
        score = _match_score(words, stems(normalise(obj)))
        if score > best_score:
            best, best_score = obj, score
    return best


def without_negated(text: str, objects: Sequence[str]) -> list[str]:
    """`objects` minus those a negated clause names ("not apples", "I don't drink soda")."""
    ruled_out: set[str] = set()
    for clause in _NEGATION.finditer(text):
        rest = stems(clause["rest"])
        ruled_out.update(o for o in objects if _match_score(rest, stems(normalise(o)))[0])
    return [o for o in objects if o not in ruled_out]


def clean(phrase: str) -> str:
    """A noun phrase without leading determiners, for naming things not in the object list."""
    words = phrase.split()
    while words and words[0] in _DETERMINERS:
        words.pop(0)
    return " ".join(words)
