"""The offline default reasoner: regular expressions and a need -> object hint table.

The paper reasons with GPT-4; this backend needs no network, no model and runs in well under a
millisecond, so the runtime always has a reasoner. It handles the two request shapes the paper
demonstrates: direct commands ("put the apple in the bowl", "give me the banana") and indirect needs
("I spilled the milk" -> a sponge for the user), plus requests to open a drawer. It is a baseline,
not a language model: anything its patterns and tables do not cover gets an honest "nothing fits"
answer (pick=None) with the reason, never a guess outside the listed objects. Extend it by adding
rows to `NEEDS` or `SYNONYMS`.

Order of decisions, first hit wins:
1. a request to open a drawer or get something from one ("open the top drawer", "I need something
   from the drawer") -> skill open_drawer on a listed drawer, no place (nothing fits without one);
2. a command with an explicit place ("put X in Y", "bring X to me", "put X alongside Y"), also
   stated ("X goes next to Y") or wished ("I want X next to Y", when X and Y are both listed);
   "next to", "beside", "near", "by", "close to", "alongside" and the like name the place object,
   never the user;
3. a hand-over command or wish ("give me X", "I want X", "fetch X") -> place "user";
4. a need or category from `NEEDS`, earliest in the request (also when 2-3 named nothing in view),
   never picking an object a negated clause rules out ("I'm thirsty, but I don't drink soda");
5. with an optional `scorer` (a small language model, see `lm_scorer`): its best object when the
   tables found nothing and the score clears a threshold ("I just got out of the pool" -> towel);
6. a request that names exactly one listed object ("the apple, please") -> hand it to the user.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from models.types import USER, Skill, TaskSpec


class ObjectScorer(Protocol):
    """Rates each listed object for a request (higher: more likely to meet it), same order."""

    name: str

    def score(self, request: str, objects: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True, slots=True)
class Need:
    """Words that reveal a need (regular expressions, matched on whole words) and what meets it.

    `hints` are tried in order; the first one that matches a listed object is picked. `purpose`
    completes the rationale: "picking the sponge to wipe up the spill".
    """

    triggers: tuple[str, ...]
    hints: tuple[str, ...]
    purpose: str


# fmt: off
_CLEANERS = ("sponge", "paper towel", "towel", "napkin", "tissue", "cloth", "rag", "wipe")
_FRUIT = (
    "apple", "banana", "orange", "pear", "peach", "grape", "strawberry", "mango", "lemon",
    "plum", "kiwi", "cherry", "pineapple", "watermelon", "fruit",
)
_FOOD = (
    *_FRUIT, "sandwich", "bread", "bagel", "croissant", "muffin", "cookie", "cracker", "chip",
    "chocolate", "candy", "granola bar", "cereal", "snack", "yogurt", "cheese", "carrot",
    "cake", "donut", "pizza", "burger", "egg", "nut", "food",
)
_DRINKS = (
    "water", "juice", "milk", "coke", "lemonade", "iced tea", "tea", "coffee", "beer", "wine",
    "drink", "beverage", "bottle", "can", "cup", "mug", "glass",
)

#: need -> triggers and object hints. Order matters only for ties (same trigger position).
NEEDS: dict[str, Need] = {
    "spill": Need(
        (r"spill\w*", r"spilt", r"knocked over", r"tip\w* over", r"mess", r"messy", r"leak\w*",
         r"splash\w*", r"wipe\w*", r"clean(?:s|ing)? up", r"wet"),
        _CLEANERS,
        "to wipe up the spill",
    ),
    "dirty hands": Need(
        (r"(?:hand|finger)s? (?:are |is |got |get )?(?:so |very |all )?"
         r"(?:dirty|sticky|greasy|filthy|messy|covered)",
         r"(?:dirty|sticky|greasy|filthy) (?:hand|finger)s?", r"wash (?:my |our )?hands"),
        ("soap", "hand soap", "sanitizer", "wipe", "towel", "paper towel", "napkin", "tissue"),
        "to clean the hands",
    ),
    "sick": Need(
        (r"have a cold", r"caught a cold", r"runny nose", r"blow my nose", r"sneez\w*",
         r"cough\w*", r"flu", r"sick"),
        ("tissue", "napkin", "medicine", "pill", "paper towel"),
        "for the cold",
    ),
    "bathe": Need(
        (r"shower", r"bath", r"swim\w*", r"(?:out of|in) the pool"),
        ("towel", "bathrobe", "soap", "shampoo"),
        "to dry off",
    ),
    "hot drink": Need(
        (r"hot drink", r"warm drink", r"something (?:hot|warm) to drink"),
        ("tea", "coffee", "cocoa", "mug"),
        "for a hot drink",
    ),
    "cold": Need(
        (r"cold", r"freezing", r"chilly", r"shiver\w*", r"something warm"),
        ("blanket", "jacket", "sweater", "hoodie", "coat", "scarf", "glove", "hat", "sock"),
        "to keep warm",
    ),
    "thirsty": Need(
        (r"thirst\w*", r"parched", r"dry mouth", r"drink", r"beverage"),
        _DRINKS,
        "to drink",
    ),
    "hungry": Need(
        (r"hungry", r"hunger", r"starv\w*", r"famished", r"peckish", r"eat", r"food",
         r"snack", r"breakfast", r"lunch", r"dinner"),
        _FOOD,
        "to eat",
    ),
    "fruit": Need((r"fruits?",), _FRUIT, "as the fruit asked for"),
    "sweet": Need(
        (r"sweets?", r"sugary", r"dessert", r"craving"),
        ("candy", "chocolate", "cookie", "cake", "donut", "muffin", "honey", "sugar", "fruit"),
        "as a sweet treat",
    ),
    "seasoning": Need(
        (r"bland", r"tasteless", r"flavou?r\w*", r"season\w*", r"needs salt"),
        ("salt", "pepper", "spice", "ketchup", "mustard", "sauce"),
        "to season the food",
    ),
    "pay": Need(
        (r"pay", r"paying", r"money", r"cash", r"buy"),
        ("wallet", "purse", "credit card", "money"),
        "to pay with",
    ),
    "tired": Need(
        (r"tired", r"sleepy", r"exhausted", r"wake up", r"energy"),
        ("coffee", "energy drink", "tea", "coke"),
        "to stay awake",
    ),
    "pain": Need(
        (r"headache", r"pain", r"hurts?", r"fever", r"not feeling well"),
        ("medicine", "pill", "painkiller", "aspirin", "water"),
        "for the pain",
    ),
    "hot": Need(
        (r"too hot", r"so hot", r"(?:i am|it is|feeling) hot", r"sweat\w*", r"overheat\w*"),
        ("fan", "ice", "water", "cold drink"),
        "to cool down",
    ),
    "write": Need(
        (r"write", r"writing", r"jot", r"take notes?", r"note (?:this|that|it) down", r"sign"),
        ("pen", "pencil", "marker", "notebook", "notepad", "paper"),
        "to write with",
    ),
    "read": Need(
        (r"read", r"reading", r"bored", r"nothing to do"),
        ("book", "magazine", "newspaper", "glass"),
        "to read",
    ),
    "dark": Need(
        (r"dark", r"can ?not see", r"no light"),
        ("flashlight", "torch", "lamp", "candle"),
        "for light",
    ),
    "rain": Need((r"rain\w*",), ("umbrella", "raincoat"), "against the rain"),
    "call": Need(
        (r"call", r"phone", r"text (?:my|him|her|them)"),
        ("phone",),
        "to make the call",
    ),
    "cut": Need((r"cut", r"slice", r"chop"), ("knife", "scissors"), "to cut with"),
    "teeth": Need(
        (r"teeth", r"tooth"),
        ("toothbrush", "toothpaste"),
        "for the teeth",
    ),
    "hair": Need((r"hair",), ("comb", "hairbrush", "brush"), "for the hair"),
    "tv": Need((r"tv", r"television", r"channel"), ("remote",), "for the TV"),
}

# fmt: on

#: Words with the same meaning for object matching; every word maps to its group's first word.
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("coke", "cola", "soda", "coca"),
    ("phone", "cellphone", "smartphone", "telephone", "mobile"),
    ("trash", "garbage", "rubbish", "bin", "wastebasket"),
    ("tissue", "kleenex"),
    ("sweater", "jumper", "pullover"),
    ("sanitizer", "sanitiser"),
    ("flashlight", "torch"),
)

# fmt: off
_DETERMINERS = frozenset({
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "my", "your", "our",
})
#: Words that may be part of an object's name but alone never identify it ("can I ..." vs
#: "coke can"), plus function words.
_NOT_NAMES = _DETERMINERS | {
    "its", "his", "her", "their", "me", "us", "it", "them", "you", "i", "we", "one", "of", "to",
    "for", "with", "and", "or", "in", "on", "at", "by", "up", "down", "top", "can", "will", "may",
    "please",
}
# fmt: on
_USER_WORDS = re.compile(
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
_SKILL_OF_PREPOSITION = {re.sub(r"s\?$", "", p): s for p, s in _PREPOSITIONS}
# "in front of" must be tried before "in"; longest-first keeps multi-word prepositions whole.
_PREP_RE = "|".join(sorted((p for p, _ in _PREPOSITIONS), key=len, reverse=True))

_VERBS = (
    r"put|place|set|move|drop|stick|lay|leave|throw|toss|bring|take|carry|transfer|"
    r"pick up|pick|grab|get|fetch|give|hand|pass|deliver|return"
)
_PLACE_COMMAND = re.compile(
    rf"\b(?:{_VERBS})\s+(?P<pick>.+?)\s+(?:and\s+(?:{_VERBS})\s+(?:it|them)\s+)?"
    rf"(?P<prep>{_PREP_RE})\s+(?P<place>.+)$"
)
#: "the apple goes next to the bowl": a placement stated rather than commanded.
_PLACE_STATEMENT = re.compile(
    r"^(?P<pick>.+?)\s+(?:goes|belongs|should (?:go|be)|has to go|needs to go|must go|can go)\s+"
    rf"(?P<prep>{_PREP_RE})\s+(?P<place>.+)$"
)
#: "I want the apple next to the bowl": a wish for a placement (when both name listed objects).
_PLACE_WISH = re.compile(
    r"\b(?:i|we)\s+(?:want|need|would like|would love|would prefer)\s+"
    rf"(?P<pick>.+?)\s+(?P<prep>{_PREP_RE})\s+(?P<place>.+)$"
)
_HAND_OVER = (
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
_OPEN_DRAWER = re.compile(
    r"(?:(?<!not )(?<!never )\bopen(?:ing)?\s+(?:up\s+)?"
    r"|\b(?:something|anything|stuff|things?|what(?: is)?)\s+(?:from|out of|in|inside)\s+)"
    r"(?P<drawer>(?:[a-z0-9]+ ){0,3}?drawers?)\b"
)
#: A negated clause ("but I don't drink soda", "not apples though"): objects it names are ruled out.
_NEGATION = re.compile(
    r"\b(?:not|no|never|except|without|do not|does not|cannot|will not|hate|dislike)\b"
    r"(?P<rest>[^,;]*)"
)
_NEED_RES: dict[str, re.Pattern[str]] = {
    need: re.compile(r"\b(?:" + "|".join(spec.triggers) + r")\b") for need, spec in NEEDS.items()
}
_FILLER = re.compile(r"\b(?:please|pls|thanks|thank you|now|quickly|right away)\b")


def _normalise(text: str) -> str:
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
def _stems(text: str) -> tuple[str, ...]:
    """Canonical stems of a normalised phrase."""
    return tuple(_CANONICAL.get(s, s) for s in map(_stem, text.split()))


def _match_score(phrase: tuple[str, ...], name: tuple[str, ...]) -> tuple[int, int]:
    """How well `phrase` names an object called `name`: (2, len) whole name, (1, n) n shared
    distinctive words ("coke" names "coke can"), (0, 0) no match. Higher is better."""
    m = len(name)
    if m and any(phrase[i : i + m] == name for i in range(len(phrase) - m + 1)):
        return (2, m)
    shared = sum(1 for s in set(name) if s not in _NOT_NAMES and len(s) > 2 and s in phrase)
    return (1, shared) if shared else (0, 0)


def _resolve(phrase: str, objects: Sequence[str]) -> str | None:
    """The listed object `phrase` names best (ties: listed first), or None."""
    words = _stems(phrase)
    best, best_score = None, (0, 0)
    for obj in objects:
        score = _match_score(words, _stems(_normalise(obj)))
        if score > best_score:
            best, best_score = obj, score
    return best


def _without_negated(text: str, objects: Sequence[str]) -> list[str]:
    """`objects` minus those a negated clause names ("not apples", "I don't drink soda")."""
    ruled_out: set[str] = set()
    for clause in _NEGATION.finditer(text):
        rest = _stems(clause["rest"])
        ruled_out.update(o for o in objects if _match_score(rest, _stems(_normalise(o)))[0])
    return [o for o in objects if o not in ruled_out]


def _clean(phrase: str) -> str:
    """A noun phrase without leading determiners, for naming things not in the object list."""
    words = phrase.split()
    while words and words[0] in _DETERMINERS:
        words.pop(0)
    return " ".join(words)


class RuleReasoner:
    """Offline pattern-and-table reasoner (see the module docstring for what it understands).

    `descriptions`: object name -> shape and colour words ("red round fruit"), copied into the
    TaskSpec for open-vocabulary detectors; lookups ignore case. Without it they stay empty.

    `scorer` (optional, e.g. `LanguageModelScorer`): consulted only where the tables run out, for
    requests that are neither a command nor a known need ("I just got out of the pool"); its best
    object is taken when its score exceeds `threshold`. When a need *was* recognised but no hint
    is in view ("I'm thirsty" with a book and a sponge), the scorer must clear the stricter
    `known_need_threshold`, because the tables already say what would fit. A command naming an
    object that is not in view never goes to the scorer: the user asked for that object.
    """

    name = "rules"

    def __init__(
        self,
        descriptions: Mapping[str, str] | None = None,
        *,
        scorer: ObjectScorer | None = None,
        threshold: float = 1.0,
        known_need_threshold: float = 3.0,
    ) -> None:
        self._descriptions = {k.casefold(): v for k, v in (descriptions or {}).items()}
        self._scorer = scorer
        self._threshold = threshold
        self._known_need_threshold = known_need_threshold
        if scorer is not None:
            self.name = f"rules+{scorer.name}"

    def reason(self, request: str, objects: Sequence[str]) -> TaskSpec:
        """Choose pick and place among `objects` (free choice when it is empty); see `Reasoner`."""
        if not request or not request.strip():
            raise ValueError("empty request: say what you need, e.g. 'put the apple in the bowl'")
        text = _normalise(request)
        objects = list(dict.fromkeys(o.strip() for o in objects if o and o.strip()))
        named: str | None = None  # what a command asked for, when it is not in view

        drawer = _OPEN_DRAWER.search(text)
        if drawer:
            return self._open_drawer(request, drawer["drawer"], objects)

        command = _PLACE_COMMAND.search(text) or _PLACE_STATEMENT.search(text)
        if command and not re.match(r"(?:me|us)\b", command["pick"]):
            # "bring me the apple in the bowl" names where the apple is, not where it goes.
            placed = self._placement(request, command, objects)
            if placed is not None:
                return placed
            named = _clean(command["pick"])

        wish = _PLACE_WISH.search(text) if objects else None
        if wish and named is None:
            # "I want the apple next to the bowl": a placement, but only when both name listed
            # objects ("I want the apple to eat" is a hand-over)
            pick = self._find(wish["pick"], objects)
            place = self._find(wish["place"], objects, exclude=pick)
            if pick is not None and (place is not None or _USER_WORDS.match(wish["place"])):
                placed = self._placement(request, wish, objects)
                assert placed is not None  # its pick was found above
                return placed

        for pattern in _HAND_OVER:
            wish = pattern.search(text)
            if wish:
                pick = self._find(wish["pick"], objects)
                if pick is not None:
                    return self._spec(
                        request,
                        Skill.PLACE_NEAR,
                        pick,
                        USER,
                        f"asked for the {pick}; bringing it to the user",
                    )
                if not wish["pick"].startswith("to "):  # "I want to bake": an activity
                    named = named or _clean(wish["pick"])
                break

        allowed = _without_negated(text, objects)
        need = self._need(request, text, allowed)
        if need is not None:
            return need
        if named is None and self._scorer is not None and allowed:
            recognised = any(pattern.search(text) for pattern in _NEED_RES.values())
            scored = self._score(request, allowed, recognised)
            if scored is not None:
                return scored

        if named is None:
            mentioned = [o for o in allowed if _resolve(text, [o]) is not None]
            if len(mentioned) == 1:
                pick = mentioned[0]
                return self._spec(
                    request,
                    Skill.PLACE_NEAR,
                    pick,
                    USER,
                    f"the request names only the {pick}; handing it to the user",
                )
        reason = f"no '{named}' in view" if named else "no command or known need recognised"
        return self._nothing(request, reason, objects)

    def _placement(
        self, request: str, command: re.Match[str], objects: Sequence[str]
    ) -> TaskSpec | None:
        """The task a matched `pick prep place` names; None when the pick is not in view.

        A place phrase naming the user ("to me", "over here") is a hand-over, whatever the
        preposition; any other place is looked up among the objects, with the preposition's skill.
        """
        pick = self._find(command["pick"], objects)
        if pick is None:
            return None
        prep, place_phrase = command["prep"], command["place"]
        if _USER_WORDS.match(place_phrase):
            return self._spec(
                request, Skill.PLACE_NEAR, pick, USER, f"asked to bring the {pick} to the user"
            )
        place = self._find(place_phrase, objects, exclude=pick)
        if place is None:
            return self._nothing(
                request, f"no '{_clean(place_phrase)}' in view to put the {pick} {prep}", objects
            )
        skill = _SKILL_OF_PREPOSITION.get(prep, Skill.PLACE_NEAR)
        return self._spec(
            request, skill, pick, place, f"asked to put the {pick} {prep} the {place}"
        )

    def _find(self, phrase: str, objects: Sequence[str], exclude: str | None = None) -> str | None:
        """The listed object a phrase names; with no list, the phrase itself (if it names one)."""
        if not objects:
            cleaned = _clean(phrase)
            return cleaned if cleaned and cleaned not in _NOT_NAMES else None
        candidates = [o for o in objects if o != exclude]
        return _resolve(phrase, candidates)

    def _open_drawer(self, request: str, phrase: str, objects: Sequence[str]) -> TaskSpec:
        """Open the listed drawer-like object `phrase` names best; nothing fits without one."""
        drawers = [o for o in objects if "drawer" in _stems(_normalise(o))]
        if objects and not drawers:
            return self._nothing(request, f"no '{_clean(phrase)}' in view to open", objects)
        pick = self._find(phrase, drawers)
        assert pick is not None  # every listed drawer shares the word "drawer" with the phrase
        return self._spec(request, Skill.OPEN_DRAWER, pick, None, f"asked to open the {pick}")

    def _need(self, request: str, text: str, objects: Sequence[str]) -> TaskSpec | None:
        """The earliest-mentioned need that some listed object meets, handed to the user."""
        found = sorted(
            (match.start(), order, need)
            for order, (need, pattern) in enumerate(_NEED_RES.items())
            if (match := pattern.search(text))
        )
        for _, _, need in found:
            spec = NEEDS[need]
            for hint in spec.hints:
                pick = self._find(hint, objects)
                if pick is not None:
                    return self._spec(
                        request,
                        Skill.PLACE_NEAR,
                        pick,
                        USER,
                        f"sounds like '{need}': picking the {pick} {spec.purpose} "
                        "and bringing it to the user",
                    )
        return None

    def close(self) -> None:
        """Free the scorer's model, if it holds one."""
        close = getattr(self._scorer, "close", None)
        if callable(close):
            close()

    def _score(self, request: str, objects: Sequence[str], recognised: bool) -> TaskSpec | None:
        """The scorer's best object handed to the user, if it clears the threshold."""
        assert self._scorer is not None
        scores = self._scorer.score(request, objects)
        best = max(range(len(objects)), key=scores.__getitem__)
        bar = self._known_need_threshold if recognised else self._threshold
        if scores[best] <= bar:
            return None
        pick = objects[best]
        return self._spec(
            request,
            Skill.PLACE_NEAR,
            pick,
            USER,
            f"{self._scorer.name} rates the {pick} the likeliest to meet the request "
            f"(score {scores[best]:.1f} > {bar:.1f}); bringing it to the user",
        )

    def _spec(self, request: str, skill: Skill, pick: str, place: str | None, why: str) -> TaskSpec:
        return TaskSpec(
            request=request,
            skill=skill,
            pick=pick,
            place=place,
            rationale=why,
            pick_description=self._descriptions.get(pick.casefold(), ""),
            place_description=self._descriptions.get(place.casefold(), "") if place else "",
        )

    @staticmethod
    def _nothing(request: str, reason: str, objects: Sequence[str]) -> TaskSpec:
        listed = ", ".join(objects) if objects else "none listed"
        return TaskSpec(
            request=request,
            skill=Skill.PLACE_NEAR,
            pick=None,
            place=None,
            rationale=f"nothing fits: {reason} (objects: {listed})",
        )
