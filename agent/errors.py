"""Which errors are expected faults, and how any error reads in one line.

Expected faults are the ones the parts raise on purpose with a message a user can act on (a
driver, a model, a backend, a missed deadline, a closed channel): they end an episode with that
message and no traceback. Anything else is a bug: its type is named and its traceback logged.
`models` and `drivers` cannot import the runtime, so their roots (ModelError, DriverError) are
listed here rather than derived from one class; `except EXPECTED` is the one test.
"""

from __future__ import annotations

from agent.backends import BackendError
from agent.channels import ChannelClosed
from agent.workers import StageTimeout
from drivers.base import DriverError
from models.types import ModelError

EXPECTED: tuple[type[Exception], ...] = (
    ModelError,
    DriverError,
    StageTimeout,
    ChannelClosed,
    BackendError,
    TimeoutError,
)


def describe(exc: BaseException) -> str:
    """One line for a user: our own errors speak for themselves, others get their type named."""
    if isinstance(exc, ChannelClosed):
        return exc.reason
    if isinstance(exc, EXPECTED):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
