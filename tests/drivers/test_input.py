"""The operator's input devices (drivers/input): the terminal keyboard and the SpaceMouse.

The keyboard reads a real pseudo-terminal (pty), as it reads an operator's terminal. The SpaceMouse
runs pyspacemouse for real (device discovery by vendor and product id, its report parsing and axis
convention); only the HID layer under it is faked, since no 3D mouse is attached here: easyhid's
`Enumeration` lists one fake device whose `read` returns the HID reports a SpaceMouse Compact
sends (16-bit little-endian axes on report 1, a button bitmask on report 3), or raises as an
unplugged device does.
"""

from __future__ import annotations

import os
import pty
import struct
import termios
import time
from collections import deque
from typing import Any

import numpy as np
import pytest

from drivers.input import InputError, SpaceMouseSettings
from drivers.input.keyboard import GuidingKeys, KeyboardDevice

pyspacemouse = pytest.importorskip("pyspacemouse")


def _poll_until(device: Any, check: Any, timeout: float = 2.0) -> Any:
    """Poll (summing moves) until `check(total, last)` holds; the last command and the sum."""
    total = np.zeros(3)
    deadline = time.monotonic() + timeout
    while True:
        command = device.poll()
        total = total + command.move
        if check(total, command) or time.monotonic() > deadline:
            return total, command
        time.sleep(0.01)


# ------------------------------------------------------------------------------------ keyboard


def _toggled_and_ended(device: Any, polls: int) -> bool:
    """Poll every 10 ms until the device has handed out a gripper toggle and an episode end."""
    toggled = ended = False
    for _ in range(polls):
        command = device.poll()
        toggled, ended = toggled or command.toggle_gripper, ended or command.end
        if toggled and ended:
            return True
        time.sleep(0.01)
    return False


def test_keyboard_keys_through_a_pty_move_toggle_and_end_and_a_closed_terminal_is_an_error():
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    keyboard = KeyboardDevice(key_step_m=0.01, fd=slave)
    keyboard.open()
    try:
        assert not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak: key by key
        assert termios.tcgetattr(slave)[3] & termios.ISIG  # Ctrl-C still raises SIGINT
        t0 = time.monotonic()
        os.write(master, b"wwAx f")  # x: no meaning, but the operator is there
        total, last = _poll_until(keyboard, lambda total, c: total[2] < 0)
        assert np.allclose(total, [0.02, 0.01, -0.01])
        assert last.t_heard >= t0
        os.write(master, b" \r")
        assert _toggled_and_ended(keyboard, polls=100)
    finally:
        keyboard.close()
    assert termios.tcgetattr(slave) == before  # the terminal's mode is given back
    keyboard.open()
    try:
        os.close(master)  # the terminal goes away
        with pytest.raises(InputError, match="keyboard: the terminal"):
            _poll_until(keyboard, lambda total, c: False, timeout=1.0)
    finally:
        keyboard.close()
        os.close(slave)


def test_guiding_keys_move_nothing_but_count_toggle_and_end():
    """While the hand guides the arm, the move keys move nothing (the operator is still heard);
    space and Enter toggle the gripper and end the episode as on the keyboard."""
    master, slave = pty.openpty()
    keys = GuidingKeys(fd=slave)
    keys.open()
    try:
        t0 = time.monotonic()
        os.write(master, b"wwf")
        total, last = _poll_until(keys, lambda total, c: c.t_heard >= t0, timeout=1.0)
        assert last.t_heard >= t0 and np.all(total == 0.0)
        os.write(master, b" \r")
        assert _toggled_and_ended(keys, polls=100)
    finally:
        keys.close()
        os.close(master)
        os.close(slave)


def test_keyboard_without_a_terminal_is_one_line(tmp_path):
    path = tmp_path / "not-a-tty"
    with open(path, "w") as handle, pytest.raises(InputError, match="needs a terminal"):
        KeyboardDevice(fd=handle.fileno()).open()


# ------------------------------------------------------------------------------------ SpaceMouse
COMPACT = pyspacemouse.get_device_specs()["SpaceMouseCompact"]


def axes_report(x: int, y: int, z: int) -> bytes:
    """Report 1: translation as raw HID counts (350 is full scale for this model)."""
    return bytes([1]) + struct.pack("<hhh", x, y, z)


def buttons_report(mask: int) -> bytes:
    return bytes([3, mask])


class FakeHid:
    """What pyspacemouse uses of easyhid's HIDDevice; `read` plays back queued reports."""

    vendor_id, product_id = COMPACT.vendor_id, COMPACT.product_id
    path = b"/dev/hidraw9"
    product_string, manufacturer_string = "SpaceMouse Compact", "3Dconnexion"
    release_number, serial_number = 1, ""

    def __init__(self) -> None:
        self.reports: deque[bytes] = deque()
        self.unplugged = False
        self.closed = False

    def open(self) -> None:
        pass

    def set_nonblocking(self, on: bool) -> None:
        pass

    def read(self, size: int = 64, timeout: Any = None) -> bytes:
        if self.unplugged:
            from easyhid import HIDException

            raise HIDException("read error: device disconnected")
        return self.reports.popleft() if self.reports else b""

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def hid(monkeypatch: pytest.MonkeyPatch) -> FakeHid:
    device = FakeHid()

    class Enumeration:
        def find(self, **_: Any) -> list[FakeHid]:
            return [device]

    monkeypatch.setattr(pyspacemouse.api, "Enumeration", Enumeration)
    return device


def test_spacemouse_deadband_scaling_and_buttons_through_pyspacemouse(hid: FakeHid) -> None:
    from drivers.input.spacemouse import SpaceMouse

    settings = SpaceMouseSettings(deadband=0.1, scale=1.0, gripper_button=0, end_button=1)
    mouse = SpaceMouse(settings, max_step_m=0.02)
    mouse.open()
    try:
        # HID axes: x right, y toward the operator, z down; full scale forward-right, a little
        # sideways (inside the deadband), half way up
        hid.reports.append(axes_report(350, -17, -175))
        _, command = _poll_until(mouse, lambda total, c: c.move[0] > 0)
        assert command.move[0] == pytest.approx(0.02)
        assert command.move[1] == 0.0  # 17/350 = 0.05: inside the deadband
        assert command.move[2] == pytest.approx(0.02 * (0.5 - 0.1) / 0.9, rel=0.02)
        # a held deflection keeps moving: the newest report counts at every poll
        assert mouse.poll().move[0] == pytest.approx(0.02)
        hid.reports.extend([buttons_report(0b01), buttons_report(0b00), buttons_report(0b10)])
        assert _toggled_and_ended(mouse, polls=200)
        hid.unplugged = True
        with pytest.raises(InputError, match="stopped delivering"):
            _poll_until(mouse, lambda total, c: False, timeout=1.0)
    finally:
        mouse.close()
    assert hid.closed


def test_no_spacemouse_connected_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from drivers.input.spacemouse import SpaceMouse

    class Enumeration:
        def find(self, **_: Any) -> list[FakeHid]:
            return []

    monkeypatch.setattr(pyspacemouse.api, "Enumeration", Enumeration)
    with pytest.raises(InputError, match="no 3D mouse found"):
        SpaceMouse(SpaceMouseSettings(), max_step_m=0.02).open()
