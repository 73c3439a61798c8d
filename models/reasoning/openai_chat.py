"""Reasoning with any OpenAI-compatible chat-completions server: GPT-4-class hosted models or a
local server (llama.cpp, vLLM, Ollama, LM Studio) reached through `base_url`.

The paper reasons with GPT-4 and advises asking for shape and colour words, which open-vocabulary
detectors need; the prompt does both and constrains the answer to the listed objects.

Why async inside a blocking call: the runtime calls `reason` from a worker thread (its loop may be
asyncio or trio), so this backend runs its own short-lived asyncio loop there (`asyncio.run`) and
creates the `AsyncOpenAI` client inside it. A client per call keeps no connection pool bound to a
closed loop, and one request per utterance makes the lost keep-alive irrelevant. Async callers
can await `areason` directly instead.

Structured output: a strict JSON schema (`response_format` type `json_schema`) whose enums list the
scene objects; servers that reject it (llama.cpp's answers HTTP 400 or 500) are asked again, and
from then on, with `{"type": "json_object"}` and the schema spelled out in the prompt. Every answer
is validated here anyway: malformed JSON, missing fields or an object that is not in the scene
end in a one-line ModelError, never in a guess.

Retries: only rate limits (429), server errors (5xx) and timeouts are retried, at most
`max_retries` times with exponential backoff (honouring a short Retry-After). Authentication
errors, a missing model or a refused connection fail at once. `deadline_s` bounds one call, every
attempt and wait included: the runtime sets it inside its own reasoning timeout, so that a slow
or rate-limiting server ends in this backend's message, not in the runtime's generic timeout.
The API key is read from the config or the environment, handed to the client, and never logged
or put in an error message.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from models.reasoning.config import OpenAIServer, ResponseFormat
from models.types import USER, ModelError, Skill, TaskSpec

#: The pip line that installs the client (named in the "missing" error).
EXTRA_HINT = "pip install 'tpm-agent[llm]'"

MIN_ATTEMPT_S = 0.5  # a retry with less time than this left before the deadline is not made

_SYSTEM = """\
You are the reasoning module of a robot arm that helps a person at a table. The person says \
something: a command ("put the apple in the bowl"), a wish ("give me the banana") or a need \
("I'm cold", "I spilled the milk"). Decide which ONE object the robot should pick up and where \
to place it, or which drawer to open, choosing only among the objects in view.

Rules:
- "pick" must be exactly one of the listed objects. "place" must be one of the listed objects \
or "user" (near the person, the default when they need or ask for something).
- skill: "place_inside" for in / into a container, "place_on" for on / on top of, \
"place_near" otherwise (next to, near, or to the user).
- skill "open_drawer" when the person asks to open a drawer or wants something from inside one: \
"pick" is the drawer (one of the listed objects) and "place" is null. Only this skill has a \
null place.
- For an indirect need, pick the object that best meets it and bring it to the user.
- If nothing in view satisfies the request, or it asks for an object that is not listed, set \
"pick" and "place" to null and say why in the rationale. Never invent objects.
- rationale: one short sentence.
- pick_description and place_description: add a description of shape and colour to each object \
you chose (e.g. "a yellow rectangular sponge"), for an open-vocabulary detector; \
"" for "user" or null.
Answer with one JSON object and nothing else."""


class OpenAISettings(OpenAIServer):
    """Where and how to ask: the `[reasoning]` openai keys, plus what only code sets.

    `api_key` None: read the environment variable `api_key_env`.
    """

    api_key: str | None = None
    backoff_s: float = 0.5
    deadline_s: float | None = None  # one call, all attempts and backoffs (None: unbounded)
    temperature: float = 0.0

    @classmethod
    def from_config(cls, config: OpenAIServer, **extra: Any) -> OpenAISettings:
        """The openai keys of `config` (e.g. a whole `ReasoningConfig`), plus `extra`."""
        return cls(**config.model_dump(include=set(OpenAIServer.model_fields)), **extra)


class OpenAIReasoner:
    """The `Reasoner` protocol over an OpenAI-compatible chat-completions endpoint.

    `descriptions`: catalogue shape-and-colour words used when the model leaves its own empty.
    `retries` counts the retried attempts of the last call (for tests and benchmarks).
    """

    name = "openai"

    def __init__(
        self, settings: OpenAISettings, descriptions: Mapping[str, str] | None = None
    ) -> None:
        try:
            import openai  # noqa: F401  (fail here, at build time, not at the first request)
        except ImportError:
            raise ModelError(f"the openai reasoner needs openai: {EXTRA_HINT}") from None
        key = settings.api_key or os.environ.get(settings.api_key_env, "")
        local = settings.base_url is not None and _is_local(settings.base_url)
        if not key and not local:
            raise ModelError(
                f"no API key for the openai reasoner: set the environment variable "
                f"{settings.api_key_env} (or reasoning.base_url to a local server)"
            )
        self._settings = settings
        self._key = key or "not-needed"  # local servers ignore it; the client insists on one
        self._descriptions = {k.casefold(): v for k, v in (descriptions or {}).items()}
        self._format: ResponseFormat = settings.response_format
        self.name = f"openai:{settings.model}"
        self.retries = 0
        self._until: float | None = None  # the running call's deadline (time.monotonic)
        self._out_of_time = False  # the running call's deadline cut an attempt or a retry

    def __repr__(self) -> str:  # never the key
        s = self._settings
        return f"OpenAIReasoner(model={s.model!r}, base_url={s.base_url!r})"

    def reason(self, request: str, objects: Sequence[str]) -> TaskSpec:
        """Blocking: runs `areason` in a fresh event loop of the calling (worker) thread."""
        return asyncio.run(self.areason(request, objects))

    async def areason(self, request: str, objects: Sequence[str]) -> TaskSpec:
        """Ask the model and validate its answer; see `Reasoner.reason` for the contract."""
        if not request or not request.strip():
            raise ValueError("empty request: say what you need, e.g. 'put the apple in the bowl'")
        objects = list(dict.fromkeys(o.strip() for o in objects if o and o.strip()))
        from openai import AsyncOpenAI

        self.retries = 0
        deadline = self._settings.deadline_s
        self._until = None if deadline is None else time.monotonic() + deadline
        self._out_of_time = False
        async with AsyncOpenAI(
            api_key=self._key,
            base_url=self._settings.base_url,
            timeout=self._settings.timeout_s,
            max_retries=0,  # retried here, only on 429 / 5xx / timeouts, and counted
        ) as client:
            content = await self._complete(client, request, objects)
        return self._parse(request, objects, content)

    async def _complete(self, client: Any, request: str, objects: list[str]) -> str:
        """One answer's text, switching to json_object once if json_schema is refused."""
        import openai

        fmt = "json_schema" if self._format in ("auto", "json_schema") else "json_object"
        while True:
            try:
                return await self._with_retries(client, request, objects, fmt)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if fmt == "json_schema" and self._format == "auto":
                    fmt = self._format = "json_object"  # remembered for later calls
                    continue
                raise self._error(exc) from None
            except openai.InternalServerError as exc:
                if fmt == "json_schema" and self._format == "auto" and _mentions_format(exc):
                    fmt = self._format = "json_object"
                    continue
                raise self._error(exc) from None
            except openai.OpenAIError as exc:
                raise self._error(exc) from None

    async def _with_retries(self, client: Any, request: str, objects: list[str], fmt: str) -> str:
        import openai

        settings = self._settings
        messages = [
            {"role": "system", "content": _SYSTEM},
            {"role": "user", "content": _user_message(request, objects, fmt)},
        ]
        attempt = 0
        retry: Exception
        while True:
            limit = min(settings.timeout_s, self._left())
            try:
                response = await client.chat.completions.create(
                    model=settings.model,
                    messages=messages,
                    response_format=_response_format(objects, fmt),
                    temperature=settings.temperature,
                    timeout=limit,
                )
                break
            except openai.APITimeoutError as exc:
                self._out_of_time = limit < settings.timeout_s
                retry = exc
            except openai.RateLimitError as exc:
                retry = exc
            except openai.InternalServerError as exc:
                if fmt == "json_schema" and _mentions_format(exc):
                    raise  # not transient: the caller switches format
                retry = exc
            except openai.APIStatusError as exc:
                if exc.status_code < 500:
                    raise
                retry = exc  # 502 / 503 / 504 and other 5xx
            delay = _backoff(settings.backoff_s, attempt + 1, retry)
            if attempt >= settings.max_retries:
                raise retry
            if delay + MIN_ATTEMPT_S > self._left():  # no time left for another attempt
                self._out_of_time = True
                raise retry
            attempt += 1
            self.retries += 1
            await asyncio.sleep(delay)
        choices = getattr(response, "choices", None) or []
        if not choices or choices[0].message is None:
            raise ModelError(f"{self.name}: the server returned no answer")
        message = choices[0].message
        if getattr(message, "refusal", None):
            raise ModelError(f"{self.name}: the model refused: {_one_line(message.refusal)}")
        return message.content or ""

    def _parse(self, request: str, objects: list[str], content: str) -> TaskSpec:
        """Validate the model's JSON against the scene and build the TaskSpec."""
        text = _strip_fences(content)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(
                f"{self.name}: answer is not valid JSON ({exc.msg} at character {exc.pos}): "
                f"{_one_line(text)[:120]!r}"
            ) from None
        if not isinstance(data, dict):
            raise ModelError(f"{self.name}: answer is not a JSON object: {_one_line(text)[:120]!r}")
        pick, place = data.get("pick"), data.get("place")
        rationale = data.get("rationale", "")
        for key, value in (("pick", pick), ("place", place)):
            if value is not None and not isinstance(value, str):
                raise ModelError(f"{self.name}: answer field {key!r} is not a string or null")
        if not isinstance(rationale, str):
            raise ModelError(f"{self.name}: answer field 'rationale' is not a string")
        pick, place = _name(pick), _name(place)
        if pick is None:
            listed = ", ".join(objects) if objects else "none listed"
            why = rationale.strip() or "the model found nothing that fits"
            return TaskSpec(
                request=request,
                skill=Skill.PLACE_NEAR,
                pick=None,
                place=None,
                rationale=f"nothing fits: {why} (objects: {listed})",
            )
        try:
            skill = Skill(str(data.get("skill", Skill.PLACE_NEAR.value)))
        except ValueError:
            allowed = ", ".join(s.value for s in Skill)
            raise ModelError(
                f"{self.name}: answer skill {data.get('skill')!r} is not one of {allowed}"
            ) from None
        pick = self._listed(pick, objects, "pick")
        if (place is None) != (skill is Skill.OPEN_DRAWER):  # only open_drawer has no place
            raise ModelError(
                f"{self.name}: answer place {place!r} does not fit skill {skill.value!r} "
                "(place must be null for open_drawer and only for it)"
            )
        if place is not None and place.lower() == USER:
            place, skill = USER, Skill.PLACE_NEAR
        elif place is not None:
            place = self._listed(place, objects, "place")
        if place == pick:
            raise ModelError(f"{self.name}: answer picks and places the same object {pick!r}")
        return TaskSpec(
            request=request,
            skill=skill,
            pick=pick,
            place=place,
            rationale=rationale.strip() or f"the model chose the {pick}",
            pick_description=self._description(data.get("pick_description"), pick),
            place_description=(
                ""
                if place is None or place == USER
                else self._description(data.get("place_description"), place)
            ),
        )

    def _listed(self, name: str, objects: list[str], role: str) -> str:
        """The scene's spelling of `name`; an object not in the scene is an error."""
        if not objects:
            return name
        for obj in objects:
            if obj.casefold() == name.casefold():
                return obj
        raise ModelError(
            f"{self.name}: answer's {role} {name!r} is not in the scene "
            f"(objects: {', '.join(objects)})"
        )

    def _description(self, given: object, name: str) -> str:
        if isinstance(given, str) and given.strip():
            return given.strip()
        return self._descriptions.get(name.casefold(), "")

    def _error(self, exc: BaseException) -> ModelError:
        """One line for the user; the API key is never part of it."""
        import openai

        where = self._settings.base_url or "the OpenAI API"
        attempts = self.retries + 1
        if self._out_of_time:
            last = (
                f"HTTP {exc.status_code}"
                if isinstance(exc, openai.APIStatusError)
                else "timed out"
                if isinstance(exc, openai.APITimeoutError)
                else _one_line(str(exc))
            )
            return ModelError(
                f"{self.name}: no usable answer from {where} within the "
                f"{self._settings.deadline_s:g} s allowed for reasoning ({attempts} attempt(s), "
                f"the last: {self._scrub(last)}); raise runtime.reason_timeout_s"
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            # The server's message may echo part of the key: leave it out entirely.
            return ModelError(
                f"{self.name}: authentication failed (HTTP {exc.status_code}) at {where}; "
                f"check the key in ${self._settings.api_key_env}"
            )
        if isinstance(exc, openai.RateLimitError):
            return ModelError(
                f"{self.name}: rate limited (HTTP 429) at {where} after {attempts} attempt(s); "
                "wait or raise reasoning.max_retries"
            )
        if isinstance(exc, openai.APITimeoutError):
            return ModelError(
                f"{self.name}: no answer within {self._settings.timeout_s:g} s from {where} "
                f"after {attempts} attempt(s); raise reasoning.timeout_s"
            )
        if isinstance(exc, openai.APIConnectionError):
            return ModelError(f"{self.name}: cannot reach {where} ({self._scrub(str(exc))})")
        if isinstance(exc, openai.NotFoundError):
            return ModelError(
                f"{self.name}: HTTP 404 from {where}: is the model name "
                f"{self._settings.model!r} and the base_url right? ({self._scrub(_message(exc))})"
            )
        if isinstance(exc, openai.APIStatusError):
            return ModelError(
                f"{self.name}: HTTP {exc.status_code} from {where} after {attempts} attempt(s): "
                f"{self._scrub(_message(exc))}"
            )
        return ModelError(f"{self.name}: {self._scrub(str(exc))}")

    def _left(self) -> float:
        """Seconds left of the running call's deadline (infinite without one)."""
        return math.inf if self._until is None else self._until - time.monotonic()

    def _scrub(self, text: str) -> str:
        text = _one_line(text)[:200]
        return text.replace(self._key, "***") if len(self._key) >= 4 else text


_FIELDS = ("skill", "pick", "place", "rationale", "pick_description", "place_description")


def _response_format(objects: list[str], fmt: str) -> dict[str, Any]:
    if fmt == "json_object":
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {"name": "task_spec", "strict": True, "schema": _schema(objects)},
    }


def _schema(objects: list[str]) -> dict[str, Any]:
    """The answer's JSON schema; with a scene, pick and place are enums of its objects."""

    def choice(names: list[str]) -> dict[str, Any]:
        if not names:
            return {"type": ["string", "null"]}
        return {"anyOf": [{"type": "string", "enum": names}, {"type": "null"}]}

    return {
        "type": "object",
        "properties": {
            "skill": {"type": "string", "enum": [s.value for s in Skill]},
            "pick": choice(objects),
            "place": choice([*objects, USER] if objects else []),
            "rationale": {"type": "string"},
            "pick_description": {"type": "string"},
            "place_description": {"type": "string"},
        },
        "required": list(_FIELDS),
        "additionalProperties": False,
    }


def _user_message(request: str, objects: list[str], fmt: str) -> str:
    listed = "\n".join(f"- {o}" for o in objects) if objects else "(no list: name the objects)"
    text = f'Objects in view:\n{listed}\n\nThe person says: "{request.strip()}"'
    if fmt == "json_object":  # the server does not enforce the schema: spell it out
        text += "\n\nAnswer with JSON matching this schema:\n" + json.dumps(_schema(objects))
    return text


def _backoff(base: float, attempt: int, exc: BaseException) -> float:
    """Exponential backoff with jitter; a Retry-After of up to 10 s is honoured."""
    response = getattr(exc, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    try:
        if header is not None and 0 <= float(header) <= 10:
            return float(header)
    except ValueError:
        pass
    return base * 2 ** (attempt - 1) * (1 + 0.25 * random.random())


def _mentions_format(exc: BaseException) -> bool:
    return bool(re.search(r"json_schema|response_format|schema", _message(exc), re.IGNORECASE))


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(getattr(exc, "message", "") or exc)


def _strip_fences(text: str) -> str:
    """Local models often wrap JSON in ```json fences despite the instructions."""
    text = text.strip()
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    return match.group(1) if match else text


def _name(value: str | None) -> str | None:
    """An answer's object name, stripped; None for null, "" and the words "none" / "null"."""
    value = value.strip() if value else ""
    return value if value.lower() not in ("", "none", "null") else None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _is_local(base_url: str) -> bool:
    return bool(re.match(r"https?://(?:localhost|127\.|\[::1\])", base_url))
