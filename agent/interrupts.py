"""SIGTERM treated as Ctrl-C for a block of a long command (systemd, `docker stop`, `timeout`).

Python's default on SIGTERM ends the process at once: no `finally`, no summary. A command that
records or trains for hours wants what Ctrl-C gives it instead: its cleanup runs and it says what
it kept. `Terminated` is a `KeyboardInterrupt`, so code that handles Ctrl-C handles it too, and a
command that cares can tell the two apart (exit 143 against 130).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived inside `sigterm_interrupts()`."""


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside the block, SIGTERM raises `Terminated` in the main thread (elsewhere: no change,
    as signal handlers can only be set there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
