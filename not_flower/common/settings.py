"""How a run-config setting is declared, read and checked: one declaration per key.

Every field of :class:`not_flower.common.config.RunConfig` is declared with
:func:`setting`: its run-config key (dotted where it sits in a nested table of
``pyproject.toml``, as Flower flattens ``[tool.flwr.app.config.recovery]`` to
``recovery.*``), its default, its group, what values are allowed and one line of help.
Parsing (:func:`parse_value`), the refusal of unknown and renamed keys
(:func:`check_keys`), the ``pyproject.toml`` defaults check and the settings reference of
the docs (:func:`reference_rows`) all read these declarations. Neither torch nor Flower is
imported.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The groups, in the order the settings reference shows them (top-level keys first).
GROUPS = (
    "run",
    "data",
    "training",
    "evaluation",
    "unlearn",
    "negate",
    "recovery",
    "stop",
    "backdoor",
    "mislabel",
    "style",
    "canary",
    "pgd",
    "federaser",
    "fukd",
    "mia",
)
_META = "not_flower.setting"


class ConfigError(ValueError):
    """A run-config value that is not allowed."""


@dataclass(frozen=True)
class Setting:
    """The declaration of one run-config key.

    Parameters
    ----------
    key : str
        The key as Flower gives it to the app (``"recovery.rounds"``: key ``rounds`` of
        the table ``[tool.flwr.app.config.recovery]``).
    group : str
        One of :data:`GROUPS`: the key's table, or ``run``/``data``/``training``/
        ``evaluation`` for the top-level keys.
    help : str
        One line of Markdown: what the key does.
    kind : str
        ``int``, ``float``, ``bool``, ``str``, ``list`` (comma-separated) or ``groups``
        (``;``-separated comma lists).
    choices : tuple of str
        The allowed values (a ``str`` setting); empty: any text.
    minimum : int or None
        The least allowed value of an ``int`` setting.
    above : float or None
        A ``float`` setting must be greater than this.
    interval : str
        A ``float`` setting's allowed interval, ``"[0, 1]"``, ``"(0, 1]"`` or ``"[0, 1)"``.
    strip : bool
        Whether surrounding blanks are removed from a text value.
    renamed_from : str
        The flat name the key had before the keys were grouped (refused with "renamed to").
    """

    key: str
    group: str
    help: str
    kind: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    above: float | None = None
    interval: str = ""
    strip: bool = True
    renamed_from: str = ""

    def allowed(self) -> str:
        """What the key allows, in words (for the settings reference)."""
        if self.choices:
            return ", ".join(f"`{c}`" for c in self.choices)
        if self.interval:
            return self.interval
        if self.minimum is not None:
            return f"integer >= {self.minimum}"
        if self.above is not None:
            return f"number > {self.above:g}"
        return {
            "int": "integer",
            "float": "number",
            "bool": "`true`, `false`",
            "str": "text",
            "list": "comma list",
            "groups": "comma lists separated by `;`",
        }[self.kind]


def setting(
    key: str,
    default: Any,
    *,
    help: str,  # noqa: A002 (the declaration's field name)
    group: str = "",
    kind: str = "",
    choices: tuple[str, ...] = (),
    minimum: int | None = None,
    above: float | None = None,
    interval: str = "",
    strip: bool = True,
    renamed_from: str = "",
) -> Any:
    """Declare a :class:`RunConfig` field as a run-config key (a dataclass field).

    Parameters
    ----------
    key : str
        The run-config key; a dotted key's group is its table (``recovery.rounds``).
    default : Any
        The default, typed as the field (a tuple for list settings).
    help, group, kind, choices, minimum, above, interval, strip, renamed_from
        As :class:`Setting`; ``kind`` defaults to the default's type and ``group`` to the
        key's table.

    Returns
    -------
    dataclasses.Field
        The field, with the :class:`Setting` in its metadata.
    """
    if not kind:
        kind = {bool: "bool", int: "int", float: "float", str: "str", tuple: "list"}[type(default)]
    table = key.split(".")[0] if "." in key else ""
    decl = Setting(
        key=key,
        group=group or table,
        help=help,
        kind=kind,
        choices=tuple(choices),
        minimum=minimum,
        above=above,
        interval=interval,
        strip=strip,
        renamed_from=renamed_from,
    )
    if decl.group not in GROUPS or (table and decl.group != table):
        raise ValueError(f"setting {key!r}: group {decl.group!r} is not its table or in GROUPS")
    return dataclasses.field(default=default, metadata={_META: decl})


def declarations(config_type) -> tuple[tuple[str, Setting], ...]:
    """``(field name, Setting)`` of every declared field of ``config_type``, in order."""
    return tuple(
        (f.name, f.metadata[_META]) for f in dataclasses.fields(config_type) if _META in f.metadata
    )


def renamed_keys(config_type) -> dict[str, str]:
    """Old flat key -> its new (grouped) key."""
    return {d.renamed_from: d.key for _, d in declarations(config_type) if d.renamed_from}


def migrate_keys(config: Mapping, config_type) -> dict:
    """A stored run config with every old flat key under its new name.

    Runs written before the keys were grouped (``state.json``, ``results.json``) keep the
    old names; resuming or reusing them compares under the new ones.
    """
    renamed = renamed_keys(config_type)
    return {renamed.get(k, k): v for k, v in config.items()}


def flatten(table: Mapping, prefix: str = "") -> dict:
    """Nested run-config tables as dotted keys, as Flower flattens them.

    Parameters
    ----------
    table : Mapping
        A parsed ``[tool.flwr.app.config]`` table or run-config file (``[recovery]`` and
        other nested tables inside).
    prefix : str
        Dotted prefix of ``table``'s keys.

    Returns
    -------
    dict
        Dotted key to value, in the table's order (``{"recovery": {"rounds": 5}}`` ->
        ``{"recovery.rounds": 5}``).
    """
    out: dict = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_keys(run_config: Mapping, config_type) -> None:
    """Refuse keys the app does not declare, naming a renamed key's new name.

    Raises
    ------
    ConfigError
        ``run-config key 'recovery-rounds' was renamed to 'recovery.rounds'``, or the
        unknown keys with the nearest valid ones.
    """
    known = [d.key for _, d in declarations(config_type)]
    renamed = renamed_keys(config_type)
    old = [f"{k!r} was renamed to {renamed[k]!r}" for k in run_config if k in renamed]
    if old:
        raise ConfigError(f"run-config key {'; '.join(old)} (the keys are grouped in tables)")
    unknown = sorted(set(run_config) - set(known))
    if unknown:
        near = [
            n for key in unknown for n in difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        ]
        hint = f"; nearest: {', '.join(dict.fromkeys(near))}" if near else ""
        raise ConfigError(
            f"unknown run-config key(s) {unknown}{hint}; allowed: {', '.join(sorted(known))}"
        )


def parse_value(decl: Setting, value: Any) -> Any:
    """A run-config value checked and converted as ``decl`` says.

    Parameters
    ----------
    decl : Setting
        The key's declaration.
    value : Any
        The value as Flower gives it (TOML types), or text.

    Returns
    -------
    Any
        The typed value (a tuple for lists).

    Raises
    ------
    ConfigError
        Naming the key, the value and what is allowed.
    """
    key = decl.key
    if decl.kind == "int":
        return as_int(key, value, decl.minimum)
    if decl.kind == "float":
        number = as_float(key, value)
        if decl.interval:
            return in_interval(key, number, decl.interval)
        if decl.above is not None and number <= decl.above:
            raise ConfigError(f"{key} must be > {decl.above:g}, got {number}")
        return number
    if decl.kind == "bool":
        return as_bool(key, value)
    if decl.kind == "list":
        return as_list(key, value)
    if decl.kind == "groups":
        return as_groups(key, value)
    if decl.choices:
        if value not in decl.choices:
            raise ConfigError(f"unknown {key} {value!r}; choose one of: {', '.join(decl.choices)}")
        return value
    return str(value).strip() if decl.strip else str(value)


def as_groups(key: str, value) -> tuple[tuple[str, ...], ...]:
    """``"0,3;5"`` -> ``(("0", "3"), ("5",))``: requests in sequence, separated by ``;``."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(
            f"{key} must be a comma-separated list such as '0,3' (';' separates "
            f"requests in sequence), got {value!r}"
        )
    groups = []
    for part in str(value).split(";"):
        group = as_list(key, part)
        if group:
            groups.append(group)
        elif part.strip() == "" and ";" in str(value):
            raise ConfigError(f"{key}: empty request in sequence {value!r}")
    return tuple(groups)


def as_list(key: str, value) -> tuple[str, ...]:
    """``"0, 3"`` -> ``("0", "3")`` (blanks and repeats dropped)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{key} must be a comma-separated list such as '0,3', got {value!r}")
    items = [v.strip() for v in str(value).split(",")]
    return tuple(dict.fromkeys(v for v in items if v))


def as_int(key: str, value, minimum: int | None = None) -> int:
    """An integer (``3``, ``3.0``, ``"3"``), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if not number.is_integer():
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    number = int(number)
    if minimum is not None and number < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {number}")
    return number


def as_float(key: str, value) -> float:
    """A finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return number


def as_bool(key: str, value) -> bool:
    """``true``/``false`` (also ``"true"``, ``1``, ``"0"``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def in_interval(key: str, value: float, interval: str) -> float:
    """``value`` inside ``interval`` (``"[0, 1]"``, ``"(0, 1]"``, ``"[0, 1)"``)."""
    low_open, high_open = interval.startswith("("), interval.endswith(")")
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok):
        raise ConfigError(f"{key} must be in {interval}, got {value}")
    return value


def to_text(decl: Setting, value: Any) -> Any:
    """A typed value back as Flower's run config holds it (lists as comma text)."""
    if decl.kind == "groups":
        return ";".join(",".join(group) for group in value)
    if decl.kind == "list":
        return ",".join(value)
    return value


def reference_rows(config_type) -> list[tuple[str, str, Any, str, str]]:
    """``(group, key, default, allowed, help)`` of every setting, by group then declaration.

    The docs' settings reference is built from these rows.
    """
    decls = declarations(config_type)
    defaults = {f.name: f.default for f in dataclasses.fields(config_type)}
    rows = [(d.group, d.key, to_text(d, defaults[name]), d.allowed(), d.help) for name, d in decls]
    return sorted(rows, key=lambda row: GROUPS.index(row[0]))
