"""Run-config presets (examples/configs/*.toml) replace long ``--set`` lists.

A preset is the TOML file ``flwr run --run-config FILE.toml`` takes (top-level keys and
nested tables); ``python -m not_flower.experiments.compare --config FILE.toml`` applies
it before every ``--set``. Each preset holds only declared keys with values the app takes,
and each is used by a command in the docs.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from not_flower.common.config import RunConfig, parse_run_config, to_run_config
from not_flower.experiments.compare import build_parser
from not_flower.experiments.plan import config_file_items, parse_set
from not_flower.launch import cli

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "examples" / "configs").glob("*.toml"))


def test_there_are_presets():
    assert [p.name for p in PRESETS] == ["fmnist-4k-backdoor.toml"]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_a_preset_holds_declared_keys_the_app_takes(preset):
    items = config_file_items(preset)
    values = parse_set(items)
    assert set(values) <= set(to_run_config(RunConfig()))
    cfg = parse_run_config(values)
    flat = dict(item.split("=", 1) for item in items)
    for key, text in flat.items():
        assert str(to_run_config(cfg)[key]).lower() == text.lower(), key
    # the launcher's check (what flwr run would be given) takes it too
    assert cli.main(["check-run-config", "--app", str(ROOT), str(preset)]) == 0


def test_the_fmnist_preset_is_the_documented_setting():
    values = parse_set(config_file_items(ROOT / "examples/configs/fmnist-4k-backdoor.toml"))
    assert values == {
        "dataset": "fashion-mnist",
        "train-subset": 4000,
        "test-subset": 2000,
        "local-epochs": 1,
        "backdoor.trigger-size": 4,
    }


def test_compare_applies_a_preset_before_every_set():
    args = build_parser().parse_args(
        [
            "--out",
            "outputs/x",
            "--config",
            "examples/configs/fmnist-4k-backdoor.toml",
            "--set",
            "local-epochs=2",
        ]
    )
    merged = parse_set([*config_file_items(ROOT / args.config), *args.overrides])
    assert merged["local-epochs"] == 2 and merged["train-subset"] == 4000


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_each_preset_is_used_by_a_docs_command(preset):
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    uses = [
        page
        for page in pages
        if re.search(rf"--config examples/configs/{re.escape(preset.name)}\b", page.read_text())
    ]
    assert uses, f"no docs command uses {preset.name}"


def test_a_bad_preset_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("dataset = \n")
    with pytest.raises(ValueError, match="bad.toml: not a readable TOML file"):
        config_file_items(bad)
    old = tmp_path / "old.toml"
    old.write_text("negate-bias = false\n")
    with pytest.raises(ValueError, match="'negate-bias' was renamed to 'negate.bias'"):
        parse_set(config_file_items(old))
    assert tomllib.loads(old.read_text()) == {"negate-bias": False}
