"""The terminal's keyboard as an input device: for labs without a 3D mouse, and for tests (a
pseudo-terminal stands in for the operator).

The terminal is put in cbreak mode (keys arrive one by one, unechoed) rather than raw mode, so
Ctrl-C still raises SIGINT and stops the arm as it does in `run`. A reader thread takes every byte
as it comes; `poll()` sums what came since the last poll. A terminal sends no key-release, so a
key press is one step of `key_step_m`; holding a key moves on at the terminal's key-repeat rate
(each control step is still limited to `max_step_m`). Every byte, a key without a meaning too,
counts as the operator being there (the deadman rule in `agent.teleop`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import time
from typing import Any

import numpy as np

from drivers.input import InputCommand, InputError
from drivers.input.reader import ReaderDevice

#: key -> unit direction in the robot base frame (x forward, y left, z up)
MOVES: dict[bytes, tuple[float, float, float]] = {
    b"w": (1.0, 0.0, 0.0),
    b"s": (-1.0, 0.0, 0.0),
    b"a": (0.0, 1.0, 0.0),
    b"d": (0.0, -1.0, 0.0),
    b"r": (0.0, 0.0, 1.0),
    b"f": (0.0, 0.0, -1.0),
}
GRIPPER = b" "
END = (b"\r", b"\n")
HELP = "w/s: +x/-x  a/d: +y/-y  r/f: up/down  space: gripper  Enter: end episode  Ctrl-C: stop"
GUIDING_HELP = "move the arm by hand  space: gripper  Enter: end episode  Ctrl-C: stop"


class KeyboardDevice(ReaderDevice):
    """Keys from the terminal on file descriptor `fd` (default: stdin), in a reader thread."""

    name = "keyboard"

    def __init__(self, key_step_m: float = 0.01, fd: int | None = None) -> None:
        super().__init__()
        self.key_step_m = key_step_m
        self._fd = fd
        self._move = np.zeros(3)
        self._saved: Any = None

    def open(self) -> None:
        import termios
        import tty

        fd = self._fd if self._fd is not None else _stdin_fd()
        if not os.isatty(fd):
            raise InputError(
                "the keyboard device needs a terminal on standard input (run `record` in a "
                'terminal, or use teleop.device = "spacemouse")'
            )
        self._fd = fd
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)  # keys one by one, no echo; Ctrl-C still raises SIGINT
        termios.tcflush(fd, termios.TCIFLUSH)  # keys typed before the episode do not count
        self._start(self._read)

    def poll(self) -> InputCommand:
        with self._lock:
            command = self._take(self._move * self.key_step_m)
            self._move = np.zeros(3)
            return command

    def close(self) -> None:
        import termios

        self._join()
        if self._saved is not None and self._fd is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def _read(self) -> None:
        fd = self._fd
        assert fd is not None
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.05)
                data = os.read(fd, 64) if ready else None
            except OSError as exc:
                data, error = b"", f"the terminal failed: {exc.strerror or exc}"
            else:
                error = "the terminal closed (end of input)"
            if data is None:
                continue
            with self._lock:
                if not data:
                    self._error = f"keyboard: {error}"
                    return
                self._t_heard = time.monotonic()
                for key in (data[i : i + 1].lower() for i in range(len(data))):
                    if key in MOVES:
                        self._move = self._move + np.array(MOVES[key])
                    elif key == GRIPPER:
                        self._toggles += 1
                    elif key in END:
                        self._end = True


class GuidingKeys(KeyboardDevice):
    """The keys that go with hand-guiding: the operator's hand moves the arm, so the move keys
    move nothing (a key still counts as the operator being there); space toggles the gripper,
    Enter ends the episode."""

    name = "guiding"

    def poll(self) -> InputCommand:
        return dataclasses.replace(super().poll(), move=np.zeros(3))


def _stdin_fd() -> int:
    import sys

    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        raise InputError("there is no standard input to read keys from") from None
