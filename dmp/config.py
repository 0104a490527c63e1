"""The one configuration loader.

Defaults live in ``config/dmp.toml`` (documented there); the type of each
default is the type every override must have. Overrides come, in order, from
``$DMP_HOME/dmp.toml``, ``DMP_<SECTION>__<KEY>`` environment variables and
``--set section.key=value`` on the command line. A bad value is reported with
its key and its source, before anything touches the database.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from dmp.errors import ConfigError

DEFAULTS_FILE = Path(__file__).resolve().parents[1] / "config" / "dmp.toml"
ENV_PREFIX = "DMP_"
# Sections whose keys are free-form tables (validated by their own stage).
FREE_SECTIONS = {"layouts"}

_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


def default_home() -> Path:
    """Where instances live unless DMP_HOME or --home says otherwise."""
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "dmp"


@dataclass(frozen=True)
class Config:
    """Validated settings of one instance (one DMP_HOME)."""

    home: Path
    values: Mapping[str, Mapping[str, Any]]

    def get(self, key: str) -> Any:
        section, name = key.split(".", 1)
        return self.values[section][name]

    def path(self, key: str) -> Path:
        """A path setting, resolved against the instance home."""
        return (self.home / self.get(key)).resolve()

    def section(self, name: str) -> Mapping[str, Any]:
        return self.values.get(name, {})

    def layers(self, filename: str) -> list[tuple[Path, dict[str, Any]]]:
        """``config/FILENAME`` and, if present, ``$DMP_HOME/FILENAME``, parsed, most specific
        last: for files such as schedule.toml whose tables their own stage validates."""
        shipped, instance = DEFAULTS_FILE.with_name(filename), self.home / filename
        return [(p, _read_toml(p)) for p in (shipped, instance) if p == shipped or p.exists()]


def load_config(
    home: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build the config of the instance at ``home`` (or DMP_HOME, or the default)."""
    env = os.environ if env is None else env
    home_path = Path(home or env.get("DMP_HOME") or default_home()).expanduser().resolve()
    defaults = _read_toml(DEFAULTS_FILE)
    values = copy.deepcopy(defaults)

    instance_file = home_path / "dmp.toml"
    if instance_file.exists():
        for section, table in _read_toml(instance_file).items():
            if section in FREE_SECTIONS:
                values.setdefault(section, {}).update(table)
                continue
            if not isinstance(table, dict):
                raise ConfigError(f"{instance_file}: [{section}] must be a table")
            for name, value in table.items():
                _set(values, defaults, f"{section}.{name}", value, str(instance_file))

    for var, raw in sorted(env.items()):
        if var.startswith(ENV_PREFIX) and "__" in var:
            section, name = var[len(ENV_PREFIX) :].lower().split("__", 1)
            _set(values, defaults, f"{section}.{name}", raw, f"environment {var}")

    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        _set(values, defaults, key.strip(), raw, "--set")

    return Config(home=home_path, values=values)


def _int_list(value: Any, bad) -> list[int]:
    """Lists in config are of whole numbers (TCF purposes); env and --set give "1,3,4"."""
    items = value if isinstance(value, list) else str(value).replace(" ", "").split(",")
    try:
        numbers = [int(v) for v in items if v != "" and not isinstance(v, bool | float)]
    except (TypeError, ValueError):
        raise bad("a list of whole numbers such as [1, 3, 4]") from None
    if len(numbers) != len([v for v in items if v != ""]) or any(n < 0 for n in numbers):
        raise bad("a list of whole numbers such as [1, 3, 4]")
    return numbers


def _str_list(value: Any, bad) -> list[str]:
    """Lists of names or IDs; env and --set give "a,b,c"."""
    items = value if isinstance(value, list) else str(value).split(",")
    if not all(isinstance(v, str) for v in items):
        raise bad("a list of strings")
    return [v.strip() for v in items if v.strip()]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _set(values: dict, defaults: dict, key: str, value: Any, source: str) -> None:
    """Validate one override against its default's type and store it."""
    section, _, name = key.partition(".")
    if section in FREE_SECTIONS:
        raise ConfigError(f"config key {key} (from {source}): [{section}] is set in a file")
    if section not in defaults or name not in defaults[section]:
        raise ConfigError(f"unknown config key {key} (from {source})")
    values[section][name] = _coerce(key, defaults[section][name], value, source)


def _coerce(key: str, default: Any, value: Any, source: str) -> Any:
    """Turn ``value`` into the type of ``default``; strings (env, --set) are parsed."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"config key {key} (from {source}): expected {expected}, got {value!r}")

    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise bad("true or false")
    if isinstance(default, list):
        if default and isinstance(default[0], str):
            return _str_list(value, bad)
        return _int_list(value, bad)
    if isinstance(default, int):
        try:
            number = int(value) if not isinstance(value, bool | float) else None
        except (TypeError, ValueError):
            number = None
        if number is None or number < 0:
            raise bad("a whole number >= 0")
        return number
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
    if isinstance(default, str):
        if not isinstance(value, str | date):
            raise bad("a string")
        text = str(value)
        if key.endswith("memory_limit") and not _MEMORY.match(text):
            raise bad("a size such as 3GB or 512MB")
        if key.endswith("_date"):
            try:
                date.fromisoformat(text)
            except ValueError:
                raise bad("a date YYYY-MM-DD") from None
        return text
    raise bad(type(default).__name__)
