"""Faults through `python -m agent run` (issue 12, section 2, scenarios 5 and 12): a language
model server that times out, refuses the key, rate-limits or answers nonsense, and a request
whose object no camera sees (exit code 3).

Each runs the CLI as a user does, against a real HTTP server on 127.0.0.1 where one is needed,
and checks (a) the cause in one line, (b) the arm stopped before "episode finished" in the log,
(c) a complete run folder: see tests/faults_helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import Finished
from tests.faults_helpers import (
    REQUEST,
    agent_proc,
    check_run_folder,
    only_fault,
    read_events,
    stopped_in_log,
)
from tests.models.test_reasoning_openai import ChatServer, Reply, completion, error

# ---------------------------------------------------------------------------- the LLM (scenario 5)
LLM_FAULTS = {  # what the server does -> (its replies, settings, what the fault says)
    "times out": (
        [Reply(delay_s=20.0, body=completion("{}"))],
        ["reasoning.timeout_s=2", "reasoning.max_retries=5", "runtime.reason_timeout_s=4"],
        "within the 3 s allowed for reasoning (1 attempt(s), the last: timed out)",
    ),
    "401": ([error(401, "Incorrect API key provided")], [], "authentication failed (HTTP 401)"),
    "429": (
        [Reply(status=429, body=error(429, "quota").body, headers={"retry-after": "0"})],
        ["reasoning.max_retries=1"],
        "rate limited (HTTP 429) at ",
    ),
    "malformed": ([Reply(body=completion("Sure! The sponge."))], [], "answer is not valid JSON"),
}


@pytest.mark.parametrize("how", list(LLM_FAULTS))
def test_an_llm_that_fails_ends_a_cli_run_with_its_own_message(tmp_path: Path, how: str) -> None:
    """Scenario 5 through `python -m agent run` with the openai reasoner against a real HTTP
    server on 127.0.0.1: a timeout (retries that would outlast the runtime's 4 s reasoning
    timeout stop at the reasoner's deadline inside it), a 401, a 429 and an answer that is not
    JSON each end the run with one Fault from the reasoner saying so, not the runtime's generic
    "did not finish"; the arm is stopped before Finished; the run folder is whole."""
    replies, settings, message = LLM_FAULTS[how]
    server = ChatServer()
    server.script = replies
    try:
        overrides = [
            "models.policy=expert",
            'models.reasoner="openai"',
            f'reasoning.base_url="{server.url}"',
            'reasoning.model="test-model"',
            "sim.image_width=96",
            "sim.image_height=96",
            *settings,
        ]
        sets = [arg for override in overrides for arg in ("--set", override)]
        runs = tmp_path / "runs"
        args = ["run", REQUEST, *sets, "--runs-dir", str(runs), "--quiet"]
        args += ["--log-json", "--log-level", "info"]
        proc = agent_proc(*args, cwd=tmp_path, env={"COLUMNS": "500"})  # one line, unwrapped
        out, err = proc.communicate(timeout=120)
    finally:
        server.close()
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    folder = next(runs.iterdir())
    events = read_events(folder)
    fault = only_fault(events, "reasoner", fatal=True)
    assert message in fault.message and "did not finish" not in fault.message, fault.message
    finished = events[-1]
    assert isinstance(finished, Finished) and events[-2] is fault
    assert (finished.outcome.status, finished.outcome.stop) == ("fault", "ok")
    assert f"FAULT: reasoner: {fault.message}" in out.splitlines()
    stopped_in_log(err)
    check_run_folder(folder, events)


# ----------------------------------------------------------------------- not in view (scenario 12)
#: the sponge and a 5 mm pearl no 96 px view can see
PEARL_CATALOG = Path(__file__).parents[1] / "data" / "pearl_catalog.toml"


def test_an_object_no_camera_sees_is_exit_code_3(tmp_path: Path) -> None:
    """A real object too small for 96 px views (a 5 mm pearl): the request names it, no camera
    finds it, and `run` says so in its first line and exits 3 ("nothing to do"), the arm told to
    stop before the episode finished, the run folder whole."""
    catalog = PEARL_CATALOG
    runs = tmp_path / "runs"
    sets = [
        *("--set", "models.policy=expert", "--set", "sim.image_width=96"),
        *("--set", "sim.image_height=96", "--set", f'sim.catalog="{catalog}"'),
        *("--set", 'sim.objects=["sponge", "pearl"]'),
    ]
    args = ["run", "put the sponge next to the pearl", *sets, "--runs-dir", str(runs), "--quiet"]
    proc = agent_proc(*args, "--log-json", "--log-level", "info", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err[-3000:]
    assert out.splitlines()[0] == "NOT_FOUND: not found in any camera view (front, side): pearl"
    folder = next(runs.iterdir())
    events = read_events(folder)
    outcome = events[-1].outcome  # type: ignore[attr-defined]
    assert (outcome.status, outcome.steps, outcome.stop) == ("not_found", 0, "ok")
    stopped_in_log(err)
    check_run_folder(folder, events)
