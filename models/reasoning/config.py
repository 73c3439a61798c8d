"""`[reasoning]`: the settings of the `openai` and `offline` reasoners, defined once.

The profile section is `ReasoningConfig` as it stands (`agent.config` composes it). Its openai keys
are `OpenAIServer`, the base that `openai_chat.OpenAISettings` extends with what only code sets
(a key, the backoff, the deadline), so a profile key and the backend's setting are one field; the
offline reasoner takes the whole object (`offline.offline_reasoner`). Light on purpose: no backend
dependency is imported here, so the config loads without the extras.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from models._loading import Settings

ResponseFormat = Literal["auto", "json_schema", "json_object"]


class OpenAIServer(Settings):
    """Which OpenAI-compatible server to ask, and how patiently (the openai reasoner's keys)."""

    model: str = Field("gpt-4o", description="openai: model name the server knows.")
    base_url: str | None = Field(
        None, description="openai: server URL, e.g. http://127.0.0.1:8080/v1 (None: OpenAI)."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai: environment variable holding the API key."
    )
    timeout_s: float = Field(30.0, gt=0, description="openai: deadline of one HTTP request.")
    max_retries: int = Field(2, ge=0, le=10, description="openai: retries on 429 / 5xx / timeout.")
    response_format: ResponseFormat = Field(
        "auto", description="openai: auto tries json_schema, then json_object if refused."
    )


class ReasoningConfig(OpenAIServer):
    """`[reasoning]`: settings of the `openai` and `offline` reasoners (models.reasoner picks)."""

    lm_path: Path | None = Field(
        None, description="offline: a GGUF language model (None: the packaged Gemma 3 270M)."
    )
    lm_cache_dir: Path | None = Field(
        None, description="offline: where the packaged model is assembled (None: ~/.cache)."
    )
    lm_threads: int = Field(1, ge=1, description="offline: llama.cpp threads.")
    lm_threshold: float = Field(
        1.0, description="offline: least language-model score to pick an unlisted need's object."
    )
    lm_known_need_threshold: float = Field(
        3.0, description="offline: the same when a known need has no hint object in view."
    )
