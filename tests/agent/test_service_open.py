"""Service hardening (issue 12, section 5): an app served without a token, for real.

Without a token only a loopback Host header is served (a foreign one is DNS rebinding: 421), and
a POST body must be JSON (a form a browser can send cross-site is 415); a JSON POST starts a task.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import make_config
from tests.service_helpers import OTHER, Served, one_line_error, serve_in_thread, wait_finished


@pytest.fixture(scope="module")
def open_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_in_thread(make_config(tmp_path_factory.mktemp("open")), None)


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io:{port}"],
)
def test_without_a_token_a_foreign_host_header_is_421(open_app: Served, host: str) -> None:
    for path in ("/health", "/tasks"):
        response = httpx.get(
            f"{open_app.url}{path}", headers={"Host": host.format(port=open_app.port)}
        )
        error = one_line_error(response, 421)
        assert "is not this service's address" in error and "DNS rebinding" in error


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "LOCALHOST"]
)
def test_without_a_token_loopback_host_headers_are_served(open_app: Served, host: str) -> None:
    response = httpx.get(f"{open_app.url}/tasks", headers={"Host": host.format(port=open_app.port)})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_without_a_token_post_bodies_must_be_json(
    open_app: Served, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"request": OTHER}).encode()
    response = httpx.post(f"{open_app.url}/tasks", content=body, headers=headers)
    error = one_line_error(response, 415)
    assert error.startswith("Content-Type must be application/json")
    assert httpx.get(f"{open_app.url}/health").json()["busy"] is False


def test_without_a_token_a_json_post_starts_a_task(open_app: Served) -> None:
    with httpx.Client(base_url=open_app.url, timeout=60) as client:
        bad = client.post("/tasks", content=b"{}", headers={"Content-Type": "application/json"})
        assert bad.status_code == 422  # past the guard, to the validation
        task = client.post(
            "/tasks",
            content=json.dumps({"request": OTHER}).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        assert task.status_code == 202, task.text
        cancelled = client.post(f"/tasks/{task.json()['id']}/cancel")  # no body: no type needed
        assert cancelled.status_code in (200, 409), cancelled.text
        assert wait_finished(client, task.json()["id"])["state"] == "finished"
