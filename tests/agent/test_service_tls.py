"""Service hardening (issue 12, section 5): TLS and the bearer token at start, for real.

TLS with a self-signed certificate made here, TLS files that cannot serve, the token's minimum
length off loopback and the plain-HTTP warning: `python -m agent serve` in a subprocess, and the
checks it runs (check_tls, check_bind, plain_text_warning) on their own.
"""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from agent.service import (
    MIN_TOKEN_CHARS,
    ServiceError,
    check_bind,
    check_tls,
    plain_text_warning,
)
from tests.conftest import SMALL
from tests.service_helpers import AUTH, TOKEN, agent_cli


def refused_in_one_line(*args: str, token: str | None = TOKEN) -> str:
    proc = agent_cli(*args, token=token)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ),
            *(
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
            ),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_serve_over_tls_with_a_self_signed_certificate(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    overrides = [arg for item in SMALL for arg in ("--set", item)]
    proc = agent_cli(
        "serve",
        "--port",
        "0",
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(key),
        *overrides,
        "--set",
        f'output.runs_dir="{tmp_path}"',
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        found = re.search(r"for https://127\.0\.0\.1:(\d+) ", first)
        assert found, first  # the URL says https, and no plain-text warning came first
        url = f"https://127.0.0.1:{found.group(1)}"
        trusted = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the service did not come up"
            try:
                if httpx.get(f"{url}/health", verify=trusted).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        listed = httpx.get(f"{url}/tasks", headers=AUTH, verify=trusted)
        assert listed.status_code == 200 and listed.json() == {"tasks": []}
        assert httpx.get(f"{url}/tasks", verify=trusted).status_code == 401
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/health")  # a client that does not trust it: no connection
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{found.group(1)}/health")  # no plain HTTP on it
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"serving {url} (auth: token from AGENT_TOKEN)" in err
    assert "warning" not in first + err and "Traceback" not in err
    assert proc.returncode == 130, err


def test_tls_files_that_cannot_serve_are_refused_in_one_line(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ServiceError, match="--ssl-keyfile needs --ssl-certfile"):
        check_tls(None, key)
    with pytest.raises(ServiceError, match=r"--ssl-certfile: cannot read .*: no such file"):
        check_tls(tmp_path / "missing.pem", key)
    with pytest.raises(ServiceError, match="cannot load a certificate and key"):
        check_tls(cert, garbage)
    check_tls(cert, key)
    check_tls(None, None)
    err = refused_in_one_line("serve", "--ssl-certfile", str(garbage))
    assert err.startswith(
        f"error: --ssl-certfile: cannot load a certificate and key from {garbage}"
    )


def test_a_short_token_off_loopback_is_refused_at_start() -> None:
    short = "x" * (MIN_TOKEN_CHARS - 1)
    with pytest.raises(ServiceError, match=f"with a {MIN_TOKEN_CHARS - 1}-character token"):
        check_bind("0.0.0.0", short)
    check_bind("0.0.0.0", "x" * MIN_TOKEN_CHARS)
    check_bind("127.0.0.1", "short")  # on loopback any token will do
    err = refused_in_one_line("serve", "--host", "0.0.0.0", token=short)
    assert err.startswith(
        f"error: refusing to serve on 0.0.0.0 with a {MIN_TOKEN_CHARS - 1}-character token: "
        f"off loopback it needs at least {MIN_TOKEN_CHARS}"
    )


def test_plain_http_off_loopback_warns_in_one_line_at_start(tmp_path: Path) -> None:
    assert plain_text_warning("127.0.0.1", tls=False) is None
    assert plain_text_warning("0.0.0.0", tls=True) is None
    proc = agent_cli("serve", "--host", "0.0.0.0", "--port", "0", "--set", "models.policy=expert")
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline(), proc.stderr.readline()]
    finally:
        proc.kill()
        proc.wait()
    assert lines[0].startswith("warning: serving 0.0.0.0 over plain HTTP: the bearer token"), lines
    assert "--ssl-certfile" in lines[0]
    assert lines[1].startswith("starting the runtime (sim) for http://0.0.0.0:"), lines
