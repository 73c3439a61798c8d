"""Where a configuration comes from, before it is validated: the profiles shipped with the
package, a user's TOML file or a mapping, and `--set KEY=VALUE` overrides (values read as TOML,
a bare word as a string), merged into one plain dict that `agent.config` validates.

Every problem is a ConfigError in one line a user can act on: a file that is missing, not UTF-8
or not TOML, an unknown profile, an override that is not KEY=VALUE, a list of unquoted names
(with the quoting that works in a shell).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration problem, stated in one line a user can act on."""


def profiles() -> list[str]:
    """Names of the profiles shipped with the package."""
    folder = resources.files("agent") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def is_profile_name(source: object) -> bool:
    return isinstance(source, str) and not source.endswith(".toml") and "/" not in source


def read_source(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return deep_merge({}, source)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a TOML file (not UTF-8 text: {exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def read_profile(name: str) -> dict[str, Any]:
    if name not in profiles():
        raise ConfigError(f"unknown profile {name!r}; allowed: {', '.join(profiles())}")
    text = (resources.files("agent") / "profiles" / f"{name}.toml").read_text()
    return tomllib.loads(text)


def parse_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(overrides, Mapping):
        return dict(overrides)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. runtime.control_hz=20)")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            if raw.strip().startswith(("[", "{")):  # a list or table, not a bare word
                raise ConfigError(quote_hint(key.strip(), raw)) from None
            value = raw  # a bare word such as kcf
        parsed[key.strip()] = value
    return parsed


def quote_hint(key: str, raw: str) -> str:
    """What to write instead of a list of bare words such as `[apple, bowl]`: TOML wants the
    names quoted, and the shell must pass the quotes on, so the whole override is single-quoted."""
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        words = [w.strip().strip("'\"") for w in text[1:-1].split(",") if w.strip()]
        example = "[" + ", ".join(f'"{w}"' for w in words) + "]"
        return (
            f"override {f'{key}={raw}'!r} is not a TOML list: quote the names, and the whole "
            f"override for the shell: --set '{key}={example}'"
        )
    return f'override {f"{key}={raw}"!r} is not valid TOML (quote strings: "like this")'


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        elif isinstance(value, Mapping):
            out[key] = deep_merge({}, value)
        else:
            out[key] = value
    return out
