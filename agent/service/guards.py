"""Safeguards in front of the routes: failed-auth throttling, the Host check, content types.

`AuthThrottle` counts failed bearer tokens per client address: after `max_failures` within
`window_s`, that address gets 429 (with Retry-After) for `window_s`. Its table holds at most
`max_addresses` entries (the least recently failed are forgotten first), so a client that cycles
through addresses cannot grow it without bound.

Without a token (an embedder's app on a loopback address), a web page the user visits could still
reach the service through DNS rebinding: its own host name resolves to 127.0.0.1, and the
browser sends `Host: evil.example`. `host_allowed` accepts only localhost and loopback addresses
(and the address the connection arrived on), and `is_json` lets only JSON bodies through, which a
browser cannot send to another origin without asking (a CORS preflight) first.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope

MAX_ADDRESSES = 4096  # entries of the failed-auth table; the least recently failed go first


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:  # any other host name may resolve to a public address
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1, as a dual-stack socket reports it
    return address.is_loopback


@dataclass
class _Failures:
    first: float  # when the current window began
    count: int = 0
    blocked_until: float = 0.0


class AuthThrottle:
    """Failed bearer tokens per client address, and whether that address is held off now."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        *,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._table: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def retry_after(self, address: str) -> int:
        """Seconds this address must wait before it may try again; 0 when it may now."""
        entry = self._table.get(address)
        if entry is None:
            return 0
        left = entry.blocked_until - self._clock()
        return math.ceil(left) if left > 0 else 0

    def failed(self, address: str) -> None:
        """Count one failed token; the `max_failures`-th within the window blocks the address."""
        now = self._clock()
        entry = self._table.pop(address, None)
        if entry is None or now - entry.first > self.window_s:
            blocked_until = entry.blocked_until if entry is not None else 0.0
            entry = _Failures(first=now, blocked_until=blocked_until)
        entry.count += 1
        if entry.count >= self.max_failures:
            entry.blocked_until = now + self.window_s
            entry.first, entry.count = now, 0
        self._table[address] = entry  # the most recently failed is the last to be forgotten
        while len(self._table) > self.max_addresses:
            self._table.popitem(last=False)

    def succeeded(self, address: str) -> None:
        """A right token from this address clears its failures."""
        self._table.pop(address, None)


def host_allowed(scope: Scope) -> bool:
    """True when the Host header names localhost, a loopback address or the bound address."""
    host = header(scope, b"host")
    if not host:
        return False
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host  # drop the port
    if name.startswith("["):  # [::1]:8000
        name = name[1 : name.find("]")] if "]" in name else name
    name = name.rstrip(".").lower()
    server = scope.get("server")
    return is_loopback(name) or (server is not None and name == str(server[0]).lower())


def has_body(scope: Scope) -> bool:
    length = header(scope, b"content-length")
    return header(scope, b"transfer-encoding") is not None or (
        length is not None and length.strip() not in ("", "0")
    )


def is_json(scope: Scope) -> bool:
    """True when Content-Type is application/json (or another `+json` type), any parameters."""
    kind = (header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
    json_suffix = kind.startswith("application/") and kind.endswith("+json")
    return kind == "application/json" or json_suffix


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None
