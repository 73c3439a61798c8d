"""What every input device shares: a reader thread that notes the operator's input under a lock,
and `poll()`, which hands out what came since the last poll and starts afresh.

A device subclass reads its hardware in `_read` (its thread), adding to `_toggles` and setting
`_end` and `_t_heard` under `_lock`, or setting `_error` once it stops delivering; its `poll()`
says how the input so far becomes a move and hands it to `_take`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from drivers.input import InputCommand, InputError


class ReaderDevice:
    """The reader thread and the edge bookkeeping of one input device."""

    name = "device"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._toggles = 0
        self._end = False
        self._t_heard = 0.0
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start(self, read: Callable[[], None]) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=read, name=self.name, daemon=True)
        self._thread.start()

    def _take(self, move: np.ndarray) -> InputCommand:
        """The command since the last poll (call under `_lock`); raises once the device failed."""
        if self._error is not None:
            raise InputError(self._error)
        command = InputCommand(
            move=move,
            toggle_gripper=self._toggles % 2 == 1,
            end=self._end,
            t_heard=self._t_heard,
        )
        self._toggles = 0
        self._end = False
        return command

    def _join(self) -> None:
        """Stop the reader thread (it notices within one read's timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None
