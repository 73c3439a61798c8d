"""The OpenAI-compatible reasoner against a real chat-completions HTTP server on 127.0.0.1.

The server is the standard library's threading HTTP server speaking just enough of the protocol:
each test scripts its replies (status, body, delay, headers) and reads back the requests it got,
so retries, the json_schema -> json_object fallback and the headers are checked on the wire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("openai")

from models.reasoning.openai_chat import OpenAIReasoner, OpenAISettings
from models.types import ModelError, Skill

KEY = "sk-test-SECRET-0123456789abcdef"
SCENE = ["sponge", "apple", "bowl", "towel"]


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; str -> raw text
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def completion(content: str) -> dict[str, Any]:
    """A chat-completions response whose message text is `content`."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def answer(**fields: Any) -> Reply:
    base = {
        "skill": "place_near",
        "pick": "sponge",
        "place": "user",
        "rationale": "a sponge wipes up milk",
        "pick_description": "a yellow rectangular sponge",
        "place_description": "",
    }
    return Reply(body=completion(json.dumps({**base, **fields})))


def error(status: int, message: str) -> Reply:
    return Reply(status=status, body={"error": {"message": message, "type": "test"}})


class ChatServer:
    """Replies from `script` in order (the last one repeats); records every request."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                index = min(len(owner.requests), len(owner.script)) - 1
                reply = owner.script[index] if owner.script else answer()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                raw = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                data = raw.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ChatServer]:
    srv = ChatServer()
    yield srv
    srv.close()


def make(server: ChatServer, **overrides: Any) -> OpenAIReasoner:
    settings = {
        "model": "test-model",
        "base_url": server.url,
        "api_key": KEY,
        "timeout_s": 5.0,
        "max_retries": 2,
        "backoff_s": 0.01,
        **overrides,
    }
    return OpenAIReasoner(OpenAISettings(**settings), descriptions={"Bowl": "a blue bowl"})


def test_good_answer_is_validated_and_sent_with_schema_and_key(server: ChatServer) -> None:
    server.script = [answer()]
    spec = make(server).reason("I spilled the milk", SCENE)
    assert (spec.pick, spec.place, spec.skill) == ("sponge", "user", Skill.PLACE_NEAR)
    assert spec.pick_description == "a yellow rectangular sponge"
    assert spec.rationale == "a sponge wipes up milk"
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["model"] == "test-model"
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    pick_enum = fmt["json_schema"]["schema"]["properties"]["pick"]["anyOf"][0]["enum"]
    assert pick_enum == SCENE
    prompt = " ".join(m["content"] for m in body["messages"])
    assert "shape and colour" in prompt and "I spilled the milk" in prompt
    assert all(obj in prompt for obj in SCENE)


def test_place_inside_and_catalogue_description_fallback(server: ChatServer) -> None:
    server.script = [answer(skill="place_inside", pick="Apple", place="bowl", place_description="")]
    spec = make(server).reason("put the apple in the bowl", SCENE)
    assert (spec.pick, spec.place, spec.skill) == ("apple", "bowl", Skill.PLACE_INSIDE)
    assert spec.place_description == "a blue bowl"  # the model left it empty


def test_open_drawer_with_null_place_is_accepted(server: ChatServer) -> None:
    server.script = [answer(skill="open_drawer", pick="Drawer", place=None, rationale="open it")]
    spec = make(server).reason("I need something from the drawer", [*SCENE, "drawer"])
    assert (spec.skill, spec.pick, spec.place) == (Skill.OPEN_DRAWER, "drawer", None)
    assert spec.feasible and spec.place_description == ""
    body = server.requests[0]["body"]
    schema = body["response_format"]["json_schema"]["schema"]["properties"]
    assert "open_drawer" in schema["skill"]["enum"]
    assert "open_drawer" in body["messages"][0]["content"]


@pytest.mark.parametrize(
    ("skill", "place"), [("place_near", None), ("place_inside", None), ("open_drawer", "bowl")]
)
def test_place_is_null_for_open_drawer_only(
    server: ChatServer, skill: str, place: str | None
) -> None:
    server.script = [answer(skill=skill, pick="drawer", place=place)]
    with pytest.raises(ModelError, match="does not fit skill") as info:
        make(server).reason("open the drawer", [*SCENE, "drawer"])
    assert "\n" not in str(info.value)


def test_nothing_fits(server: ChatServer) -> None:
    server.script = [answer(pick=None, place=None, rationale="no hammer in view")]
    spec = make(server).reason("give me the hammer", SCENE)
    assert spec.pick is None and not spec.feasible
    assert "no hammer in view" in spec.rationale


def test_fenced_json_from_a_local_model_is_accepted(server: ChatServer) -> None:
    text = json.dumps({"skill": "place_near", "pick": "towel", "place": "user", "rationale": "x"})
    server.script = [Reply(body=completion(f"```json\n{text}\n```"))]
    assert make(server).reason("I just showered", SCENE).pick == "towel"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("sure! the sponge", "not valid JSON"),
        ('["sponge"]', "not a JSON object"),
        (json.dumps({"skill": "place_near", "pick": 3, "place": "user"}), "'pick' is not"),
        (json.dumps({"skill": "juggle", "pick": "sponge", "place": "user"}), "skill 'juggle'"),
        (json.dumps({"skill": "place_near", "pick": "hammer", "place": "user"}), "not in the"),
        (json.dumps({"skill": "place_on", "pick": "apple", "place": "table"}), "'table' is not"),
    ],
)
def test_bad_answers_are_one_line_model_errors(
    server: ChatServer, content: str, words: str
) -> None:
    server.script = [Reply(body=completion(content))]
    with pytest.raises(ModelError, match=words) as info:
        make(server).reason("I spilled the milk", SCENE)
    assert "\n" not in str(info.value)
    assert len(server.requests) == 1  # a bad answer is not retried


def test_timeouts_are_retried_then_reported(server: ChatServer) -> None:
    server.script = [Reply(delay_s=1.5, body=completion("{}"))]
    reasoner = make(server, timeout_s=0.3, max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match=r"no answer within 0.3 s .* after 2 attempt"):
        reasoner.reason("I spilled the milk", SCENE)
    assert time.perf_counter() - t0 < 1.5
    assert reasoner.retries == 1
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("reply", "last"),
    [
        (Reply(delay_s=3.0, body=completion("{}")), "timed out"),
        (
            Reply(status=429, body={"error": {"message": "quota"}}, headers={"retry-after": "2"}),
            "HTTP 429",
        ),
    ],
)
def test_retries_stop_at_the_deadline_with_a_message_naming_it(
    server: ChatServer, reply: Reply, last: str
) -> None:
    """`deadline_s` bounds the whole call: no attempt outlives it and no retry starts that
    could not finish in it (here a 2 s Retry-After, or a second 1 s attempt after the backoff),
    so the runtime's wider timeout never fires first and this message is the one users see."""
    server.script = [reply]
    reasoner = make(server, timeout_s=1.0, max_retries=5, backoff_s=0.5, deadline_s=1.5)
    t0 = time.perf_counter()
    with pytest.raises(ModelError) as info:
        reasoner.reason("I spilled the milk", SCENE)
    assert time.perf_counter() - t0 < 1.5
    assert str(info.value) == (
        f"openai:test-model: no usable answer from {server.url} within the 1.5 s allowed for "
        f"reasoning ({reasoner.retries + 1} attempt(s), the last: {last}); "
        "raise runtime.reason_timeout_s"
    )


def test_auth_error_is_not_retried_and_never_shows_the_key(
    server: ChatServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    server.script = [error(401, f"Incorrect API key provided: {KEY}")]
    caplog.set_level(logging.DEBUG)
    reasoner = make(server)
    with pytest.raises(ModelError, match=r"authentication failed \(HTTP 401\)") as info:
        reasoner.reason("I spilled the milk", SCENE)
    assert len(server.requests) == 1
    out, err = capfd.readouterr()
    for text in (str(info.value), repr(info.value), repr(reasoner), caplog.text, out, err):
        assert KEY not in text
        assert KEY[-8:] not in text


def test_rate_limit_is_retried_with_backoff_and_counted(server: ChatServer) -> None:
    server.script = [error(429, "slow down"), error(429, "slow down"), answer()]
    reasoner = make(server, max_retries=2)
    assert reasoner.reason("I spilled the milk", SCENE).pick == "sponge"
    assert reasoner.retries == 2
    assert len(server.requests) == 3


def test_rate_limit_after_all_retries_is_an_error(server: ChatServer) -> None:
    server.script = [Reply(status=429, body={"error": {"message": "quota"}}, headers={})]
    reasoner = make(server, max_retries=2)
    with pytest.raises(ModelError, match=r"rate limited \(HTTP 429\) .* after 3 attempt"):
        reasoner.reason("I spilled the milk", SCENE)
    assert reasoner.retries == 2
    assert len(server.requests) == 3


def test_server_errors_are_retried(server: ChatServer) -> None:
    server.script = [error(503, "overloaded"), answer(pick="towel")]
    reasoner = make(server)
    assert reasoner.reason("I just showered", SCENE).pick == "towel"
    assert reasoner.retries == 1


def test_json_schema_rejected_falls_back_to_json_object(server: ChatServer) -> None:
    server.script = [
        error(400, "response_format type json_schema is not supported"),
        answer(pick="towel"),
        answer(pick="apple"),
    ]
    reasoner = make(server)
    assert reasoner.reason("I just showered", SCENE).pick == "towel"
    formats = [r["body"]["response_format"]["type"] for r in server.requests]
    assert formats == ["json_schema", "json_object"]
    fallback_prompt = server.requests[1]["body"]["messages"][-1]["content"]
    assert '"pick_description"' in fallback_prompt  # the schema is spelled out instead
    assert reasoner.retries == 0
    # Remembered: the next request goes straight to json_object.
    assert reasoner.reason("I'm hungry", SCENE).pick == "apple"
    assert server.requests[2]["body"]["response_format"] == {"type": "json_object"}


def test_llama_cpp_style_500_on_json_schema_falls_back(server: ChatServer) -> None:
    server.script = [error(500, "Unsupported response_format json_schema"), answer()]
    reasoner = make(server)
    assert reasoner.reason("I spilled the milk", SCENE).pick == "sponge"
    assert [r["body"]["response_format"]["type"] for r in server.requests] == [
        "json_schema",
        "json_object",
    ]


def test_missing_model_is_reported_without_retry(server: ChatServer) -> None:
    server.script = [error(404, "model 'nope' not found")]
    with pytest.raises(ModelError, match=r"HTTP 404 .* 'test-model'"):
        make(server).reason("I spilled the milk", SCENE)
    assert len(server.requests) == 1


def test_unreachable_server_fails_fast() -> None:
    srv = ChatServer()
    url = srv.url
    srv.close()
    reasoner = OpenAIReasoner(OpenAISettings(base_url=url, api_key=KEY, max_retries=2))
    with pytest.raises(ModelError, match="cannot reach"):
        reasoner.reason("I spilled the milk", SCENE)


def test_key_comes_from_the_environment(
    server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_REASONER_KEY", KEY)
    settings = OpenAISettings(base_url=server.url, api_key_env="MY_REASONER_KEY", backoff_s=0.01)
    OpenAIReasoner(settings).reason("I spilled the milk", SCENE)
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"


def test_hosted_without_a_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelError, match="OPENAI_API_KEY"):
        OpenAIReasoner(OpenAISettings())


def test_areason_from_an_event_loop(server: ChatServer) -> None:
    server.script = [answer()]
    spec = asyncio.run(make(server).areason("I spilled the milk", SCENE))
    assert spec.pick == "sponge"


def test_empty_request_is_an_error(server: ChatServer) -> None:
    with pytest.raises(ValueError, match="empty request"):
        make(server).reason("  ", SCENE)
    assert server.requests == []
