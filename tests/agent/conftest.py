"""Fixtures of the service tests (tests/agent/test_service_*.py): one real server per module.

A module gets the plain service on the sim world (`serve_sim`: its robot records safe stops, its
policy can be made to crash) unless it sets `SERVICE = "hardened"`, which serves one with small
limits a test can reach (`serve_hardened`). Either way `client` sends the bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.service_helpers import Served, authed_client, serve_hardened, serve_sim


@pytest.fixture(scope="module")
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    serve = serve_hardened if getattr(request.module, "SERVICE", "sim") == "hardened" else serve_sim
    yield from serve(tmp_path_factory)


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    yield from authed_client(served, timeout=60)
