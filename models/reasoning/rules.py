"""The offline default reasoner: regular expressions and a need -> object hint table.

The paper reasons with GPT-4; this backend needs no network, no model and runs in well under a
millisecond, so the runtime always has a reasoner. It handles the two request shapes the paper
demonstrates: direct commands ("put the apple in the bowl", "give me the banana") and indirect needs
("I spilled the milk" -> a sponge for the user), plus requests to open a drawer. It is a baseline,
not a language model: anything its patterns and tables do not cover gets an honest "nothing fits"
answer (pick=None) with the reason, never a guess outside the listed objects. Extend it by adding
rows to `NEEDS` or `SYNONYMS` (`needs`); the wording it understands is in `phrases`.

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
from typing import Protocol

from models.reasoning.needs import NEEDS
from models.reasoning.phrases import (
    HAND_OVER,
    NEED_RES,
    NOT_NAMES,
    OPEN_DRAWER,
    PLACE_COMMAND,
    PLACE_STATEMENT,
    PLACE_WISH,
    SKILL_OF_PREPOSITION,
    USER_WORDS,
    clean,
    normalise,
    resolve,
    stems,
    without_negated,
)
from models.types import USER, Skill, TaskSpec


class ObjectScorer(Protocol):
    """Rates each listed object for a request (higher: more likely to meet it), same order."""

    name: str

    def score(self, request: str, objects: Sequence[str]) -> list[float]: ...


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
        text = normalise(request)
        objects = list(dict.fromkeys(o.strip() for o in objects if o and o.strip()))
        named: str | None = None  # what a command asked for, when it is not in view

        drawer = OPEN_DRAWER.search(text)
        if drawer:
            return self._open_drawer(request, drawer["drawer"], objects)

        command = PLACE_COMMAND.search(text) or PLACE_STATEMENT.search(text)
        if command and not re.match(r"(?:me|us)\b", command["pick"]):
            # "bring me the apple in the bowl" names where the apple is, not where it goes.
            placed = self._placement(request, command, objects)
            if placed is not None:
                return placed
            named = clean(command["pick"])

        wish = PLACE_WISH.search(text) if objects else None
        if wish and named is None:
            # "I want the apple next to the bowl": a placement, but only when both name listed
            # objects ("I want the apple to eat" is a hand-over)
            pick = self._find(wish["pick"], objects)
            place = self._find(wish["place"], objects, exclude=pick)
            if pick is not None and (place is not None or USER_WORDS.match(wish["place"])):
                placed = self._placement(request, wish, objects)
                assert placed is not None  # its pick was found above
                return placed

        for pattern in HAND_OVER:
            wish = pattern.search(text)
            if wish:
                pick = self._find(wish["pick"], objects)
                if pick is not None:
                    return self._to_user(
                        request,
                        pick,
                        f"asked for the {pick}; bringing it to the user",
                    )
                if not wish["pick"].startswith("to "):  # "I want to bake": an activity
                    named = named or clean(wish["pick"])
                break

        allowed = without_negated(text, objects)
        need = self._need(request, text, allowed)
        if need is not None:
            return need
        if named is None and self._scorer is not None and allowed:
            recognised = any(pattern.search(text) for pattern in NEED_RES.values())
            scored = self._score(request, allowed, recognised)
            if scored is not None:
                return scored

        if named is None:
            mentioned = [o for o in allowed if resolve(text, [o]) is not None]
            if len(mentioned) == 1:
                pick = mentioned[0]
                return self._to_user(
                    request,
                    pick,
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
        if USER_WORDS.match(place_phrase):
            return self._spec(
                request, Skill.PLACE_NEAR, pick, USER, f"asked to bring the {pick} to the user"
            )
        place = self._find(place_phrase, objects, exclude=pick)
        if place is None:
            return self._nothing(
                request, f"no '{clean(place_phrase)}' in view to put the {pick} {prep}", objects
            )
        skill = SKILL_OF_PREPOSITION.get(prep, Skill.PLACE_NEAR)
        return self._spec(
            request, skill, pick, place, f"asked to put the {pick} {prep} the {place}"
        )

    def _find(self, phrase: str, objects: Sequence[str], exclude: str | None = None) -> str | None:
        """The listed object a phrase names; with no list, the phrase itself (if it names one)."""
        if not objects:
            cleaned = clean(phrase)
            return cleaned if cleaned and cleaned not in NOT_NAMES else None
        candidates = [o for o in objects if o != exclude]
        return resolve(phrase, candidates)

    def _open_drawer(self, request: str, phrase: str, objects: Sequence[str]) -> TaskSpec:
        """Open the listed drawer-like object `phrase` names best; nothing fits without one."""
        drawers = [o for o in objects if "drawer" in stems(normalise(o))]
        if objects and not drawers:
            return self._nothing(request, f"no '{clean(phrase)}' in view to open", objects)
        pick = self._find(phrase, drawers)
        assert pick is not None  # every listed drawer shares the word "drawer" with the phrase
        return self._spec(request, Skill.OPEN_DRAWER, pick, None, f"asked to open the {pick}")

    def _need(self, request: str, text: str, objects: Sequence[str]) -> TaskSpec | None:
        """The earliest-mentioned need that some listed object meets, handed to the user."""
        found = sorted(
            (match.start(), order, need)
            for order, (need, pattern) in enumerate(NEED_RES.items())
            if (match := pattern.search(text))
        )
        for _, _, need in found:
            spec = NEEDS[need]
            for hint in spec.hints:
                pick = self._find(hint, objects)
                if pick is not None:
                    return self._to_user(
                        request,
                        pick,
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
        return self._to_user(
            request,
            pick,
            f"{self._scorer.name} rates the {pick} the likeliest to meet the request "
            f"(score {scores[best]:.1f} > {bar:.1f}); bringing it to the user",
        )

    def _to_user(self, request: str, pick: str, why: str) -> TaskSpec:
        """Bring `pick` to the user: what every need, wish and hand-over comes down to."""
        return self._spec(request, Skill.PLACE_NEAR, pick, USER, why)

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
