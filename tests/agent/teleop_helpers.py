"""An operator at a terminal, for the `record` tests: `python -m agent record` runs in a child
process whose terminal is a real pseudo-terminal (pty); the test reads what it prints and types
keys into it as a person would."""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Terminal:
    """`python -m agent ARGS` (or another `module`) on a pty; `expect` waits for text, `type`
    sends keys."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, module: str = "agent"
    ) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, start_new_session=True,
            env={**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(ROOT), **(env or {})},
        )  # fmt: skip
        os.close(slave)
        self._text = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # the child closed its side
                return
            if not data:
                return
            with self._lock:
                self._text += data.decode(errors="replace")

    @property
    def text(self) -> str:
        with self._lock:
            return self._text

    def expect(self, needle: str, timeout: float = 60.0, after: int = 0) -> int:
        """Wait until `needle` is printed (at or after offset `after`); its end offset."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.text.find(needle, after)
            if found >= 0:
                return found + len(needle)
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the last output may still be on its way
                found = self.text.find(needle, after)
                if found >= 0:
                    return found + len(needle)
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not printed; the terminal shows:\n{self.text[-3000:]}")

    def type(self, keys: str, every: float = 0.0) -> None:
        for key in keys if every else [keys]:
            os.write(self.master, key.encode())
            if every:
                time.sleep(every)

    def demonstrate(
        self,
        *keys: str,
        verdict: str | None = None,
        after: int = 0,
        timeout: float = 60.0,
        settle_s: float = 0.0,
    ) -> int:
        """One episode as an operator gives it: wait until recording, type each group of `keys`
        (0.2 s between keys), let the arm settle `settle_s`, end it with Enter, wait for the
        keep/discard/redo question and answer `verdict` (unanswered when None); returns where
        the question stood."""
        at = self.expect("recording at", timeout=timeout, after=after)
        for group in keys:
            self.type(group, every=0.2)
        time.sleep(settle_s)
        self.type("\n")
        at = self.expect("[k/d/r]", after=at)
        if verdict is not None:
            self.type(f"{verdict}\n")
        return at

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._reader.join(2)
        with contextlib.suppress(OSError):
            os.close(self.master)
