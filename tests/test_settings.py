"""One declaration per run-config key (not_flower/common/settings.py and the declarations).

Each key is declared once (key, type, default, group, allowed values, help); parsing, the
refusal of unknown and renamed keys, the migration of stored configs and the docs'
reference rows all come from the declarations.
"""

from __future__ import annotations

import dataclasses

import pytest

from not_flower.common.config import ConfigError, RunConfig, parse_run_config, to_run_config
from not_flower.common.settings import (
    GROUPS,
    Setting,
    declarations,
    migrate_keys,
    parse_value,
    reference_rows,
    renamed_keys,
)


def test_every_field_is_declared_once_with_help_and_a_group():
    decls = declarations(RunConfig)
    assert [name for name, _ in decls] == [f.name for f in dataclasses.fields(RunConfig)]
    keys = [d.key for _, d in decls]
    assert len(keys) == len(set(keys)) == 72
    for name, decl in decls:
        assert decl.help.strip(), name
        assert decl.group in GROUPS, name
        # a dotted key sits in the table of its group; a top-level key in no table
        assert ("." in decl.key) == (decl.group not in ("run", "data", "training", "evaluation"))


def test_keys_are_grouped_in_tables_and_old_flat_names_are_refused_with_the_new_name():
    renamed = renamed_keys(RunConfig)
    assert renamed["recovery-rounds"] == "recovery.rounds"
    assert renamed["stop-tolerance"] == "stop.tolerance"
    assert renamed["batchnorm-policy"] == "negate.batchnorm-policy"
    assert renamed["server-data-fraction"] == "fukd.server-data-fraction"
    assert len(renamed) == 45
    for old, new in renamed.items():
        with pytest.raises(ConfigError, match=f"'{old}' was renamed to '{new}'"):
            parse_run_config({old: RunConfig.__dataclass_fields__["seed"].default})
    cfg = parse_run_config({"recovery.rounds": 4, "stop.tolerance": 0.1, "negate.bias": False})
    assert (cfg.recovery_rounds, cfg.stop_tolerance, cfg.negate_bias) == (4, 0.1, False)


def test_stored_configs_with_old_names_are_read_under_the_new_ones():
    stored = {"recovery-rounds": 5, "seed": 1, "mia-cache-dir": "/c"}
    assert migrate_keys(stored, RunConfig) == {
        "recovery.rounds": 5,
        "seed": 1,
        "mia.cache-dir": "/c",
    }


@pytest.mark.parametrize(
    "decl,value,expected",
    [
        (Setting("k", "run", "h", "int", minimum=1), "3", 3),
        (Setting("k", "run", "h", "float", interval="(0, 1]"), 1, 1.0),
        (Setting("k", "run", "h", "bool"), "false", False),
        (Setting("k", "run", "h", "list"), "0, 3,0", ("0", "3")),
        (Setting("k", "run", "h", "groups"), "0,3;5", (("0", "3"), ("5",))),
        (Setting("k", "run", "h", "str"), " x ", "x"),
        (Setting("k", "run", "h", "str", strip=False), " x ", " x "),
    ],
)
def test_a_declaration_parses_its_value(decl, value, expected):
    assert parse_value(decl, value) == expected


@pytest.mark.parametrize(
    "decl,value,message",
    [
        (Setting("k", "run", "h", "int", minimum=1), 0, "k must be >= 1, got 0"),
        (Setting("k", "run", "h", "float", above=0), 0, "k must be > 0, got 0.0"),
        (Setting("k", "run", "h", "float", interval="[0, 1)"), 1, r"k must be in \[0, 1\)"),
        (Setting("k", "run", "h", "str", choices=("a", "b")), "c", "choose one of: a, b"),
        (Setting("k", "run", "h", "bool"), "maybe", "k must be true or false"),
    ],
)
def test_a_declaration_names_the_key_value_and_what_is_allowed(decl, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_value(decl, value)


def test_reference_rows_follow_the_groups_with_the_declared_defaults():
    rows = reference_rows(RunConfig)
    assert len(rows) == 72
    groups = [group for group, *_ in rows]
    assert groups == sorted(groups, key=GROUPS.index)
    by_key = {key: (default, allowed) for _, key, default, allowed, _ in rows}
    assert by_key["recovery.rounds"] == (15, "integer >= 0")
    assert by_key["fraction-train"] == (1.0, "(0, 1]")
    assert by_key["method"][1].startswith("`not`, `ft`, `retrain`")
    assert by_key["unlearn.clients"][0] == "0"
    assert {key: default for _, key, default, _, _ in rows} == to_run_config(RunConfig())
