"""tpm-agent: a real-time runtime that turns spoken-style requests into robot arm motions.

The public API (everything else is internal)::

    from agent import Runtime, load_config

    config = load_config("sim")
    async with Runtime(config) as runtime:
        async for event in runtime.execute("I spilled the milk"):
            print(event.to_json())

From synchronous code, `agent.blocking` runs the same runtime on its own event-loop thread:
`run_request(config, request) -> Outcome`, or `with BlockingRuntime(config) as runtime:`.

Imports here are light: drivers and models load when a Runtime starts.
"""

from agent.blocking import BlockingRuntime, run_request
from agent.config import Config, ConfigError, load_config, profiles
from agent.events import (
    SCHEMA_VERSION,
    Detected,
    Event,
    Fault,
    Finished,
    Outcome,
    Reasoned,
    Started,
    Step,
    WorldStart,
    parse_event,
)
from agent.recording import RunFolderError
from agent.runtime import RequestError, Runtime, RuntimeBusy, RuntimeNotStarted

__all__ = [
    "SCHEMA_VERSION",
    "BlockingRuntime",
    "Config",
    "ConfigError",
    "Detected",
    "Event",
    "Fault",
    "Finished",
    "Outcome",
    "Reasoned",
    "RequestError",
    "RunFolderError",
    "Runtime",
    "RuntimeBusy",
    "RuntimeNotStarted",
    "Started",
    "Step",
    "WorldStart",
    "load_config",
    "parse_event",
    "profiles",
    "run_request",
]
